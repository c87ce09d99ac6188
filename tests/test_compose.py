"""compose.yaml (the GPU deployment), its Dockerfile and .dockerignore, checked against the code.

Docker is not available here, so `docker compose config` cannot validate the file: these tests parse
it with PyYAML, apply compose's `${VAR:-default}` interpolation with an empty environment, and compare
every name, address, port and command with what the services actually read, bind and import.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata as md
import json
import re
import shlex
import subprocess
import sys
from concurrent import futures
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from launcher import model_repository
from launcher.settings import StackSettings, split_addr
from launcher.triton_local import TritonSettings
from satkit.queue import QUEUE

ROOT = Path(__file__).resolve().parent.parent
RAW = (ROOT / "compose.yaml").read_text()
PYTHON_SERVICES = ("orchestrator", "analysis", "ingest", "worker", "flower")
GRPC_SERVICES = ("orchestrator", "analysis", "ingest")
LOCAL_PACKAGES = ("satkit", "ingest_svc", "orchestrator_svc", "analysis_svc", "satlas")
WILDCARDS = ("0.0.0.0", "::", "[::]")
# Ports the official postgres and redis images listen on.
IMAGE_PORTS = {"postgres": {5432}, "redis": {6379}}
NOT_YET: set[str] = set()  # mounted files another issue adds

VAR = re.compile(r"\$\$|\$\{([A-Za-z_]\w*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_]\w*)")


def interpolate(value):
    """Compose's interpolation with no variables set: every default applies, `$$` is a literal `$`."""
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, str):
        return VAR.sub(lambda m: "$" if m.group(0) == "$$" else (m.group(3) or ""), value)
    return value


COMPOSE = interpolate(yaml.safe_load(RAW))
SERVICES = COMPOSE["services"]


def env(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in (SERVICES[name].get("environment") or {}).items()}


def published(name: str) -> dict[int, int]:
    """host port -> container port."""
    out = {}
    for spec in SERVICES[name].get("ports", []):
        *_, host, container = str(spec).split(":")  # [ip:]host:container
        out[int(host)] = int(container)
    return out


def bind_port(name: str) -> int:
    """The port a gRPC service binds, from its own <NAME>_ADDR."""
    host, port = split_addr(env(name)[f"{name.upper()}_ADDR"])
    assert host in WILDCARDS, f"{name} must bind all interfaces in a container, not {host}"
    return port


def flag(command: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in command if a.startswith(f"{name}="))


# The code each container runs: entry files from its command, followed through local imports.
def entry_files(name: str) -> list[Path]:
    cmd = SERVICES[name]["command"]
    if cmd[:2] == ["python", "-m"]:
        files = [ROOT / cmd[2] / "__main__.py"]
        if cmd[2] == "orchestrator_svc":  # Alembic loads migrations by path, not by import
            files += sorted((ROOT / "orchestrator_svc" / "migrations").rglob("*.py"))
        return files
    assert cmd[:2] == ["celery", "-A"], cmd
    module, _, attr = cmd[2].partition(":")
    path = ROOT / (module.replace(".", "/") + ".py")
    assert path.is_file(), f"{name}: {module} is not in the repository"
    tree = ast.parse(path.read_text())
    assigned = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert attr in assigned, f"{name}: {module} defines no top-level {attr!r}"
    return [path]


def module_file(module: str) -> Path | None:
    for base in (ROOT, ROOT / "gen" / "python"):
        for p in (base / (module.replace(".", "/") + ".py"), base / module.replace(".", "/") / "__init__.py"):
            if p.is_file():
                return p
    return None


def module_name(path: Path) -> str:
    base = ROOT / "gen" / "python" if path.is_relative_to(ROOT / "gen" / "python") else ROOT
    parts = path.relative_to(base).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, path: Path | None = None) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                package = module_name(path).split(".")[: None if path.name == "__init__.py" else -1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, *([base] if base else [])])
            found |= {base} | {f"{base}.{a.name}" for a in node.names}
    return found


def closure(files: list[Path]) -> tuple[set[Path], set[str]]:
    """(local files reached, top-level third-party modules imported)."""
    todo, seen, external = list(files), set(), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imports(path.read_text(), path):
            top = module.split(".")[0]
            if top in LOCAL_PACKAGES:
                parts = module.split(".")
                todo += [f for i in range(1, len(parts) + 1) if (f := module_file(".".join(parts[:i])))]
            elif top and top not in sys.stdlib_module_names:
                external.add(top)
    return seen, external


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
    listening = dict(IMAGE_PORTS, triton=set(published("triton").values()))
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


def test_published_ports_are_the_defaults():
    d, t = StackSettings(), TritonSettings()
    expected = {
        "envoy": {8080},  # DESIGN: Envoy 8080
        "ingest": {split_addr(d.ingest_addr)[1]},
        "orchestrator": {split_addr(d.orchestrator_addr)[1]},
        "analysis": {split_addr(d.analysis_addr)[1]},
        "flower": {d.flower_port},
        "triton": {t.http_port, t.grpc_port, t.metrics_port},
    }
    for name in SERVICES:
        assert set(published(name)) == expected.get(name, set()), name
    for name in GRPC_SERVICES:
        assert published(name) == {bind_port(name): bind_port(name)}
    assert set(published("flower").values()) == {int(flag(SERVICES["flower"]["command"], "--port"))}
    raw = yaml.safe_load(RAW)["services"]
    for name in expected:  # configurable from the environment
        assert all(str(p).startswith("${") for p in raw[name]["ports"]), raw[name]["ports"]


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
            if src.startswith("."):
                rel = (ROOT / src).resolve().relative_to(ROOT).as_posix()
                assert rel in NOT_YET or (ROOT / rel).exists(), f"{name} mounts missing {src}"
            else:
                assert src in COMPOSE["volumes"], f"{name} uses undeclared volume {src}"


# The image.
def dockerfile() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_dockerfile_base_user_and_paths():
    steps = dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    workdir = next(arg for op, arg in steps if op == "WORKDIR")
    copies = [shlex.split(arg) for op, arg in steps if op == "COPY"]
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    dests = set()
    for *srcs, dest in copies:
        for src in srcs:
            assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
            assert f"!{src}" in ignore, f"COPY {src}: excluded by .dockerignore"
        dests.add(str(Path(workdir, dest)))
    env_vars = dict(kv.split("=", 1) for op, arg in steps if op == "ENV" for kv in shlex.split(arg))
    for entry in env_vars["PYTHONPATH"].split(":"):
        assert entry == workdir or entry in dests, f"PYTHONPATH entry {entry} is not copied"
    # Every local package the services import is in the image.
    used = {f.relative_to(ROOT).parts[0] for n in PYTHON_SERVICES for f in closure(entry_files(n))[0]}
    assert {str(Path(workdir, "gen/python" if p == "gen" else p)) for p in used} <= dests


def dockerfile_local_only() -> list[str]:
    arg = next(a for op, a in dockerfile() if op == "ARG" and a.startswith("LOCAL_ONLY="))
    return shlex.split(arg)[0].split("=", 1)[1].split()


def image_requirements() -> list[str]:
    """runtime.txt as the Dockerfile's RUN line filters it, run by sh here."""
    local_only = " ".join(dockerfile_local_only())
    run = next(a for op, a in dockerfile() if op == "RUN" and "runtime.txt" in a)
    filter_cmd = run.split(" > ", 1)[0]
    assert "-c requirements/constraints.txt" in run and "-r /tmp/requirements.txt" in run
    out = subprocess.run(["sh", "-c", filter_cmd], cwd=ROOT, env={"LOCAL_ONLY": local_only, "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True).stdout
    lines = (ROOT / "requirements/runtime.txt").read_text().splitlines()
    runtime = {canonicalize_name(Requirement(ln).name) for ln in lines if ln.strip() and not ln.startswith("#")}
    # A package renamed in runtime.txt must not slip past the filter into the image.
    assert {canonicalize_name(n) for n in local_only.split()} <= runtime
    return [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("#")]


def installed_closure(requirements: list[str]) -> set[str]:
    """Canonical names of every distribution these requirements pull in (markers and extras applied)."""
    extras: dict[str, set[str]] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in extras and set(req.extras) <= extras[name]:
            continue
        extras[name] = extras.get(name, set()) | set(req.extras)
        for dep in map(Requirement, md.requires(req.name) or []):
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in extras[name] | {""}):
                todo.append(dep)
    return set(extras)


def test_image_installs_what_the_services_import_and_nothing_local_only():
    reqs = image_requirements()
    image = installed_closure(reqs)
    local_only = {canonicalize_name(n) for n in dockerfile_local_only()}
    assert not local_only & {canonicalize_name(Requirement(r).name) for r in reqs}
    assert "torch" not in image and not local_only & image, image & (local_only | {"torch"})
    providers = {mod: {canonicalize_name(d) for d in ds} for mod, ds in md.packages_distributions().items()}
    needed = set()
    for name in PYTHON_SERVICES:
        needed |= closure(entry_files(name))[1]
        check = SERVICES[name]["healthcheck"]["test"]
        needed |= imports(check[3]) if check[1:3] == ["python", "-c"] else set()
    needed = {m.split(".")[0] for m in needed} - set(sys.stdlib_module_names)
    missing = {m for m in needed if not providers.get(m, set()) & image}
    assert not missing, f"imported by the services but not installed in the image: {missing}"
    assert {"celery", "flower", "psycopg2-binary"} <= image  # run by command, or loaded by SQLAlchemy


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


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore for plain paths: the last pattern matching the path or a parent wins."""
    parts = path.split("/")
    verdict = False
    for p in patterns:
        negate, pat = p.startswith("!"), p.lstrip("!")
        if any(fnmatch.fnmatchcase("/".join(parts[:i]), pat) for i in range(1, len(parts) + 1)):
            verdict = not negate
    return verdict


def test_dashboard_image_builds_from_the_repository_and_serves_the_build():
    assert SERVICES["web"]["build"] == {"context": ".", "dockerfile": "web/Dockerfile"}
    text = (ROOT / "web" / "Dockerfile").read_text()
    patterns = [ln.strip() for ln in (ROOT / "web" / "Dockerfile.dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (ROOT / src).exists() and not ignored(src.rstrip("/"), patterns), src
    for heavy in ("web/node_modules", "web/dist", ".venv", "model_repository"):
        assert ignored(heavy, patterns), heavy
    # The build stage runs the package's build script on this machine's Node major version.
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    assert re.search(rf"^FROM node:{node[1:].split('.')[0]}-slim AS build", text, re.M), node
    assert "RUN npm run build" in text and "build" in json.loads((ROOT / "web/package.json").read_text())["scripts"]
    root = re.search(r"root (\S+);", (ROOT / "web" / "nginx.conf").read_text()).group(1)
    assert f"COPY --from=build /src/web/dist {root}" in text
