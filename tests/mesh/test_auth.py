"""The front door with real Envoy and real clients (Python gRPC, and grpc-web spoken byte for byte
as connect-web sends it): tokens and scopes on every public method, the open health check, the
internal service out of reach, the per-client rate limit and the ingest's per-token quota hit and
recovered, and TLS."""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from mesh_helpers import GrpcWeb
from satlas.internal.v1 import job_control_service_pb2 as job_control_pb2
from satlas.v1 import analysis_service_pb2, model_admin_service_pb2, orchestrator_service_pb2  # noqa: F401 (the pool)
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import ingest_service_pb2_grpc as ipb_grpc

from launcher import auth, envoy
from launcher.settings import StackSettings
from launcher.stack import Stack
from satkit import client

ROOT = Path(__file__).resolve().parents[2]
# "pkg.Service/Method" → its descriptor
METHODS = {p: descriptor_pool.Default().FindMethodByName(p.replace("/", ".")) for p in envoy.SCOPES}


@pytest.fixture(scope="module")
def mesh(shared_stack):
    return shared_stack


@pytest.fixture(scope="module")
def keys(mesh) -> auth.Keys:
    return auth.ensure_keys(auth.auth_dir(mesh.settings.run_dir))


def request_for(method):
    """The smallest request of ``method``'s type; a job id no job has (NOT_FOUND, nothing written)."""
    message = message_factory.GetMessageClass(method.input_type)()
    if "job_id" in method.input_type.fields_by_name:
        message.job_id = "no-such-job"
    return message


def code_of(channel: grpc.Channel, path: str) -> grpc.StatusCode:
    """What one call of ``path`` through ``channel`` ends with (a live feed cut at 1 s: DEADLINE_EXCEEDED)."""
    method = METHODS[path]
    request = request_for(method)
    kwargs = dict(request_serializer=lambda m: m.SerializeToString(), response_deserializer=lambda b: b)
    try:
        if method.client_streaming:
            list(channel.stream_stream(f"/{path}", **kwargs)(iter([request]), timeout=5))
        elif method.server_streaming:
            list(channel.unary_stream(f"/{path}", **kwargs)(request, timeout=1))
        else:
            channel.unary_unary(f"/{path}", **kwargs)(request, timeout=5)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def web_code_of(address: str, path: str, token: str, **kwargs) -> int:
    call = GrpcWeb(address, path, request_for(METHODS[path]), token=token, deadline="1S", **kwargs)
    try:
        for _ in call.messages():
            pass
    except (TimeoutError, http.client.IncompleteRead):
        return grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    finally:
        call.close()
    return call.status


ANSWERED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.DEADLINE_EXCEEDED}  # the service's own answers: the token got through


@pytest.mark.parametrize("why", ["missing", "expired", "foreign", "garbled"])
def test_no_valid_token_is_unauthenticated_on_every_public_method(mesh, keys, tmp_path, why):
    token = {"missing": "", "expired": keys.token(auth.SCOPES, ttl_s=-30),
             "foreign": auth.ensure_keys(tmp_path).token(auth.SCOPES), "garbled": "not.a.token"}[why]
    with client.channel(mesh.envoy, token=token) as channel:
        codes = {path: code_of(channel, path) for path in METHODS}
    assert set(codes.values()) == {grpc.StatusCode.UNAUTHENTICATED}, codes
    web = {path: web_code_of(mesh.envoy, path, token) for path in METHODS if not METHODS[path].client_streaming}
    assert set(web.values()) == {grpc.StatusCode.UNAUTHENTICATED.value[0]}, web


@pytest.mark.parametrize("scope", auth.SCOPES)
def test_a_token_opens_exactly_the_methods_of_its_scopes(mesh, keys, scope):
    token = keys.token([scope])
    with client.channel(mesh.envoy, token=token) as channel:
        codes = {path: code_of(channel, path) for path in METHODS}
    for path, code in codes.items():
        if envoy.SCOPES[path] == scope:
            assert code in ANSWERED, (path, code)
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED, (path, code)
    for path, method in METHODS.items():
        if not method.client_streaming:
            web = web_code_of(mesh.envoy, path, token)
            assert (web == grpc.StatusCode.PERMISSION_DENIED.value[0]) is (envoy.SCOPES[path] != scope), (path, web)


def test_the_health_check_is_open(mesh):
    with client.channel(mesh.envoy, token="") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_the_internal_service_is_out_of_reach_even_with_every_scope(mesh):
    with client.channel(mesh.envoy, token=mesh.token) as channel:
        create = channel.unary_unary("/satlas.internal.v1.JobControlService/CreateJobs",
                                     request_serializer=job_control_pb2.CreateJobsRequest.SerializeToString,
                                     response_deserializer=job_control_pb2.CreateJobsResponse.FromString)
        with pytest.raises(grpc.RpcError) as exc:
            create(job_control_pb2.CreateJobsRequest(), timeout=5)
    assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED  # Envoy's own answer: no route goes there
    web = GrpcWeb(mesh.envoy, "satlas.internal.v1.JobControlService/CreateJobs", job_control_pb2.CreateJobsRequest(),
                  token=mesh.token)
    list(web.messages())
    web.close()
    assert web.status == grpc.StatusCode.UNIMPLEMENTED.value[0]


def front_door(mesh, tmp_path: Path, **settings) -> Stack:
    """A second Envoy before the shared stack's services, with settings of its own (and its own keys)."""
    s = mesh.settings
    return Stack(StackSettings.isolated(tmp_path, only=("envoy",), ingest_addr=s.ingest_addr,
                                        orchestrator_addr=s.orchestrator_addr, analysis_addr=s.analysis_addr,
                                        web_port=s.web_port, **settings))


def list_models(channel: grpc.Channel) -> grpc.StatusCode:
    return code_of(channel, "satlas.v1.AnalysisService/ListModels")


def aio_list_models(target: str, **door) -> grpc.StatusCode:
    """ListModels over ``client.aio_channel`` (the benchmark's client), as ``list_models``."""
    async def call() -> grpc.StatusCode:
        channel, metadata = client.aio_channel(target, **door)
        async with channel:
            try:
                await channel.unary_unary("/satlas.v1.AnalysisService/ListModels",
                                          request_serializer=lambda m: m.SerializeToString(),
                                          response_deserializer=lambda b: b)(
                    analysis_service_pb2.ListModelsRequest(), timeout=5, metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK

    return asyncio.run(call())


def test_aio_clients_carry_the_token_too(mesh):
    assert aio_list_models(mesh.envoy, token=mesh.token) == grpc.StatusCode.OK
    assert aio_list_models(mesh.envoy, token="") == grpc.StatusCode.UNAUTHENTICATED


def test_the_rate_limit_refuses_a_client_past_its_burst_then_lets_it_in_again(mesh, tmp_path):
    with front_door(mesh, tmp_path, rate_limit=2, rate_burst=4) as door, \
            client.channel(door.envoy, token=door.token) as channel:
        codes = [list_models(channel) for _ in range(8)]
        assert codes[:3] == [grpc.StatusCode.OK] * 3, codes  # the burst (one token may refill meanwhile)
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes[4:], codes
        path = "satlas.v1.AnalysisService/ListModels"
        assert web_code_of(door.envoy, path, door.token) == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        time.sleep(1.6)  # two tokens a second come back
        assert list_models(channel) == grpc.StatusCode.OK


def test_tls_with_the_local_ca_and_no_plaintext(mesh, tmp_path):
    with front_door(mesh, tmp_path, tls=True) as door:
        assert door.ca_file and door.dashboard_url.startswith("https://localhost:")
        host, port = door.envoy.rsplit(":", 1)
        target = f"localhost:{port}"
        with client.channel(target, ca=door.ca_file, token=door.token) as channel:
            assert list_models(channel) == grpc.StatusCode.OK
        assert aio_list_models(target, ca=door.ca_file, token=door.token) == grpc.StatusCode.OK
        context = ssl.create_default_context(cafile=door.ca_file)
        path = "satlas.v1.OrchestratorService/GetStats"
        assert web_code_of(target, path, door.token, context=context) == 0  # grpc-web over HTTPS
        with client.channel(target, token=door.token, ca="") as plain:  # plaintext to the TLS port
            assert list_models(plain) == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(ssl.SSLError):  # a client that does not trust the local CA
            conn = http.client.HTTPSConnection("localhost", int(port), timeout=5,
                                               context=ssl.create_default_context())
            conn.request("GET", "/")


def test_the_ingest_counts_each_tokens_jobs_through_envoy(mesh, keys):
    """Envoy passes the verified token on; the ingest's quota holds per token, in jobs."""
    mesh.restart("ingest", env={"INGEST_QUOTA_JOBS_PER_S": "2", "INGEST_QUOTA_BURST": "2"})
    try:
        one, other = (keys.token(["submit"], subject=s) for s in ("quota-1", "quota-2"))
        request = ipb.SubmitSeriesRequest(series={"values": [float(i % 5) for i in range(32)]},
                                          models=["vae_timeseries", "transformer_timeseries"])
        with client.channel(mesh.envoy, token=one) as first, client.channel(mesh.envoy, token=other) as second:
            submit = ipb_grpc.IngestServiceStub(first).SubmitSeries
            assert len(submit(request, timeout=10).job_ids) == 2
            with pytest.raises(grpc.RpcError) as exc:
                submit(request, timeout=10)
            assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.value.details()
            assert len(ipb_grpc.IngestServiceStub(second).SubmitSeries(request, timeout=10).job_ids) == 2
            time.sleep(1.1)  # two jobs a second
            assert len(submit(request, timeout=10).job_ids) == 2
    finally:
        mesh.restart("ingest")


def launcher(tmp_path: Path, **env) -> subprocess.Popen:
    """`make up` with just the dashboard's files and Envoy, on free ports."""
    environ = {**os.environ, "SATLAS_RUN_DIR": str(tmp_path), "ENVOY_PORT": "0", "ENVOY_ADMIN_PORT": "0",
               "WEB_PORT": "0", **env}
    return subprocess.Popen([sys.executable, "-m", "launcher", "--only", "web,envoy"], cwd=ROOT, env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_the_door_opens_beyond_loopback_only_signed_or_when_told_in_words(tmp_path):
    refused = launcher(tmp_path / "vague", ENVOY_HOST="0.0.0.0", SATLAS_AUTH="0")
    out, _ = refused.communicate(timeout=60)
    assert refused.returncode == 2
    assert out.strip().splitlines() == ["make up: refusing to open the front door on 0.0.0.0 without authentication: "
                                        "set SATLAS_AUTH=on, or SATLAS_AUTH=off to mean it"]
    told = launcher(tmp_path / "told", ENVOY_HOST="0.0.0.0", SATLAS_AUTH="off")
    lines = []
    try:
        for line in told.stdout:
            lines.append(line)
            if line.startswith("Satlas is up"):
                break
        warnings = [x for x in lines if x.startswith("WARNING")]
        assert warnings == ["WARNING: the front door on 0.0.0.0 is open to anyone who reaches it (SATLAS_AUTH=off)\n"]
        assert not (tmp_path / "told" / "auth").exists()  # no keys, no token: nothing is checked
    finally:
        told.send_signal(signal.SIGINT)
        told.wait(30)
