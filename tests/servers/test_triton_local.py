"""launcher.triton_local: start-up, a model dropped in, failures, and stopping with nothing left."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from support import ROOT, triton_settings

from launcher import model_repository as repo
from launcher.triton_local import LocalTriton, TritonError


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _copy_repository(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def test_a_model_dropped_into_the_repository_is_served_with_no_code_change(tmp_path):
    repository = _copy_repository(ROOT / "model_repository", tmp_path / "repo")
    third = repository / "vae_copy"
    shutil.copytree(repository / "vae_timeseries", third)
    config = repo.read_config(third)
    config.name = "vae_copy"
    (third / repo.CONFIG).write_text(repo.render(config))

    settings = triton_settings(tmp_path / "work", repository)
    with LocalTriton(settings) as server:
        assert sorted(server.models) == ["transformer_timeseries", "vae_copy", "vae_timeseries"]
        client = grpcclient.InferenceServerClient(settings.grpc_url)
        inp = grpcclient.InferInput("values", [1, 30], "FP32")
        inp.set_data_from_numpy(np.linspace(0, 1, 30, dtype=np.float32)[None, :])
        assert client.infer("vae_copy", [inp]).as_numpy("reconstruction").shape == (1, 128)
        assert "Started GRPCInferenceService" in settings.log_file.read_text()
        running = _processes_mentioning(str(settings.work_dir))
        assert len(running) >= 3  # the server and a backend stub per model
    assert _processes_mentioning(str(settings.work_dir)) == []


def test_a_model_that_fails_to_load_is_reported_with_the_log(tmp_path):
    repository = _copy_repository(ROOT / "model_repository", tmp_path / "repo")
    (repository / "vae_timeseries" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    settings = triton_settings(tmp_path / "work", repository, startup_timeout_s=60)
    with pytest.raises(TritonError) as err:
        LocalTriton(settings).start()
    assert "vae_timeseries" in str(err.value)
    assert _processes_mentioning(str(settings.work_dir)) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_the_command_stops_cleanly_on_a_signal(tmp_path, sig):
    # SIGKILL can't be handled: the server still goes, by the parent-death signal it was started with.
    settings = triton_settings(tmp_path / "work")
    env = {**os.environ, "TRITON_WORK_DIR": str(settings.work_dir), "TRITON_HTTP_PORT": str(settings.http_port),
           "TRITON_GRPC_PORT": str(settings.grpc_port), "TRITON_METRICS_PORT": str(settings.metrics_port)}
    proc = subprocess.Popen([sys.executable, "-m", "launcher.triton_local"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("triton ready"), line
        assert f"grpc {settings.grpc_url}" in line
        proc.send_signal(sig)
        assert proc.wait(30) == (-sig if sig == signal.SIGKILL else 0)
    finally:
        proc.kill()
    deadline = time.monotonic() + 15
    while _processes_mentioning(str(settings.work_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_mentioning(str(settings.work_dir)) == []
