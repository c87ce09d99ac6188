"""The mesh with RabbitMQ as the Celery broker (the machine's server; CI has one too).
Redis still carries the job events; only the queue moves."""

from __future__ import annotations

import urllib.request

import pytest
from kombu import Connection
from mesh_helpers import (
    clients_of,
    flower_saw_tasks_succeed,
    kill_worker_holding_jobs,
    stream_submit,
    table_rows,
    wait_terminal,
)
from satlas.v1 import job_state_pb2 as js

from launcher.stack import Stack, StackSettings
from satkit.queue import QUEUE

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    with Connection(RABBITMQ_URL, connect_timeout=5) as conn:  # a run that died may have left messages
        if queue_exists(conn):
            conn.default_channel.queue_purge(QUEUE)
    # The reconciler is slowed down so that only RabbitMQ can bring back a dead worker's messages.
    settings = StackSettings.isolated(tmp_path_factory.mktemp("rabbit"), broker_url=RABBITMQ_URL,
                                      env={"ORCHESTRATOR_STUCK_S": "600"})
    with Stack(settings) as stack:
        yield stack


def queue_exists(conn) -> bool:
    try:
        conn.channel().queue_declare(QUEUE, passive=True)
        return True
    except Exception:
        return False


@pytest.fixture()
def clients(mesh):
    with clients_of(mesh) as stubs:
        yield stubs


def test_jobs_flow_through_rabbitmq(mesh, clients):
    assert mesh.broker_url.startswith("amqp://") and mesh.redis_url.startswith("redis://")
    ingest, orchestrator = clients
    job_ids = stream_submit(ingest, [16 + 5 * i for i in range(40)])
    jobs = wait_terminal(orchestrator, job_ids, timeout=120)
    assert {j.state for j in jobs.values()} == {js.JOB_STATE_SUCCEEDED}
    assert "amqp" in mesh.log_tail("worker", 200).lower()  # the worker really consumed from RabbitMQ


def test_flower_shows_the_worker_and_its_tasks(mesh, clients):
    ingest, orchestrator = clients
    wait_terminal(orchestrator, stream_submit(ingest, [32] * 4))
    with urllib.request.urlopen(mesh.flower_url + "/workers", timeout=10) as page:
        assert "worker1@" in page.read().decode()
    flower_saw_tasks_succeed(mesh.flower_url)


def test_rabbitmq_redelivers_a_killed_workers_messages_at_once(mesh, clients):
    ingest, orchestrator = clients
    job_ids, at_kill = kill_worker_holding_jobs(mesh, clients, [4000] * 50)
    held = [j for j, s in at_kill.items() if s == "running"]
    assert held
    jobs = wait_terminal(orchestrator, job_ids, timeout=120)  # long before the 600 s reconciler
    assert {j.state for j in jobs.values()} == {js.JOB_STATE_SUCCEEDED}
    rows = {r.job_id: r for r in table_rows(mesh.database_url, job_ids)}
    assert len(rows) == 100 and all(r.dispatches == 1 for r in rows.values())  # RabbitMQ's redelivery, not ours
    assert all(rows[j].attempts >= 2 for j in held)  # started by a dead worker, then again
