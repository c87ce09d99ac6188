"""Prometheus's rules and the Grafana dashboard, checked offline.

promtool checks the rules, runs their unit tests (prometheus/rules_test.yml) and checks compose's
scrape configuration; every expression of grafana/dashboards/satlas.json must be valid PromQL over
the metrics the services export (or the rules record), on the provisioned Prometheus data source.
tests/mesh/test_prometheus.py evaluates them on a real Prometheus.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from compose_helpers import SERVICES, flag, mounts

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "prometheus" / "rules.yml"
RULES_TEST = ROOT / "prometheus" / "rules_test.yml"
COMPOSE_CONFIG = ROOT / "prometheus" / "prometheus.compose.yml"
DASHBOARD = ROOT / "grafana" / "dashboards" / "satlas.json"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROMTOOL = Path("/usr/bin/promtool")
needs_promtool = pytest.mark.skipif(not PROMTOOL.exists(), reason="promtool is not installed "
                                    "(scripts/system_deps.sh installs Debian's prometheus, which carries it)")


def histogram(name: str) -> set[str]:
    return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}


# What the services define (test_the_listed_metrics_are_the_ones_the_code_defines) and what the
# others export: the only series the rules and the dashboard may read.
GRPC = {"grpc_server_started_total", "grpc_server_handled_total", *histogram("grpc_server_handling_seconds")}
ORCHESTRATOR = {"satlas_jobs_submitted_total", "satlas_jobs_finished_total", "satlas_jobs_redispatched_total",
                "satlas_jobs_poisoned_total", *histogram("satlas_job_duration_seconds"), "satlas_jobs_in_state",
                "satlas_events_published_total", "satlas_events_dropped_total", "satlas_events_resent_total"}
INGEST = {"satlas_ingest_submissions_total", "satlas_ingest_jobs_admitted_total", "satlas_ingest_backlog"}
WORKER = {*histogram("satlas_worker_batch_size"), *histogram("satlas_worker_triton_request_seconds"),
          "satlas_worker_triton_retries_total", "satlas_worker_stream_reconnects_total", "satlas_worker_jobs_total"}
TRITON = {"nv_inference_request_success", "nv_inference_request_failure", "nv_inference_queue_duration_us",
          "nv_inference_compute_infer_duration_us", "nv_inference_count", "nv_inference_exec_count"}
OTHERS = {"flower_events_total", "flower_worker_online", "envoy_cluster_upstream_rq_total", "up"}
EXPORTED = GRPC | ORCHESTRATOR | INGEST | WORKER | TRITON | OTHERS
# Each family an operator looks for, and the series that show it.
FAMILIES = {
    "jobs": {"satlas_jobs_submitted_total", "satlas_jobs_finished_total"},
    "job durations": histogram("satlas_job_duration_seconds"),
    "jobs in state": {"satlas_jobs_in_state", "satlas:jobs_waiting"},
    "gRPC": GRPC,
    "worker": WORKER,
    "ingest": INGEST,
    "events": {"satlas_events_published_total", "satlas_events_dropped_total", "satlas_events_resent_total"},
    "Triton": TRITON,
    "targets": {"up"},
}
ALERTS = {"SatlasJobFailureRateHigh", "SatlasQueueGrowing", "SatlasJobLatencyHigh", "SatlasTargetDown",
          "SatlasPoisonJobs"}
RECORDED = {"satlas:job_failure_ratio:rate5m", "satlas:job_duration_seconds:p95_5m", "satlas:jobs_waiting",
            "satlas:jobs_finished:rate5m", "satlas:grpc_server_error_ratio:rate5m"}

FUNCTIONS = {"sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile", "group", "rate", "irate",
             "increase", "delta", "deriv", "histogram_quantile", "abs", "clamp_min", "clamp_max", "vector",
             "scalar", "absent", "changes", "resets", "round", "time", "max_over_time", "min_over_time",
             "avg_over_time", "sum_over_time", "label_replace"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
            "offset", "inf", "nan"}
RATE_INTERVAL = "$__rate_interval"


def rules() -> list[dict]:
    return yaml.safe_load(RULES.read_text())["groups"]


def recorded() -> set[str]:
    return {r["record"] for g in rules() for r in g["rules"] if "record" in r}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[str]:
    """Every query of the dashboard, as written (with Grafana's ``$__rate_interval``), panel by panel."""
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """The series names an expression reads. Asserts that every call is a PromQL function."""
    e = expr.replace(RATE_INTERVAL, "1m")
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', "", e)  # label values
    e = re.sub(r"\{[^}]*\}", "", e)  # matchers
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)  # label lists
    e = re.sub(r"\[[^\]]*\]|\boffset\s+\w+", "", e)  # ranges, offsets
    e = re.sub(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", "", e)  # numbers (1e6 is no name)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        if m.group(0).lower() in KEYWORDS:
            continue
        if re.match(r"\s*\(", e[m.end():]):
            assert m.group(0) in FUNCTIONS, f"unknown function {m.group(0)!r} in {expr}"
        else:
            names.add(m.group(0))
    return names


def promtool(*args: str, cwd: Path = ROOT) -> None:
    r = subprocess.run([str(PROMTOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"promtool {' '.join(args)}:\n{r.stdout}{r.stderr}"


def test_metric_names_reads_names_and_nothing_else():
    expr = ('histogram_quantile(0.95, sum by (model, le) (rate(a_bucket{le!="1", b=~"x|y"}[$__rate_interval])))'
            " / ignoring(code) group_left b:c offset 5m > 1e6 or on (d) vector(0) and up unless (e[5m:1m])")
    assert metric_names(expr) == {"a_bucket", "b:c", "up", "e"}
    with pytest.raises(AssertionError, match="unknown function"):
        metric_names("rat(x[5m])")


def test_the_listed_metrics_are_the_ones_the_code_defines():
    """The satlas_ and grpc_ names above are what prometheus_client exposes for the services' metrics."""
    kinds = {"Counter": lambda n: {f"{n}_total"}, "Histogram": histogram, "Gauge": lambda n: {n},
             "GaugeMetricFamily": lambda n: {n}}
    defined = set()
    for package in ("satkit", "ingest_svc", "orchestrator_svc", "analysis_svc"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in kinds
                        and node.args and isinstance(node.args[0], ast.Constant)):
                    defined |= kinds[node.func.id](node.args[0].value.removesuffix("_total"))
    assert defined == GRPC | ORCHESTRATOR | INGEST | WORKER


# The rules.
@needs_promtool
def test_promtool_accepts_the_rules():
    promtool("check", "rules", str(RULES))


@needs_promtool
def test_the_rules_pass_their_unit_tests():
    promtool("test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)


def test_one_group_records_and_one_alerts_each_named_for_satlas():
    groups = rules()
    assert len(groups) == 2
    records, alerts = ([r for r in g["rules"]] for g in groups)
    assert all("record" in r for r in records) and all("alert" in r for r in alerts)
    assert {r["record"] for r in records} == RECORDED
    assert all(r["record"].startswith("satlas:") for r in records)
    assert {r["alert"] for r in alerts} == ALERTS
    for rule in alerts:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name}: no `for`"
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], name
        assert "$value" in notes["summary"] or "$labels" in notes["summary"], f"{name}: a summary that says little"


def test_every_alert_is_unit_tested_firing_and_quiet_and_every_record_checked():
    tests = yaml.safe_load(RULES_TEST.read_text())
    assert tests["rule_files"] == [RULES.name]
    cases = [c for t in tests["tests"] for c in t.get("alert_rule_test", [])]
    for alert in ALERTS:
        assert any(c["alertname"] == alert and c["exp_alerts"] for c in cases), f"{alert} never fires"
        assert any(c["alertname"] == alert and not c["exp_alerts"] for c in cases), f"{alert} is never quiet"
    checked = {n for t in tests["tests"] for c in t.get("promql_expr_test", []) for n in metric_names(c["expr"])}
    assert recorded() <= checked


def test_the_rules_read_only_exported_series():
    known = EXPORTED | recorded()
    for group in rules():
        for rule in group["rules"]:
            unknown = metric_names(rule["expr"]) - known
            assert not unknown, f"{rule.get('record') or rule['alert']} reads {sorted(unknown)}"


@needs_promtool
def test_promtool_accepts_composes_configuration_with_the_rules_where_compose_mounts_them(tmp_path):
    # rule_files name container paths; point them at the repository files compose mounts there.
    config = yaml.safe_load(COMPOSE_CONFIG.read_text())
    assert mounts("prometheus")[flag(SERVICES["prometheus"]["command"], "--config.file")] == COMPOSE_CONFIG
    config["rule_files"] = [str(mounts("prometheus")[path]) for path in config["rule_files"]]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    promtool("check", "config", str(tmp_path / "prometheus.yml"))


# The dashboard.
def test_the_dashboard_is_one_provisionable_dashboard():
    d = dashboard()
    assert d["uid"] and d["title"] and 36 <= d["schemaVersion"] <= 41
    panels = d["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert {p["type"] for p in panels} <= {"timeseries", "stat"}
    cells = set()  # no two panels on one grid cell, none past the 24 columns
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine


def test_every_panel_queries_the_provisioned_prometheus():
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    expected = {"type": "prometheus", "uid": source["uid"]}
    for p in dashboard()["panels"]:
        assert p["datasource"] == expected, p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(set(refs)) == len(refs), p["title"]
        for t in p["targets"]:
            assert t.get("datasource", expected) == expected and t["expr"].strip(), p["title"]


def test_the_dashboard_reads_only_exported_series_with_rate_interval_alone():
    known = EXPORTED | recorded()
    for expr in dashboard_exprs():
        assert set(re.findall(r"\$\{?(\w+)", expr)) <= {"__rate_interval"}, expr
        unknown = metric_names(expr) - known
        assert not unknown, f"{expr} reads {sorted(unknown)}"


@needs_promtool
def test_every_dashboard_expression_is_promql(tmp_path):
    # promtool parses rule expressions: one recording rule per query, with the interval Grafana would fill in.
    group = {"name": "dashboard", "rules": [{"record": f"dashboard:query_{i}", "expr": e.replace(RATE_INTERVAL, "1m")}
                                            for i, e in enumerate(dashboard_exprs())]}
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump({"groups": [group]}))
    promtool("check", "rules", str(tmp_path / "dashboard.yml"))


def test_the_dashboard_shows_every_family_and_every_satlas_and_grpc_series():
    panels = {p["title"]: set().union(*(metric_names(t["expr"]) for t in p["targets"])) for p in dashboard()["panels"]}
    for family, names in FAMILIES.items():
        assert any(names & read for read in panels.values()), f"no panel shows {family}"
    shown = set().union(*panels.values())
    for name in GRPC | ORCHESTRATOR | INGEST | WORKER:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert {name, *histogram(base)} & shown, f"the dashboard never shows {name}"
