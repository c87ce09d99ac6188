"""The layout's rules, read from the imports: each folder depends only on what it may."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("satkit", "ingest_svc", "orchestrator_svc", "analysis_svc", "launcher", "tools", "scripts")
SERVICES = ("ingest_svc", "orchestrator_svc", "analysis_svc")
# What each package may import of the project (the generated satlas package is open to all).
MAY_IMPORT = {
    "satkit": set(),  # the services' runtime: their image carries it and nothing else of ours
    "ingest_svc": {"satkit"},
    "orchestrator_svc": {"satkit"},
    "analysis_svc": {"satkit"},
    "launcher": {"satkit", *SERVICES},  # runs the services; reads their settings for the README
    "tools": {"satkit", "launcher", *SERVICES},
    "scripts": {"satkit", "launcher", "tools"},  # tools.patterns: the synthetic series the models train on
}


def project_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
        found |= {n.split(".")[0] for n in names if n.split(".")[0] in PROJECT}
    return found


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_each_package_imports_only_what_it_may(package):
    wrong = {}
    for path in (ROOT / package).rglob("*.py"):
        bad = project_imports(path) - MAY_IMPORT[package] - {package}
        if bad:
            wrong[path.relative_to(ROOT).as_posix()] = sorted(bad)
    assert not wrong, f"{package} may import only {sorted(MAY_IMPORT[package])}: {wrong}"


@pytest.mark.parametrize("service", SERVICES)
def test_services_do_not_import_each_other(service):
    for path in (ROOT / service).rglob("*.py"):
        assert not project_imports(path) & (set(SERVICES) - {service}), path


def test_the_analysis_package_shows_its_two_processes():
    assert (ROOT / "analysis_svc" / "__main__.py").is_file()  # the gRPC server
    assert (ROOT / "analysis_svc" / "worker" / "app.py").is_file()  # the Celery worker
