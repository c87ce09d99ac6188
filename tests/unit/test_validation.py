"""The contract's validation rules as satkit.validation enforces them (no server needed)."""

from __future__ import annotations

import math

import pytest
from google.rpc import code_pb2, error_details_pb2
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import orchestrator_service_pb2 as opb

from satkit.validation import bad_request_status, violations


def request(values=(1.0, 2.0, 3.0), models=("vae_timeseries",), **kw) -> ipb.SubmitSeriesRequest:
    r = ipb.SubmitSeriesRequest(models=list(models), **kw)
    r.series.values.extend(values)
    return r


def test_a_good_request_has_no_violations():
    assert violations(request()) == []


def test_each_rule_names_its_field():
    assert violations(ipb.SubmitSeriesRequest(models=["m"])) == [("series", "is required")]
    assert violations(request(values=())) == [("series.values", "must not be empty")]
    assert violations(request(values=(1.0, math.nan, math.inf)))[0][0] == "series.values[1]"
    assert [f for f, _ in violations(request(values=(1.0, math.nan, -math.inf)))] == [
        "series.values[1]", "series.values[2]"]
    assert violations(request(models=())) == [("models", "must have at least 1 items (got 0)")]
    assert violations(request(models=("a", "b", "a"))) == [("models[2]", "repeats 'a'; items must be unique")]
    assert violations(request(values=[0.5] * 4097))[0][0] == "series.values"
    assert violations(request(idempotency_key="k" * 129))[0][0] == "idempotency_key"
    r = request()
    for i in range(33):
        r.series.labels[f"k{i}"] = "v"
    assert violations(r)[0][0] == "series.labels"


def test_rules_apply_to_every_service():
    assert violations(opb.GetJobRequest()) == [("job_id", "is required")]
    assert violations(opb.GetJobRequest(job_id="x" * 65))[0][0] == "job_id"


def test_bad_request_status_carries_field_violations():
    status = bad_request_status([("series.values[1]", "must be a finite number (got nan)")])
    assert status.code == code_pb2.INVALID_ARGUMENT
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    assert detail.field_violations[0].field == "series.values[1]"


async def test_the_interceptor_checks_public_calls_and_trusts_internal_ones():
    """Internal calls carry what the edge already checked; public ones are checked."""
    import grpc

    from satkit.validation import ValidationInterceptor

    async def handler(request, context):
        return "ran"

    async def continuation(details):
        return grpc.unary_unary_rpc_method_handler(handler)

    class Details:
        def __init__(self, method):
            self.method = method

    interceptor = ValidationInterceptor()
    internal = await interceptor.intercept_service(continuation, Details("/satlas.internal.v1.JobControlService/CreateJobs"))
    public = await interceptor.intercept_service(continuation, Details("/satlas.v1.OrchestratorService/GetJob"))
    assert internal.unary_unary is handler
    assert public.unary_unary is not handler


async def test_bytes_that_do_not_parse_are_invalid_argument_not_unknown():
    """gRPC answers a request it cannot deserialize with UNKNOWN, as if the server had failed."""
    import grpc
    from satlas.v1 import orchestrator_service_pb2 as opb

    from satkit.validation import Malformed, ValidationInterceptor

    async def continuation(details):
        return grpc.unary_unary_rpc_method_handler(lambda r, c: None,
                                                   request_deserializer=opb.GetJobRequest.FromString)

    class Details:
        method = "/satlas.v1.OrchestratorService/GetJob"

    class Aborted(Exception):
        pass

    class Context:
        async def abort_with_status(self, status):
            self.status = status
            raise Aborted

    handler = await ValidationInterceptor().intercept_service(continuation, Details())
    request = handler.request_deserializer(b"\x0a\xff\xff\xff\x7f")  # a string longer than the bytes
    assert isinstance(request, Malformed) and "satlas.v1.GetJobRequest" in request.message
    context = Context()
    with pytest.raises(Aborted):
        await handler.unary_unary(request, context)
    assert context.status.code == grpc.StatusCode.INVALID_ARGUMENT
    assert handler.request_deserializer(b"\x0a\x01x").job_id == "x"  # what parses is passed on

