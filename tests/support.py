"""What tests of every tier share besides fixtures (imported as ``support``; tests/ is on the path)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from launcher.triton_local import TritonSettings, free_port

ROOT = Path(__file__).resolve().parent.parent


def triton_settings(work_dir: Path, repository: Path = ROOT / "model_repository", **overrides) -> TritonSettings:
    return dataclasses.replace(
        TritonSettings(), model_repository=repository, work_dir=work_dir, http_port=free_port(),
        grpc_port=free_port(), metrics_port=free_port(), **overrides)


def queued_tasks(broker_url: str) -> list[list]:
    """The jobs of each RunJobsTask message waiting on the Celery queue, in order (consumes them)."""
    from kombu import Connection

    from satkit.queue import QUEUE, decode_task

    tasks = []
    with Connection(broker_url, connect_timeout=5) as conn:
        queue = conn.SimpleQueue(QUEUE, accept=["msgpack"])
        try:
            while True:
                message = queue.get(timeout=0.5)
                assert message.content_type == "application/x-msgpack"
                tasks.append(decode_task(message.payload[0][0]))  # args: (RunJobsTask,)
                message.ack()
        except queue.Empty:
            return tasks
        finally:
            queue.close()


POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"  # the machine's server (trust)


def bearer(claims: dict) -> tuple[tuple[str, str]]:
    """The metadata of a token with ``claims`` as Envoy passes it on (unsigned: the ingest reads only
    the claims of a token Envoy verified)."""
    import base64
    import json

    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return (("authorization", f"Bearer eyJhbGciOiJFUzI1NiJ9.{payload}.c2ln"),)
