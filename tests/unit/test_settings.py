"""The one settings mechanism: parsing, loading, the README's tables, and no variable read by hand."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from launcher.settings import StackSettings, markdown, sections, split_addr
from satkit.settings import REGISTRY, Var, load, parse, setting, sqlalchemy_url

ROOT = Path(__file__).resolve().parents[2]
SERVICE_PACKAGES = ("ingest_svc", "orchestrator_svc", "analysis_svc", "satkit", "launcher", "tools")


def test_values_take_the_type_of_their_default():
    assert parse("3", 1, "N") == 3 and parse("0.5", 1.0, "X") == 0.5 and parse("a", "b", "S") == "a"
    assert parse("off", True, "B") is False and parse("Yes", False, "B") is True
    assert parse(" a, b ,,c", ("x",), "T") == ("a", "b", "c")
    assert parse("/tmp/x", Path("."), "P") == Path("/tmp/x")


@pytest.mark.parametrize("raw,like", [("many", 1), ("1.5", 1), ("maybe", True), ("x", 0.1)])
def test_a_bad_value_names_its_variable(raw, like):
    with pytest.raises(ValueError, match=rf"^SOME_VAR={raw!r}"):
        parse(raw, like, "SOME_VAR")


def test_fallbacks_defaults_and_overrides():
    first = Var("TEST_SETTINGS_FIRST", 7, "a test variable")
    second = Var("TEST_SETTINGS_SECOND", "d", "falls back on the first", also=("TEST_SETTINGS_FIRST",))

    @dataclass(frozen=True)
    class S:
        a: int = setting(first)
        b: str = setting(second)
        c: float = 1.0  # not a variable

    assert load(S, {}) == S(7, "d", 1.0)
    assert load(S, {"TEST_SETTINGS_FIRST": "9"}) == S(9, "9", 1.0)
    assert load(S, {"TEST_SETTINGS_FIRST": "9", "TEST_SETTINGS_SECOND": "x"}, a=1) == S(1, "x", 1.0)
    assert load(S, {"TEST_SETTINGS_FIRST": ""}).a == 7  # empty means unset, as in compose's ${X:-}


def test_a_name_is_declared_once():
    Var("TEST_SETTINGS_ONCE", 1, "one")
    Var("TEST_SETTINGS_ONCE", 1, "one")  # the same declaration again (a re-import) is fine
    with pytest.raises(ValueError, match="declared twice"):
        Var("TEST_SETTINGS_ONCE", 2, "another")


def test_every_variable_is_in_the_readme_and_the_readme_is_generated():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- settings:begin -->\n(.*)\n<!-- settings:end -->", text, re.S)
    assert block, "README.md has no settings block"
    assert block.group(1).strip() == markdown().strip(), "run `python -m launcher.settings` into the README"
    shown = {v.name for _, vs in sections() for v in vs}
    declared = {n for n in REGISTRY if not n.startswith("TEST_")}
    assert declared == shown, f"declared but not in the README: {sorted(declared - shown)}"


def test_no_process_reads_the_environment_by_hand():
    allowed = {"satkit/settings.py", "satkit/__init__.py", "launcher/triton_local.py", "launcher/stack.py",
               "launcher/triton_onnx_model.py", "tools/soak/__main__.py", "tools/bench/observe.py"}  # the Var
    # mechanism; fork flags; children's PYTHONPATH; the environment the soak and the benchmark hand their stacks
    offenders = []
    for package in SERVICE_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if rel not in allowed and re.search(r"os\.environ|os\.getenv", path.read_text()):
                offenders.append(rel)
    assert not offenders, f"read a satkit.settings.Var instead: {offenders}"


def test_the_stack_derives_what_is_unset():
    s = StackSettings.from_env({"SATLAS_RUN_DIR": "/tmp/run-x", "ENVOY_PORT": "9"})
    assert (s.run_dir, s.envoy_addr, s.triton.work_dir) == (Path("/tmp/run-x"), "127.0.0.1:9", Path("/tmp/run-x/triton"))
    assert s.database_url == s.redis_url == s.broker_url == s.triton_url == ""  # started or derived by the stack


def test_database_urls_for_sqlalchemy():
    assert sqlalchemy_url("postgresql://u@h/db") == sqlalchemy_url("postgres://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert sqlalchemy_url("sqlite:///x.db") == "sqlite:///x.db"


def test_the_triton_benchmark_starts_its_own_server_from_the_triton_variables(monkeypatch):
    from tools.bench.triton import local_settings

    monkeypatch.setenv("TRITON_INSTANCE_COUNT", "3")
    s = local_settings()
    assert s.instance_count == 3 and s.grpc_port not in (0, 8001) and s.work_dir.name.startswith("bench-triton-")


def test_the_front_door_is_on_loopback_and_opens_beyond_it_only_signed_or_said_open(tmp_path):
    assert StackSettings.from_env({}).envoy_addr == "127.0.0.1:8080"
    public = {"ENVOY_HOST": "0.0.0.0", "SATLAS_RUN_DIR": str(tmp_path)}
    assert StackSettings.from_env(public).resolved().auth  # signed tokens: fine anywhere
    for vague in ("0", "false", "no"):
        with pytest.raises(ValueError, match="refusing to open the front door on 0.0.0.0"):
            StackSettings.from_env({**public, "SATLAS_AUTH": vague}).resolved()
    opened = StackSettings.from_env({**public, "SATLAS_AUTH": "off"}).resolved()
    assert not opened.auth and opened.envoy_addr.startswith("0.0.0.0:")
    assert not StackSettings.from_env({"SATLAS_AUTH": "0"}).resolved().auth  # loopback: any spelling


def test_every_grpc_process_gets_a_metrics_port_of_its_own(tmp_path):
    s = StackSettings.from_env({"SATLAS_RUN_DIR": str(tmp_path), "ORCHESTRATOR_REPLICAS": "3",
                                "DATABASE_URL": "postgresql://x@127.0.0.1/db"}).resolved()
    assert [s.metrics_addr_of(n) for n in ("ingest", "orchestrator", "orchestrator-2", "orchestrator-3", "analysis")] \
        == ["127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9112", "127.0.0.1:9122", "127.0.0.1:9103"]
    free = StackSettings.isolated(tmp_path, orchestrator_replicas=2, database_url="postgresql://x@127.0.0.1/db").resolved()
    ports = [split_addr(free.metrics_addr_of(n))[1] for n in ("ingest", "orchestrator", "orchestrator-2", "analysis")]
    assert all(ports) and len(set(ports)) == 4
    off = StackSettings.from_env({"INGEST_METRICS_ADDR": "off"}).resolved()
    assert off.metrics_addr_of("ingest") == ""
