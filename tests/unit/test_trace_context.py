"""satkit.tracing's own logic: which traceparents are taken, and that tracing off loads nothing."""

from __future__ import annotations

import subprocess
import sys

from satkit import tracing

GOOD = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_only_w3c_traceparents_are_taken():
    assert tracing.valid(GOOD) == GOOD
    for bad in ("", "00-zz", GOOD.upper(), "01" + GOOD[2:], GOOD + "-00",
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
                "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"):
        assert tracing.valid(bad) == "", bad
    assert tracing.incoming([("authorization", "Bearer x"), ("traceparent", f" {GOOD} ")]) == GOOD
    assert tracing.incoming([("traceparent", "garbage")]) == ""
    assert tracing.incoming(None) == ""
    assert tracing.trace_id(GOOD) == "0af7651916cd43dd8448eb211c80319c"
    assert tracing.trace_id("") == tracing.trace_id(None) == ""


def test_with_no_endpoint_the_services_load_no_tracing_sdk_or_exporter():
    # (redis-py imports OpenTelemetry's API and metrics SDK for its own metrics, off unless set up.)
    code = ("import sys; from satkit import tracing; "
            "import ingest_svc.__main__, orchestrator_svc.__main__, analysis_svc.worker.app; "
            "assert not tracing.setup('x') and not tracing.enabled(); "
            "print(sorted(m for m in sys.modules if m.startswith(SDK)))")
    code = "SDK = ('opentelemetry.sdk.trace', 'opentelemetry.exporter'); " + code
    env = {"PATH": "/usr/bin:/bin", "OTEL_EXPORTER_OTLP_ENDPOINT": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_sdk_switch_wins_over_an_endpoint():
    code = "from satkit import tracing; print(tracing.configured())"
    base = {"PATH": "/usr/bin:/bin", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=base, timeout=60)
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**base, "OTEL_SDK_DISABLED": "true"}, timeout=60)
    assert (on.stdout.strip(), off.stdout.strip()) == ("True", "False"), (on.stderr, off.stderr)


def test_only_sampled_parents_get_spans_below_them():
    assert tracing.sampled(GOOD)
    assert not tracing.sampled(GOOD[:-2] + "00")
    assert tracing.sampled(GOOD[:-2] + "03")  # other flags beside "sampled"
    assert not tracing.sampled("") and not tracing.sampled(None)
