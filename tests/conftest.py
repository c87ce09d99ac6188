"""Shared fixtures: a real local Triton on free ports, started once per test session."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import satkit  # noqa: F401  (before anything imports gRPC: see satkit/__init__.py)
from launcher.triton_local import LocalTriton, TritonSettings, free_port

ROOT = Path(__file__).resolve().parent.parent


def triton_settings(work_dir: Path, repository: Path = ROOT / "model_repository", **overrides) -> TritonSettings:
    return dataclasses.replace(
        TritonSettings(), model_repository=repository, work_dir=work_dir, http_port=free_port(),
        grpc_port=free_port(), metrics_port=free_port(), **overrides)


@pytest.fixture(scope="session")
def triton(tmp_path_factory) -> LocalTriton:
    with LocalTriton(triton_settings(tmp_path_factory.mktemp("triton"))) as server:
        yield server


@pytest.fixture()
def triton_client(triton):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(triton.settings.grpc_url)
    yield client
    client.close()


POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh PostgreSQL database on the machine's server, dropped at the end."""
    from tools.bench.database import fresh_database

    with fresh_database(POSTGRES_ADMIN_URL, prefix="satlas_test") as url:
        yield url
