"""Run the real Triton Inference Server locally, on the CPU, from the ``nvidia-pytriton`` wheel.

    python -m launcher.triton_local            # foreground; Ctrl-C stops it

The wheel carries ``tritonserver`` 2.51 with only the Python backend. This module lays out a
backend folder with the stub for the running Python, derives the CPU repository from
``model_repository/`` (see ``model_repository.build_cpu_repository``), starts the server with
its log in a file, waits until every model is READY, and stops it (and its backend stubs) on
SIGINT/SIGTERM. ``LocalTriton`` is the same thing as a context manager for the stack and tests.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from launcher import model_repository, supervise
from satkit.settings import Var, load, setting

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)
MIRROR_EVERY_S = 2.0  # how soon a model dropped into the source repository can be loaded


MODEL_REPOSITORY = Var("TRITON_MODEL_REPOSITORY", ROOT / "model_repository", "the source repository (one folder a model)",
                       shown="model_repository")
WORK_DIR = Var("TRITON_WORK_DIR", ROOT / ".run" / "triton", "the derived CPU repository, backend and log",
               shown=".run/triton (make up: $SATLAS_RUN_DIR/triton)")
HOST = Var("TRITON_HOST", "127.0.0.1", "where the local Triton listens")
HTTP_PORT = Var("TRITON_HTTP_PORT", 8000, "its HTTP port")
GRPC_PORT = Var("TRITON_GRPC_PORT", 8001, "its gRPC port (what TRITON_URL names)")
METRICS_PORT = Var("TRITON_METRICS_PORT", 8002, "its Prometheus metrics port")
INSTANCE_COUNT = Var("TRITON_INSTANCE_COUNT", 1, "model instances per model")
INTRA_OP_THREADS = Var("TRITON_INTRA_OP_THREADS", 1, "onnxruntime threads per instance")
MAX_QUEUE_DELAY_US = Var("TRITON_MAX_QUEUE_DELAY_US", 100, "dynamic batching: how long a request waits for company")
STARTUP_TIMEOUT_S = Var("TRITON_STARTUP_TIMEOUT_S", 120.0, "seconds for every model to turn READY")


@dataclass(frozen=True)
class TritonSettings:
    """Settings for the local server; ``load(TritonSettings)`` reads the ``TRITON_*`` variables."""

    model_repository: Path = setting(MODEL_REPOSITORY)
    work_dir: Path = setting(WORK_DIR)
    host: str = setting(HOST)
    http_port: int = setting(HTTP_PORT)
    grpc_port: int = setting(GRPC_PORT)
    metrics_port: int = setting(METRICS_PORT)
    instance_count: int = setting(INSTANCE_COUNT)
    intra_op_threads: int = setting(INTRA_OP_THREADS)
    max_queue_delay_us: int = setting(MAX_QUEUE_DELAY_US)
    startup_timeout_s: float = setting(STARTUP_TIMEOUT_S)
    stop_timeout_s: float = 10.0
    log_verbose: int = 0
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def log_file(self) -> Path:
        return self.work_dir / "triton.log"


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (tritonserver cannot bind port 0 and report it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def pytriton_dir() -> Path:
    import pytriton

    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def prepare_backends(work_dir: Path) -> Path:
    """A backend folder whose Python backend has the stub built for this Python version.

    Symlinks, not copies: the stub finds its bundled libraries relative to its real path.
    """
    src = pytriton_dir()
    stub = src / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}" / "triton_python_backend_stub"
    if not stub.is_file():
        raise RuntimeError(f"nvidia-pytriton has no Python backend stub for Python {sys.version_info[:2]}: {stub}")
    python = work_dir / "backends" / "python"
    python.mkdir(parents=True, exist_ok=True)
    for target in (src / "backends/python/libtriton_python.so", src / "backends/python/triton_python_backend_utils.py", stub):
        link = python / target.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    return python.parent


def stub_pythonpath() -> str:
    """Where the models' imports (numpy, onnxruntime) live: this environment's site-packages."""
    paths = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], str(ROOT)])
    return os.pathsep.join(paths)


class TritonError(RuntimeError):
    pass


class LocalTriton:
    def __init__(self, settings: TritonSettings | None = None):
        self.settings = settings or load(TritonSettings)
        self.process: subprocess.Popen | None = None
        self.models: list[str] = []
        self._mirroring: threading.Event | None = None

    def command(self, repository: Path, backends: Path) -> list[str]:
        s = self.settings
        return [
            str(pytriton_dir() / "bin" / "tritonserver"),
            f"--model-repository={repository}",
            f"--backend-directory={backends}",
            f"--http-address={s.host}", f"--http-port={s.http_port}",
            f"--grpc-address={s.host}", f"--grpc-port={s.grpc_port}",
            f"--metrics-address={s.host}", f"--metrics-port={s.metrics_port}",
            "--exit-timeout-secs=5",
            # Models load and unload while it runs (satlas.v1.ModelAdminService); all of them at start.
            "--model-control-mode=explicit", "--load-model=*",
            f"--log-verbose={s.log_verbose}",
            *s.extra_args,
        ]

    def start(self, wait: bool = True) -> "LocalTriton":
        """Launch the server; with ``wait``, return once every model is READY (else see ``wait_ready``)."""
        s = self.settings
        s.work_dir.mkdir(parents=True, exist_ok=True)
        backends = prepare_backends(s.work_dir)
        repository = s.work_dir / "model_repository"
        self.models = model_repository.build_cpu_repository(
            s.model_repository, repository, instance_count=s.instance_count,
            intra_op_threads=s.intra_op_threads, max_queue_delay_us=s.max_queue_delay_us)
        if not self.models:
            raise TritonError(f"no ONNX models under {s.model_repository}")
        env = {**os.environ, "PYTHONPATH": stub_pythonpath(), "OMP_NUM_THREADS": str(s.intra_op_threads)}
        self.process = supervise.spawn(self.command(repository, backends), s.log_file, env=env)
        self._mirroring = threading.Event()
        threading.Thread(target=self._mirror, args=(repository, self._mirroring), name="repository-mirror",
                         daemon=True).start()
        if not wait:
            return self
        supervise.ready_or_stopped(self.wait_ready, self.stop)
        return self

    def wait_ready(self) -> None:
        import tritonclient.grpc as grpcclient

        deadline = time.monotonic() + self.settings.startup_timeout_s
        client = grpcclient.InferenceServerClient(self.settings.grpc_url)
        try:
            while time.monotonic() < deadline:
                if supervise.stop_requested():
                    raise TritonError("interrupted while starting")
                if self.process.poll() is not None:
                    raise TritonError(f"tritonserver exited with code {self.process.returncode}:\n{self.log_tail()}")
                try:
                    if client.is_server_ready() and all(client.is_model_ready(m) for m in self.models):
                        return
                except Exception:  # not listening yet
                    pass
                time.sleep(0.2)
            raise TritonError(f"models not READY after {self.settings.startup_timeout_s:.0f}s:\n{self.log_tail()}")
        finally:
            client.close()

    def log_tail(self, lines: int = 8) -> str:
        """Triton's error lines (the per-model load failures) and the last lines of its log."""
        try:
            text = self.settings.log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        errors = [line for line in text if line.startswith("E") and "CudaDriverHelper" not in line]
        return "\n".join(dict.fromkeys(errors[-10:] + text[-lines:]))

    def _mirror(self, repository: Path, stopped: threading.Event) -> None:
        """Models and versions dropped into the source repository while the server runs appear in
        its CPU repository, for ModelAdminService.LoadModel to load (no restart, no code)."""
        s = self.settings
        while not stopped.wait(MIRROR_EVERY_S):
            try:
                model_repository.sync_cpu_repository(s.model_repository, repository, instance_count=s.instance_count,
                                                     intra_op_threads=s.intra_op_threads,
                                                     max_queue_delay_us=s.max_queue_delay_us)
            except Exception as exc:  # the next round looks again; the thread must outlive one bad folder
                log.warning("repository mirror: %s", exc)

    def stop(self) -> None:
        if self._mirroring is not None:
            self._mirroring.set()
        if self.process is None:
            return
        pgid = self.process.pid
        if self.process.poll() is None:
            _signal_group(pgid, signal.SIGTERM)
            try:
                self.process.wait(self.settings.stop_timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(pgid, signal.SIGKILL)
                self.process.wait()
        # Stubs that outlive the server (it was killed) go with the group.
        _signal_group(pgid, signal.SIGKILL)
        self.process = None

    def __enter__(self) -> "LocalTriton":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-repository", type=Path)
    parser.add_argument("--http-port", type=int)
    parser.add_argument("--grpc-port", type=int)
    parser.add_argument("--metrics-port", type=int)
    parser.add_argument("--instance-count", type=int)
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    settings = replace(load(TritonSettings), **overrides)

    supervise.block_signals()
    triton = LocalTriton(settings)
    try:
        triton.start()
        print(f"triton ready: grpc {settings.grpc_url}, http {settings.http_url}, "
              f"metrics http://{settings.host}:{settings.metrics_port}/metrics; models: {', '.join(triton.models)}; "
              f"log: {settings.log_file}", flush=True)
        reason = supervise.wait([triton.process])
        if reason in ("SIGINT", "SIGTERM"):
            return 0
        print(f"{reason}:\n{triton.log_tail()}", file=sys.stderr)
        return 1
    except TritonError as exc:
        print(f"triton_local: {exc}", file=sys.stderr)
        return 1
    finally:
        triton.stop()


if __name__ == "__main__":
    sys.exit(main())
