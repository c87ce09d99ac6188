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
    mounts,
    published,
    read_only,
)

from analysis_svc.settings import WORKER_METRICS_ADDR
from launcher import model_repository
from launcher.settings import StackSettings, split_addr
from launcher.triton_local import TritonSettings
from satkit.queue import QUEUE
from satkit.settings import ANALYSIS_METRICS_ADDR, INGEST_METRICS_ADDR, ORCHESTRATOR_METRICS_ADDR

# Each metered process's own variable for its /metrics address.
METRICS_VARS = {"ingest": INGEST_METRICS_ADDR, "orchestrator": ORCHESTRATOR_METRICS_ADDR,
                "analysis": ANALYSIS_METRICS_ADDR, "worker": WORKER_METRICS_ADDR}
# launcher/prometheus.py's job names, which prometheus/rules.yml and the Grafana dashboard read.
SCRAPE_JOBS = ("ingest", "orchestrator", "analysis", "worker", "triton", "flower", "envoy")
OPERATOR_TOOLS = ("flower", "prometheus", "grafana")  # published on the host's loopback only
GRAFANA_PROVISIONING = "/etc/grafana/provisioning"  # the image's default (GF_PATHS_PROVISIONING)
GRAFANA_PORT = 3000  # the image's default (GF_SERVER_HTTP_PORT)


def test_every_service_design_requires_is_there():
    assert {"triton", "postgres", "redis", "envoy", "prometheus", "grafana", *PYTHON_SERVICES} <= set(SERVICES)


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
            assert key in (f"{name.upper()}_ADDR", f"{name.upper()}_METRICS_ADDR"), \
                f"{name}: {key} binds, but it is not this service's address"
            continue
        assert port in listening.get(host, ()), f"{name}: {key}={value} reaches no listening service"
        assert host in depends, f"{name}: {key} talks to {host}, which is not in depends_on"
    if "TRITON_URL" in env(name):  # tritonclient.grpc: the gRPC port, not HTTP
        assert urlsplit("//" + env(name)["TRITON_URL"]).port == TritonSettings().grpc_port


def prometheus_listen_port() -> int:
    return int(flag(SERVICES["prometheus"]["command"], "--web.listen-address").rpartition(":")[2])


def test_only_envoy_is_published_and_the_operators_tools_on_the_hosts_loopback():
    d = StackSettings()
    # DESIGN: Envoy 8080; Prometheus and Grafana on their usual ports, as `make up`'s Prometheus.
    expected = {"envoy": {8080}, "flower": {d.flower_port}, "prometheus": {split_addr(d.prometheus_addr)[1]},
                "grafana": {GRAFANA_PORT}}
    for name in SERVICES:
        assert set(published(name)) == expected.get(name, set()), name
    assert set(published("flower").values()) == {int(flag(SERVICES["flower"]["command"], "--port"))}
    assert set(published("prometheus").values()) == {prometheus_listen_port()}
    assert set(published("grafana").values()) == {GRAFANA_PORT}
    assert "GF_SERVER_HTTP_PORT" not in env("grafana")
    raw = yaml.safe_load(RAW)["services"]
    for name in OPERATOR_TOOLS:
        assert [str(p).split(":${")[0] for p in raw[name]["ports"]] == ["127.0.0.1"], name
    assert all(str(p).startswith("${") for p in raw["envoy"]["ports"])  # every interface: the door
    for name in expected:  # configurable from the environment
        assert all("${" in str(p) for p in raw[name]["ports"]), raw[name]["ports"]


def test_the_services_talk_on_an_internal_network_and_only_envoy_and_the_operators_tools_reach_out():
    assert COMPOSE["networks"]["backend"] == {"internal": True}
    for name, s in SERVICES.items():
        # Grafana reads Prometheus alone (on edge): the services are none of its business.
        assert ("backend" in s["networks"]) is (name != "grafana"), name
        assert ("edge" in s["networks"]) is (name in ("envoy", *OPERATOR_TOOLS)), name


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


# Metrics: each process's /metrics in compose, and Prometheus and Grafana reading them.
def prometheus_config() -> dict:
    """The scrape configuration compose's Prometheus loads (the file mounted at its --config.file)."""
    path = mounts("prometheus")[flag(SERVICES["prometheus"]["command"], "--config.file")]
    return yaml.safe_load(path.read_text())


def scrape_targets(job: dict) -> list[tuple[str, int]]:
    """(host, port) of a job's static targets, or of the names its DNS discovery resolves."""
    found = [split_addr(t) for c in job.get("static_configs", []) for t in c["targets"]]
    for c in job.get("dns_sd_configs", []):
        assert c.get("type") == "A", c  # Docker's DNS answers A records, one per container; no SRV
        found += [(n, c["port"]) for n in c["names"]]
    return found


@pytest.mark.parametrize("name", METRICS_VARS)
def test_each_metrics_address_is_the_services_own_variable_on_every_interface(name):
    var = METRICS_VARS[name]
    assert {k for k in env(name) if k.endswith("_METRICS_ADDR")} == {var.name}
    host, port = split_addr(env(name)[var.name])
    assert host in WILDCARDS, f"{name}: {var.name} must bind all interfaces for Prometheus, not {host}"
    assert port == split_addr(var.default)[1]  # the local stack's port, as everywhere in this file
    if name in GRPC_SERVICES:
        assert port != bind_port(name)


def test_the_worker_counts_its_pool_in_a_fresh_directory():
    # prometheus_client's multiprocess mode: each pool process writes files there, the main process sums them.
    directory = env("worker")["PROMETHEUS_MULTIPROC_DIR"]
    assert directory in SERVICES["worker"]["tmpfs"]  # emptied when the container restarts
    # Not in the shared analysis env: the server would write its counts to files no one serves.
    assert not any(k.startswith("PROMETHEUS_") for n in SERVICES if n != "worker" for k in env(n))


def test_prometheus_scrapes_every_metrics_endpoint_compose_serves():
    jobs = {j["job_name"]: j for j in prometheus_config()["scrape_configs"]}
    admin = yaml.safe_load((ROOT / "envoy" / "envoy.compose.yaml").read_text())["admin"]["address"]
    # An admin bound to Envoy's own loopback cannot be scraped from another container.
    unreachable = {"envoy"} if admin["socket_address"]["address"] in ("127.0.0.1", "::1") else set()
    assert set(jobs) == set(SCRAPE_JOBS) - unreachable
    for name, var in METRICS_VARS.items():
        assert scrape_targets(jobs[name]) == [(name, split_addr(env(name)[var.name])[1])], name
    for name, s in SERVICES.items():
        if "replicas" in s.get("deploy", {}):  # one target per container, not one behind round-robin DNS
            assert "dns_sd_configs" in jobs[name] and "static_configs" not in jobs[name], name
    assert "dns_sd_configs" in jobs["orchestrator"]  # replicas possible
    assert not any(a.startswith("--metrics-port") for a in SERVICES["triton"]["command"])
    assert scrape_targets(jobs["triton"]) == [("triton", TritonSettings().metrics_port)]
    assert scrape_targets(jobs["flower"]) == [("flower", int(flag(SERVICES["flower"]["command"], "--port")))]
    assert jobs["flower"].get("metrics_path", "/metrics") == "/metrics"
    for job in jobs.values():
        for host, _ in scrape_targets(job):
            assert set(SERVICES[host]["networks"]) & set(SERVICES["prometheus"]["networks"]), host


def test_prometheus_loads_the_mounted_configuration_and_rules_and_keeps_its_data():
    p = SERVICES["prometheus"]
    assert re.fullmatch(r"prom/prometheus:v2\.\d+\.\d+", p["image"]), p["image"]  # pinned
    m = mounts("prometheus")
    config = flag(p["command"], "--config.file")
    assert m[config] == ROOT / "prometheus" / "prometheus.compose.yml"
    rules = prometheus_config()["rule_files"]
    assert [m.get(r) for r in rules] == [ROOT / "prometheus" / "rules.yml"]
    assert {config, *rules} <= read_only("prometheus")
    data = flag(p["command"], "--storage.tsdb.path")
    assert m[data] in COMPOSE["volumes"]
    assert f":{prometheus_listen_port()}/" in " ".join(p["healthcheck"]["test"])


def test_grafana_provisions_composes_prometheus_and_the_mounted_dashboards():
    g = SERVICES["grafana"]
    assert re.fullmatch(r"grafana/grafana:11\.\d+\.\d+", g["image"]), g["image"]  # pinned
    m = mounts("grafana")
    provisioning = m[GRAFANA_PROVISIONING]
    assert provisioning == ROOT / "grafana" / "provisioning" and GRAFANA_PROVISIONING in read_only("grafana")
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    url = urlsplit(source["url"])
    assert (url.hostname, url.port) == ("prometheus", prometheus_listen_port())
    assert set(g["networks"]) & set(SERVICES["prometheus"]["networks"])
    assert g["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    # $__rate_interval is built on the scrape interval Grafana is told.
    assert source["jsonData"]["timeInterval"] == prometheus_config()["global"]["scrape_interval"]
    for provider in yaml.safe_load((provisioning / "dashboards" / "satlas.yml").read_text())["providers"]:
        path = provider["options"]["path"]
        assert m[path] == ROOT / "grafana" / "dashboards" and path in read_only("grafana"), path
        assert list(m[path].glob("*.json")), path
    home = env("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    folder, _, file = home.rpartition("/")
    assert (m[folder] / file).is_file(), home
    assert "/var/lib/grafana" in m and m["/var/lib/grafana"] in COMPOSE["volumes"]  # users, preferences
    assert f":{GRAFANA_PORT}/" in " ".join(g["healthcheck"]["test"])


def test_grafana_asks_for_a_password_and_lets_no_one_in_without():
    e = env("grafana")
    assert e["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and e["GF_USERS_ALLOW_SIGN_UP"] == "false"
    raw = yaml.safe_load(RAW)["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert raw.startswith("${GRAFANA_ADMIN_PASSWORD:-"), raw  # set it in .env beyond a one-person host
