"""compose.yaml parsed as compose reads it (``${VAR:-default}`` with an empty environment), and the
import closure of each service's entry point: shared by test_compose and test_image."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import yaml

from launcher.settings import split_addr

ROOT = Path(__file__).resolve().parents[2]
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


def mounts(name: str) -> dict[str, Path | str]:
    """container path -> the repository path bound there (resolved), or the named volume."""
    out = {}
    for spec in SERVICES[name].get("volumes", []):
        src, dst, *_ = spec.split(":")
        out[dst] = (ROOT / src).resolve() if src.startswith(".") else src
    return out


def read_only(name: str) -> set[str]:
    """Container paths mounted read-only."""
    return {v.split(":")[1] for v in SERVICES[name].get("volumes", []) if v.split(":")[2:] == ["ro"]}


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
