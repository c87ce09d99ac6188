"""Property-based tests of validation (satkit.validation) over generated requests: its verdict
on a SubmitSeriesRequest equals the contract's rules written out by hand, and no bytes, parsed
as any public request, make it fail other than with field violations."""

from __future__ import annotations

import math

from google.protobuf import message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from satlas.v1 import analysis_service_pb2 as apb
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import orchestrator_service_pb2 as opb
from satlas.v1 import timeseries_pb2 as tpb

from satkit.validation import Malformed, bad_request_status, tolerant, violations

PUBLIC_INPUTS = [message_factory.GetMessageClass(m.input_type)
                 for f in (ipb, opb, apb) for s in f.DESCRIPTOR.services_by_name.values() for m in s.methods]

floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e6, 1e6))
values = st.one_of(st.lists(floats, max_size=40), st.integers(4090, 4100).map(lambda n: [0.5] * n),
                   st.just([]))
names = st.text(max_size=140).filter(lambda s: "\x00" not in s) | st.sampled_from(["vae_timeseries", "x" * 129])


@st.composite
def submit_requests(draw) -> ipb.SubmitSeriesRequest:
    request = ipb.SubmitSeriesRequest(models=draw(st.lists(names, max_size=18)),
                                      idempotency_key=draw(st.text(max_size=140)))
    if draw(st.integers(0, 9)):  # now and then no series at all
        request.series.CopyFrom(tpb.TimeSeries(
            values=draw(values), series_id=draw(st.text(max_size=270)),
            labels=draw(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=34))))
    return request


def expected(r: ipb.SubmitSeriesRequest) -> set[str]:
    """The rules of protos/satlas/v1/{ingest_service,timeseries}.proto, written out."""
    out = set()
    if not r.HasField("series"):
        out.add("series")
    else:
        v = list(r.series.values)
        if not v or len(v) > 4096:
            out.add("series.values")
        out |= {f"series.values[{i}]" for i, x in enumerate(v) if not math.isfinite(x)}
        if len(r.series.series_id) > 256:
            out.add("series.series_id")
        if len(r.series.labels) > 32:
            out.add("series.labels")
    if not r.models or len(r.models) > 16:
        out.add("models")
    seen = set()
    for i, m in enumerate(r.models):
        if m in seen or len(m) > 128:
            out.add(f"models[{i}]")
        seen.add(m)
    if len(r.idempotency_key) > 128:
        out.add("idempotency_key")
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(submit_requests())
def test_the_verdict_on_a_submission_is_the_contracts(request):
    found = violations(request)
    assert {path for path, _ in found} == expected(request)
    assert all(isinstance(d, str) and d for _, d in found)
    if found:  # and it travels as INVALID_ARGUMENT with the same field violations
        status = bad_request_status(found)
        assert status.code == 3 and len(status.details) == 1


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PUBLIC_INPUTS), st.binary(max_size=300))
def test_any_bytes_as_any_public_request_end_in_a_verdict(cls, data):
    parsed = tolerant(cls.FromString, cls.DESCRIPTOR.full_name)(data)
    if isinstance(parsed, Malformed):  # as INVALID_ARGUMENT, naming the type
        assert parsed.violations[0][0] == "request" and cls.DESCRIPTOR.full_name in parsed.message
        assert bad_request_status(parsed.violations, parsed.message).code == 3
        return
    for path, description in violations(parsed):
        assert path.split("[")[0].split(".")[0] in cls.DESCRIPTOR.fields_by_name
        assert description
