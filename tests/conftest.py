"""Shared fixtures: a real local Triton on free ports, started once per test session."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading

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



@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A test still running at 80 % of its timeout prints its event loop's tasks: pytest-timeout
    shows the threads, where an asyncio hang is only a selector waiting with no timeout."""
    timeout = item.config.getini("timeout")
    timer = threading.Timer(0.8 * float(timeout or 600), dump_asyncio_tasks)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def dump_asyncio_tasks() -> None:
    def dump(loop) -> None:
        print(f"+++ asyncio tasks still pending ({len(asyncio.all_tasks(loop))}) +++", file=sys.stderr)
        for task in asyncio.all_tasks(loop):
            task.print_stack(file=sys.stderr)

    for loop in [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]:
        if loop.is_running():
            loop.call_soon_threadsafe(dump, loop)


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh PostgreSQL database on the machine's server, dropped at the end."""
    from tools.bench.database import fresh_database

    with fresh_database(POSTGRES_ADMIN_URL, prefix="satlas_test") as url:
        yield url
