"""compose.yaml (the GPU deployment), checked against the code.

Docker is not available here, so `docker compose config` cannot validate the file: these tests parse
it with PyYAML, apply compose's `${VAR:-default}` interpolation with an empty environment, and compare
every name, address, port and command with what the services actually read, bind and import.
"""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent import futures
from urllib.parse import urlsplit

import pytest
import yaml
from compose_helpers import (
    COMPOSE,
    GRPC_SERVICES,
    IMAGE_PORTS,
    NOT_YET,
    PYTHON_SERVICES,
    RAW,
    ROOT,
    SERVICES,
    VAR,
    WILDCARDS,
    bind_port,
    closure,
    entry_files,
    env,
    flag,
    interpolate,
    published,
)

from launcher import model_repository
from launcher.settings import StackSettings, split_addr
from launcher.triton_local import TritonSettings
from satkit.queue import QUEUE


def test_every_service_design_requires_is_there():
    assert {"triton", "postgres", "redis", "envoy", *PYTHON_SERVICES} <= set(SERVICES)


def test_every_variable_has_a_default():
    bare = [m.group(0) for m in VAR.finditer(RAW) if m.group(0) != "$$" and m.group(2) not in (":-", "-")]
    assert not bare, f"`docker compose up` with no .env needs a default for: {bare}"


def test_triton_is_nvidias_gpu_image_serving_the_committed_repository():
    t = SERVICES["triton"]
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:2[45]\.\d\d-py3", t["image"]), t["image"]
    assert t["command"][0] == "tritonserver" and "--model-repository=/models" in t["command"]
    mounts = [v.split(":") for v in t["volumes"]]
    assert [(ROOT / src).resolve() for src, dst, *mode in mounts if dst == "/models" and mode == ["ro"]] == [
        ROOT / "model_repository"]
    devices = t["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "/v2/health/ready" in " ".join(t["healthcheck"]["test"])
    assert t["healthcheck"]["test"][-1].count(f":{TritonSettings().http_port}/") == 1
    assert model_repository.model_dirs(ROOT / "model_repository")  # something to serve


@pytest.mark.parametrize("model_dir", model_repository.model_dirs(ROOT / "model_repository"), ids=lambda p: p.name)
def test_every_model_asks_for_the_gpu(model_dir):
    config = model_repository.read_config(model_dir)
    # Both run in NVIDIA's image; convert_model.py writes onnxruntime, a TensorRT plan is the other option.
    assert config.backend == "onnxruntime" or config.platform == "tensorrt_plan", config
    kinds = [g.kind for g in config.instance_group]
    assert kinds and set(kinds) == {model_repository.mc.ModelInstanceGroup.KIND_GPU}


@pytest.mark.parametrize("name", PYTHON_SERVICES)
def test_python_services_run_code_from_this_repository(name):
    s = SERVICES[name]
    assert s["build"] == "." and s["image"] == SERVICES["orchestrator"]["image"]  # one image for all
    assert all(p.is_file() for p in entry_files(name))
    if name == "worker":
        cmd = s["command"]
        assert cmd[cmd.index("-Q") + 1] == QUEUE


@pytest.mark.parametrize("name", PYTHON_SERVICES)
def test_environment_names_are_read_by_the_code(name):
    files, _ = closure(entry_files(name))
    read = set()  # declared as a satkit.settings.Var, or read from the environment by hand
    for f in files:
        read |= set(re.findall(r"""(?:\bVar\(|(?:\benviron|\be)(?:\.get\(|\[))\s*["']([A-Z][A-Z0-9_]*)["']""",
                               f.read_text()))
    unread = set(env(name)) - read
    assert not unread, f"{name} sets {sorted(unread)}, which its code never reads"


@pytest.mark.parametrize("name", PYTHON_SERVICES)
def test_addresses_point_at_listening_services_it_depends_on(name):
    t = TritonSettings()
    listening = dict(IMAGE_PORTS, triton={t.http_port, t.grpc_port, t.metrics_port})
    listening |= {n: {bind_port(n)} for n in GRPC_SERVICES}
    depends = set(SERVICES[name].get("depends_on", {}))
    for key, value in env(name).items():
        if not key.endswith(("_ADDR", "_URL")):
            continue
        url = urlsplit(value if "://" in value else f"//{value}")
        host, port = url.hostname, url.port
        if host in WILDCARDS:
            assert key == f"{name.upper()}_ADDR", f"{name}: {key} binds, but it is not this service's address"
            continue
        assert port in listening.get(host, ()), f"{name}: {key}={value} reaches no listening service"
        assert host in depends, f"{name}: {key} talks to {host}, which is not in depends_on"
    if "TRITON_URL" in env(name):  # tritonclient.grpc: the gRPC port, not HTTP
        assert urlsplit("//" + env(name)["TRITON_URL"]).port == TritonSettings().grpc_port


def test_only_envoy_is_published_and_flower_on_the_hosts_loopback():
    d = StackSettings()
    expected = {"envoy": {8080}, "flower": {d.flower_port}}  # DESIGN: Envoy 8080
    for name in SERVICES:
        assert set(published(name)) == expected.get(name, set()), name
    assert set(published("flower").values()) == {int(flag(SERVICES["flower"]["command"], "--port"))}
    raw = yaml.safe_load(RAW)["services"]
    assert [str(p).split(":${")[0] for p in raw["flower"]["ports"]] == ["127.0.0.1"]
    assert all(str(p).startswith("${") for p in raw["envoy"]["ports"])  # every interface: the door
    for name in expected:  # configurable from the environment
        assert all("${" in str(p) for p in raw[name]["ports"]), raw[name]["ports"]


def test_the_services_talk_on_an_internal_network_and_only_envoy_and_flower_reach_out():
    assert COMPOSE["networks"]["backend"] == {"internal": True}
    for name, s in SERVICES.items():
        assert "backend" in s["networks"], name
        assert ("edge" in s["networks"]) is (name in ("envoy", "flower")), name


def test_envoy_serves_tls_with_tokens_from_what_make_secrets_makes(tmp_path):
    config = yaml.safe_load((ROOT / "envoy" / "envoy.compose.yaml").read_text())
    mounted = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["envoy"]["volumes"]}
    chain = config["static_resources"]["listeners"][0]["filter_chains"][0]
    tls = chain["transport_socket"]["typed_config"]["common_tls_context"]["tls_certificates"][0]
    jwt = [f for f in chain["filters"][0]["typed_config"]["http_filters"] if f["name"].endswith("jwt_authn")][0]
    needed = [tls["certificate_chain"]["filename"], tls["private_key"]["filename"],
              jwt["typed_config"]["providers"]["satlas"]["local_jwks"]["filename"]]
    assert all(path in mounted for path in needed), (needed, mounted)
    # `make secrets` (launcher.auth keys, launcher.tls) makes each mounted file, in a run directory.
    subprocess.run([sys.executable, "-m", "launcher.auth", "keys", "--run-dir", str(tmp_path / ".run")],
                   check=True, cwd=ROOT, capture_output=True)
    subprocess.run([sys.executable, "-m", "launcher.tls", "--dir", str(tmp_path / ".run" / "tls")],
                   check=True, cwd=ROOT, capture_output=True)
    for path in needed:
        assert (tmp_path / mounted[path]).is_file(), mounted[path]
    assert not any("signing" in source for source in mounted.values())  # the private key stays out


def test_dependencies_exist_and_healthy_ones_have_healthchecks():
    for name, s in SERVICES.items():
        for target, spec in s.get("depends_on", {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            # Wait for health wherever there is a healthcheck; service_healthy without one never starts.
            healthy = spec.get("condition") == "service_healthy"
            assert healthy == ("healthcheck" in SERVICES[target]), f"{name} -> {target}: {spec}"
        assert s.get("restart") in ("always", "unless-stopped"), name

    def visit(name, path):
        assert name not in path, f"dependency cycle: {path + [name]}"
        for target in SERVICES[name].get("depends_on", {}):
            visit(target, path + [name])

    for name in SERVICES:
        visit(name, [])


def test_grpc_healthcheck_answers_for_the_right_port():
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    tests = {n: SERVICES[n]["healthcheck"]["test"] for n in GRPC_SERVICES}
    scripts = set()
    for name, test in tests.items():
        assert test[:3] == ["CMD", "python", "-c"]
        assert split_addr(test[4])[1] == bind_port(name), name
        scripts.add(test[3])
    (script,) = scripts

    server = grpc.server(futures.ThreadPoolExecutor(2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    target = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()

    def check() -> int:
        return subprocess.run([sys.executable, "-c", script, target], capture_output=True, timeout=30).returncode

    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert check() == 0
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert check() != 0
    finally:
        server.stop(None)
    assert check() != 0  # nobody listening


def test_worker_can_scale_and_checks_itself():
    w = SERVICES["worker"]
    assert "container_name" not in w and "ports" not in w
    assert int(w["deploy"]["replicas"]) >= 1
    assert "${" in yaml.safe_load(RAW)["services"]["worker"]["deploy"]["replicas"]
    hostname = flag(w["command"], "--hostname")  # worker@%h; the ping must address this replica
    assert hostname.endswith("@%h")
    assert f"-d {hostname.replace('%h', '$HOSTNAME')}" in w["healthcheck"]["test"][-1]


def test_database_url_is_the_postgres_service_through_psycopg2():
    import sqlalchemy as sa

    from satkit.settings import sqlalchemy_url

    url = sa.engine.make_url(sqlalchemy_url(env("orchestrator")["DATABASE_URL"]))
    assert url.get_dialect().driver == "psycopg2"
    pg = env("postgres")
    assert (url.host, url.port, url.username, url.password, url.database) == (
        "postgres", 5432, pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])


def test_bind_mounts_and_named_volumes_exist():
    for name, s in SERVICES.items():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("./.run/"):
                continue  # made by `make secrets` (tested above)
            if src.startswith("."):
                rel = (ROOT / src).resolve().relative_to(ROOT).as_posix()
                assert rel in NOT_YET or (ROOT / rel).exists(), f"{name} mounts missing {src}"
            else:
                assert src in COMPOSE["volumes"], f"{name} uses undeclared volume {src}"


def test_envoy_routes_to_the_compose_services_on_their_ports():
    config = yaml.safe_load((ROOT / "envoy" / "envoy.compose.yaml").read_text())
    targets = {c["name"]: c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
               ["socket_address"] for c in config["static_resources"]["clusters"]}
    for name in GRPC_SERVICES:
        assert targets[name]["address"] == name and name in SERVICES
        listen = interpolate(SERVICES[name]["environment"][f"{name.upper()}_ADDR"])
        assert listen.endswith(f":{targets[name]['port_value']}")
    web = targets["web"]
    assert web["address"] == "web" and "web" in SERVICES
    listen = re.search(r"listen (\d+);", (ROOT / "web" / "nginx.conf").read_text()).group(1)
    assert int(listen) == web["port_value"]
    assert f"127.0.0.1:{listen}/" in " ".join(SERVICES["web"]["healthcheck"]["test"])
    assert SERVICES["envoy"]["depends_on"]["web"] == {"condition": "service_healthy"}
