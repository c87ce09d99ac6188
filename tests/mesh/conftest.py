"""The mesh tier: one whole stack for the session, shared by the tests that neither kill nor
pause its parts. It keeps jobs in PostgreSQL and serves from the session's Triton, so it starts
only the services (a few seconds). Tests isolate inside it by their own job ids and by counting
before and after, never by an empty database. Tests that kill a process or pause Triton, or need
another broker, start a stack of their own (test_mesh_faults, test_broker_rabbitmq)."""

from __future__ import annotations

import pytest

from launcher.stack import Stack, StackSettings


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory, postgres_url, triton):
    settings = StackSettings.isolated(tmp_path_factory.mktemp("shared-stack"), database_url=postgres_url,
                                      triton_url=triton.settings.grpc_url)
    with Stack(settings) as stack:
        yield stack


@pytest.fixture(scope="session")
def shared_processes(shared_stack, triton) -> dict[str, int]:
    """The pid of every process serving the shared stack, the session's Triton included."""
    return {**{n: p.pid for n, p in shared_stack.processes.items()}, "triton": triton.process.pid}
