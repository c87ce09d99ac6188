"""The services' image (Dockerfile, .dockerignore) and the dashboard's: what they copy and install is
what the services import, and nothing the local stack alone needs."""

from __future__ import annotations

import fnmatch
import importlib.metadata as md
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from compose_helpers import PYTHON_SERVICES, ROOT, SERVICES, closure, entry_files, imports
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


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
