"""The runtime the three services share, and the only extra code their image holds: server
bootstrap (server), request validation (validation), logs, the orchestrator-to-worker hop (queue),
the environment variables and how they are read (settings) and the names every process agrees on
(jobs). It imports nothing of the launcher, the tools or the services.

Processes that start others (the stack launcher, the benchmarks, the tests) fork and exec at once
from a process full of gRPC threads; gRPC's fork handlers (on by default in grpcio 1.85) have hung
and aborted such forks here, and gRPC's own advice for fork-then-exec is to turn them off. Set
before gRPC is first imported; children inherit it (a Celery worker's pool forks before any channel
exists, which needs no handlers).
"""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
