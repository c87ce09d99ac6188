"""Envoy in front of the real stack: native gRPC routed by service, grpc-web (unary, server
streaming, errors with their details) spoken byte for byte as a browser does, CORS, the static
route, and the committed configs matching launcher/envoy.py."""

from __future__ import annotations

import http.client
import subprocess
from pathlib import Path

import grpc
import pytest
import yaml
from google.rpc import error_details_pb2, status_pb2
from mesh_helpers import ALLOWED, MODELS, GrpcWeb, series
from satlas.v1 import analysis_service_pb2 as apb
from satlas.v1 import analysis_service_pb2_grpc as apb_grpc
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import ingest_service_pb2_grpc as ipb_grpc
from satlas.v1 import job_state_pb2 as js
from satlas.v1 import orchestrator_service_pb2 as opb
from satlas.v1 import orchestrator_service_pb2_grpc as opb_grpc

from launcher import auth, envoy, tls
from satkit import client

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mesh(shared_stack):
    return shared_stack


def test_committed_configs_are_the_rendered_ones_and_envoy_accepts_them(tmp_path):
    # The files they name (keys, certificate) exist where they run, not here: stand-ins, made here.
    local = tls.ensure(tmp_path / "tls")
    auth.ensure_keys(tmp_path / "auth")
    jwks = tmp_path / "auth" / "jwks.json"
    stand_ins = {".run/auth/jwks.json": jwks, "/etc/satlas/auth/jwks.json": jwks,
                 "/etc/satlas/tls/server.pem": local.cert, "/etc/satlas/tls/server-key.pem": local.key}
    for path, settings in envoy.COMMITTED.items():
        assert path.read_text() == envoy.render(settings), f"{path} is stale: python -m launcher.envoy --write"
        text = path.read_text()
        for named, made in stand_ins.items():
            text = text.replace(f" {named}\n", f" {made}\n")
        copy = tmp_path / path.name
        copy.write_text(text)
        checked = subprocess.run([str(ROOT / ".venv" / "bin" / "envoy"), "--mode", "validate", "-c", str(copy)],
                                 capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        config = yaml.safe_load(path.read_text())
        assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_native_grpc_reaches_each_service_through_one_port(mesh):
    with client.channel(mesh.envoy, token=mesh.token) as channel:
        ingest = ipb_grpc.IngestServiceStub(channel)
        orchestrator = opb_grpc.OrchestratorServiceStub(channel)
        analysis = apb_grpc.AnalysisServiceStub(channel)
        assert {m.name for m in analysis.ListModels(apb.ListModelsRequest(), timeout=10).models} >= set(MODELS)
        job_id = ingest.SubmitSeries(ipb.SubmitSeriesRequest(series={"values": series(64)}, models=MODELS[:1]),
                                     timeout=10).job_ids[0]
        states = [e.job.state for e in orchestrator.WatchJob(opb.WatchJobRequest(job_id=job_id), timeout=60)]
        assert states[-1] == js.JOB_STATE_SUCCEEDED
        assert orchestrator.GetJob(opb.GetJobRequest(job_id=job_id), timeout=10).job.job_id == job_id


def test_grpc_web_unary_and_server_streaming(mesh):
    call = GrpcWeb(mesh.envoy, "satlas.v1.IngestService/SubmitSeries",
                   ipb.SubmitSeriesRequest(series={"values": series(64)}, models=MODELS), token=mesh.token)
    (body,) = list(call.messages())
    assert call.status == 0 and call.response.getheader("access-control-allow-origin") == ALLOWED
    job_ids = ipb.SubmitSeriesResponse.FromString(body).job_ids
    assert len(job_ids) == 2
    call.close()
    watch = GrpcWeb(mesh.envoy, "satlas.v1.OrchestratorService/WatchJob", opb.WatchJobRequest(job_id=job_ids[1]),
                    token=mesh.token)
    states = [opb.WatchJobResponse.FromString(m).job.state for m in watch.messages()]
    watch.close()
    assert watch.status == 0 and states[-1] == js.JOB_STATE_SUCCEEDED and len(states) >= 2


def test_grpc_web_errors_carry_status_and_field_violations(mesh):
    call = GrpcWeb(mesh.envoy, "satlas.v1.IngestService/SubmitSeries",
                   ipb.SubmitSeriesRequest(series={"values": [1.0, float("nan")] + [1.0] * 10}, models=MODELS),
                   token=mesh.token)
    assert list(call.messages()) == []
    assert call.status == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    # A trailers-only answer comes as headers; the browser can read them only if CORS exposes them.
    exposed = call.response.getheader("access-control-expose-headers", "")
    assert "grpc-status-details-bin" in exposed
    raw = call.trailers.get("grpc-status-details-bin") or call.response.getheader("grpc-status-details-bin")
    import base64

    status = status_pb2.Status.FromString(base64.b64decode(raw + "=" * (-len(raw) % 4)))
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    assert "series.values[1]" in [v.field for v in detail.field_violations]
    call.close()


def test_cors_preflight_allows_listed_origins_only(mesh):
    host, port = mesh.envoy.rsplit(":", 1)
    for origin, allowed in ((ALLOWED, True), ("http://evil.example", False)):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("OPTIONS", "/satlas.v1.OrchestratorService/GetStats", headers={
            "origin": origin, "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type,x-grpc-web,x-user-agent"})
        response = conn.getresponse()
        response.read()
        # Without allow-origin the browser stops there; a listed one may send the token.
        assert (response.getheader("access-control-allow-origin") == origin) is allowed
        assert not allowed or "authorization" in response.getheader("access-control-allow-headers", "")
        conn.close()


def test_other_paths_go_to_the_dashboards_static_files(mesh):
    host, port = mesh.envoy.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/dashboard.html")
    response = conn.getresponse()
    body = response.read().decode(errors="replace")
    # The static server answered (200 once web/ is built, its own 404 page before), not Envoy.
    assert (response.status, "<html" in body.lower()) in ((200, True), (404, True)), (response.status, body)
    conn.close()
