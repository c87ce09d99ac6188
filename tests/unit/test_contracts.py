"""The contracts: buf lint is clean and gen/ is what `buf generate` makes from protos/."""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / ".venv" / "bin" / "buf"


def _buf(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(BUF), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_buf_lint_is_clean():
    result = _buf("lint")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("template, subdir", [("buf.gen.python.yaml", "python"), ("buf.gen.ts.yaml", "ts")])
def test_generated_code_is_up_to_date(tmp_path, template, subdir):
    result = _buf("generate", "--template", template, "-o", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    fresh, committed = tmp_path / "gen" / subdir, ROOT / "gen" / subdir
    fresh_files = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    committed_files = sorted(p.relative_to(committed) for p in committed.rglob("*")
                             if p.is_file() and "__pycache__" not in p.parts)  # bytecode Python left there
    assert fresh_files == committed_files, "gen/ is stale: run `make proto` and commit"
    _, mismatch, errors = filecmp.cmpfiles(fresh, committed, [str(p) for p in fresh_files], shallow=False)
    assert not mismatch and not errors, f"gen/ is stale ({mismatch or errors}): run `make proto` and commit"


def test_service_names_match_the_design():
    from satlas.v1 import analysis_service_pb2, ingest_service_pb2, orchestrator_service_pb2

    assert set(ingest_service_pb2.DESCRIPTOR.services_by_name["IngestService"].methods_by_name) == {
        "SubmitSeries", "StreamSeries", "BatchSubmitSeries"}  # the design's two, and the batch call (AIP-233)
    assert set(orchestrator_service_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].methods_by_name) == {
        "GetJob", "ListJobs", "CancelJob", "WatchJob", "WatchJobs", "GetStats"}
    assert set(analysis_service_pb2.DESCRIPTOR.services_by_name["AnalysisService"].methods_by_name) == {
        "Analyze", "ListModels"}


def test_internal_contracts_stay_out_of_the_browser_and_the_front_door():
    assert (ROOT / "gen/python/satlas/internal/v1/job_control_service_pb2.py").is_file()
    assert not list((ROOT / "gen/ts").rglob("*internal*")), "gen/ts must carry only the public API"
    public = {p.name for p in (ROOT / "protos/satlas/v1").glob("*.proto")}
    assert not public & {"job_control_service.proto", "job_events.proto", "run_jobs_task.proto"}
    for config in ("envoy/envoy.yaml", "envoy/envoy.compose.yaml"):
        assert "satlas.internal" not in (ROOT / config).read_text()
