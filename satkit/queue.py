"""The hop between orchestrator and workers: the Celery app both ends share, and the message.

One message of task ``satlas.run_jobs`` carries one ``satlas.internal.v1.RunJobsTask`` (several
jobs, values as packed doubles), serialised with protobuf and framed by Celery's msgpack
serializer (for this task only), which carries bytes as they are. JSON lists of floats cost the
orchestrator and the worker more CPU than the rest of the message, and one Celery message per
job caps near 640 jobs/s on 2 cores; a batch also reaches Triton together.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from satlas.internal.v1 import run_jobs_task_pb2 as task_pb2

if TYPE_CHECKING:
    from celery import Celery

TASK_NAME = "satlas.run_jobs"
QUEUE = "satlas.jobs"
TASK_SERIALIZER = "msgpack"  # the body is protobuf bytes; msgpack frames them unchanged
TaskJob = task_pb2.TaskJob


def encode_task(jobs: Iterable[TaskJob]) -> bytes:
    return task_pb2.RunJobsTask(jobs=jobs).SerializeToString()


def decode_task(payload: bytes) -> list[TaskJob]:
    return list(task_pb2.RunJobsTask.FromString(payload).jobs)


def make_celery(broker_url: str, name: str = "satlas") -> Celery:
    from celery import Celery  # here, not at the top: the launcher reads QUEUE without loading Celery

    app = Celery(name, broker=broker_url, set_as_current=False)
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        app.conf.broker_transport = "satkit.redis_transport:Transport"
    app.conf.update(
        task_default_queue=QUEUE,
        # run_jobs goes out in TASK_SERIALIZER (its sender and its task say so); control messages
        # (the stack's ping, Flower's inspect) stay JSON, which every Celery client reads.
        task_serializer="json",
        accept_content=[TASK_SERIALIZER, "json"],
        task_ignore_result=True,  # results go back over gRPC (JobControlService.ReportResults)
        task_acks_late=True,  # ack after the task ran: a worker killed mid-task loses nothing
        task_reject_on_worker_lost=True,  # ...and its message goes back on the queue
        worker_prefetch_multiplier=1,  # bounded prefetch: one message per worker process
        # Flower's task history comes from the worker's events; a "sent" event too would cost
        # the orchestrator one more publish per message.
        task_send_sent_event=False,
        worker_send_task_events=True,
        broker_connection_retry_on_startup=True,
        # An unacked message of a worker that vanished is redelivered after this long; the
        # orchestrator's reconciler usually re-dispatches such jobs sooner.
        broker_transport_options={"visibility_timeout": 300},
        worker_hijack_root_logger=False,
    )
    return app
