"""Shared fixtures: a real local Triton on free ports, started once per test session."""

from __future__ import annotations

import pytest
from support import POSTGRES_ADMIN_URL, triton_settings

import satkit  # noqa: F401  (before anything imports gRPC: see satkit/__init__.py)
from launcher.triton_local import LocalTriton


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




@pytest.fixture(scope="session")
def postgres_url():
    """A fresh PostgreSQL database on the machine's server, dropped at the end."""
    from tools.bench.database import fresh_database

    with fresh_database(POSTGRES_ADMIN_URL, prefix="satlas_test") as url:
        yield url
