"""Random and mutated protobuf bytes sent to every public RPC of the live services (ingest,
orchestrator, analysis), straight and through Envoy (gRPC and grpc-web): every call ends with a
proper gRPC status and in time, no service crashes, and the only rows written are those of the
jobs whose ids came back."""

from __future__ import annotations

import random
import struct
import time
import urllib.error
import urllib.request
from collections import Counter
from http import client as http_client

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import message_factory
from satlas.v1 import analysis_service_pb2 as apb
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import orchestrator_service_pb2 as opb
from satlas.v1 import timeseries_pb2 as tpb

from launcher.probes import GrpcHealth
from orchestrator_svc.db import make_engine
from satkit import client

SEED = 20261203
CASES = 60  # per method and route
SERVICES = [ipb.DESCRIPTOR.services_by_name["IngestService"], opb.DESCRIPTOR.services_by_name["OrchestratorService"],
            apb.DESCRIPTOR.services_by_name["AnalysisService"]]
METHODS = [m for s in SERVICES for m in s.methods]
ANSWERS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION}
LIVE_FEEDS = {"WatchJobs", "WatchJob"}  # may still be open at the deadline: that is their job


def valid(method, job_id: str) -> bytes:
    """A well-formed request for ``method``: the seed the mutations start from."""
    series = tpb.TimeSeries(values=[float(i % 7) for i in range(32)], series_id="fuzz")
    examples = {
        "SubmitSeries": ipb.SubmitSeriesRequest(series=series, models=["vae_timeseries"]),
        "StreamSeries": ipb.StreamSeriesRequest(sequence=1, submission=ipb.SubmitSeriesRequest(
            series=series, models=["transformer_timeseries"])),
        "BatchSubmitSeries": ipb.BatchSubmitSeriesRequest(requests=[
            ipb.SubmitSeriesRequest(series=series, models=["vae_timeseries"]),
            ipb.SubmitSeriesRequest(series=series, models=["vae_timeseries", "transformer_timeseries"])]),
        "GetJob": opb.GetJobRequest(job_id=job_id), "CancelJob": opb.CancelJobRequest(job_id=job_id),
        "WatchJob": opb.WatchJobRequest(job_id=job_id), "ListJobs": opb.ListJobsRequest(page_size=3),
        "Analyze": apb.AnalyzeRequest(series=series, model_name="vae_timeseries"),
    }
    cls = message_factory.GetMessageClass(method.input_type)
    return examples.get(method.name, cls()).SerializeToString()


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def mutate(rng: random.Random, seed: bytes) -> bytes:
    """Bytes from one of several corruptions of ``seed``, or from nothing."""
    data = bytearray(seed)
    kind = rng.randrange(8)
    if kind == 0 or not data:
        return rng.randbytes(rng.randrange(0, 300))
    if kind == 1:  # flipped bits
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 2:  # cut short
        del data[rng.randrange(len(data)):]
    elif kind == 3:  # garbage spliced in
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.randbytes(rng.randint(1, 40))
    elif kind == 4:  # a field of a random number and wire type
        data += varint((rng.randint(1, 3000) << 3) | rng.choice([0, 1, 2, 5])) + rng.randbytes(rng.randint(0, 9))
    elif kind == 5:  # a length-delimited field claiming far more than there is
        data += bytes([(1 << 3) | 2, 0xFF, 0xFF, 0xFF, 0x7F])
    elif kind == 6:  # a valid message, repeated (fields merge)
        data = data * rng.randint(2, 5)
    else:  # a varint that never ends
        data += bytes([(2 << 3), *([0xFF] * 12)])
    return bytes(data)


def call(channel: grpc.Channel, method, body: bytes) -> tuple[grpc.StatusCode, list[bytes]]:
    """The status and the responses of one call with ``body`` as its (only) request message."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    live = method.name in LIVE_FEEDS
    timeout = 0.5 if live else 10.0
    try:
        if method.client_streaming:
            responses = list(channel.stream_stream(path)(iter([body]), timeout=timeout))
        elif method.server_streaming:
            responses = []
            for item in channel.unary_stream(path)(body, timeout=timeout):
                responses.append(item)
        else:
            responses = [channel.unary_unary(path)(body, timeout=timeout)]
        return grpc.StatusCode.OK, responses
    except grpc.RpcError as exc:
        if live and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return grpc.StatusCode.OK, []
        return exc.code(), [exc.details() or b""]


def accepted_jobs(method, code, responses) -> int:
    if code != grpc.StatusCode.OK:
        return 0
    if method.name == "SubmitSeries":
        return len(ipb.SubmitSeriesResponse.FromString(responses[0]).job_ids)
    if method.name == "BatchSubmitSeries":
        return sum(len(r.job_ids) for r in ipb.BatchSubmitSeriesResponse.FromString(responses[0]).responses)
    if method.name == "StreamSeries":
        return sum(len(ipb.StreamSeriesResponse.FromString(r).job_ids) for r in responses)
    return 0


def rows(database_url: str) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM inference_results")).scalar()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def a_job(shared_stack) -> str:
    with grpc.insecure_channel(shared_stack.ingest) as channel:
        request = ipb.SubmitSeriesRequest(series=tpb.TimeSeries(values=[1.0] * 16), models=["vae_timeseries"])
        return channel.unary_unary("/satlas.v1.IngestService/SubmitSeries",
                                   request_serializer=ipb.SubmitSeriesRequest.SerializeToString,
                                   response_deserializer=ipb.SubmitSeriesResponse.FromString)(request).job_ids[0]


@pytest.mark.parametrize("route", ["direct", "envoy"])
def test_random_and_mutated_requests_get_a_proper_status(route, shared_stack, shared_processes, a_job):
    rng = random.Random(f"{SEED}-{route}")
    address = {"ingest": shared_stack.ingest, "orchestrator": shared_stack.orchestrator,
               "analysis": shared_stack.analysis}
    before = rows(shared_stack.database_url)
    accepted, improper = 0, []
    channels = {}
    try:
        for method in METHODS:
            service = method.containing_service.name.removesuffix("Service").lower()
            target = shared_stack.envoy if route == "envoy" else address[service]
            # through Envoy with every scope: the bytes, not the token, are under test
            channel = channels.setdefault(target, client.channel(target, token=shared_stack.token, ca=""))
            seed = valid(method, a_job)
            for _ in range(CASES // 3 if method.name in LIVE_FEEDS else CASES):
                body = mutate(rng, seed)
                began = time.monotonic()
                code, responses = call(channel, method, body)
                if code not in ANSWERS or time.monotonic() - began > 12:
                    improper.append((method.name, code, body[:40], responses[:1]))
                accepted += accepted_jobs(method, code, responses)
    finally:
        for channel in channels.values():
            channel.close()
    assert improper == [], (Counter((m, c.name) for m, c, *_ in improper), improper[:5])
    time.sleep(0.5)  # the last accepted jobs' rows are committed before their ids came back; margin
    assert rows(shared_stack.database_url) - before == accepted
    for name, addr in address.items():  # every service still answers
        health = GrpcHealth(addr)
        try:
            assert health(), name
        finally:
            health.close()
    assert all(_alive(pid) for pid in shared_processes.values())


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def grpc_web(url: str, body: bytes, framed: bool = True, timeout: str = "5S",
             token: str = "") -> tuple[int, int | None]:
    """(HTTP status, grpc-status) of one grpc-web call; the status is in a header or the trailer frame."""
    payload = (struct.pack(">BI", 0, len(body)) + body) if framed else body
    request = urllib.request.Request(url, data=payload, method="POST", headers={
        "content-type": "application/grpc-web+proto", "x-grpc-web": "1", "grpc-timeout": timeout,
        **({"authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            status = response.headers.get("grpc-status")
            http = response.status
            data = response.read()
    except urllib.error.HTTPError as exc:  # Envoy's own answers carry a grpc-status too
        status = exc.headers.get("grpc-status")
        return exc.code, int(status) if status is not None else None
    except http_client.IncompleteRead:  # cut short: a stream reaching its deadline
        return http, -1
    if status is None:  # in the trailer frame: flag 0x80, then "grpc-status: N" lines
        at = 0
        while at + 5 <= len(data):
            flag, size = struct.unpack(">BI", data[at:at + 5])
            if flag & 0x80:
                for line in data[at + 5:at + 5 + size].decode(errors="replace").split("\r\n"):
                    if line.lower().startswith("grpc-status:"):
                        status = line.split(":", 1)[1].strip()
            at += 5 + size
    return http, int(status) if status is not None else None


def test_grpc_web_through_envoy_answers_garbage_with_a_status(shared_stack, a_job):
    rng = random.Random(SEED)
    allowed = {c.value[0] for c in ANSWERS}
    improper = []
    for method in METHODS:
        if method.client_streaming:
            continue  # grpc-web has no client streaming
        url = f"http://{shared_stack.envoy}/{method.containing_service.full_name}/{method.name}"
        seed = valid(method, a_job)
        for k in range(CASES // 3):
            body = mutate(rng, seed)
            framed = k % 5 != 0  # every fifth: not even a frame
            deadline_s = 0.5 if method.name in LIVE_FEEDS else 10.0
            began = time.monotonic()
            http, status = grpc_web(url, body, framed, timeout=f"{int(deadline_s * 1000)}m", token=shared_stack.token)
            took = time.monotonic() - began
            ok = status in allowed or (method.name in LIVE_FEEDS and status in (4, -1))
            # A body that holds no whole frame is a call without a request message, which gRPC
            # Python's server leaves open (it never runs the handler) until the deadline. Then
            # whichever timer fires first answers: Envoy's (HTTP 504, UNAVAILABLE) or the server's
            # (DEADLINE_EXCEEDED). Both end the call at its deadline, not later.
            ok = ok or (not framed and (http, status) in ((504, 14), (200, 4)) and took >= 0.9 * deadline_s)
            if not ok or took > 12:
                improper.append((method.name, http, status, round(took, 2), body[:40]))
    assert improper == [], improper[:10]
