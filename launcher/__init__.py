"""The local stack launcher: Satlas on one machine (``make up``, ``python -m launcher``).

Triton from the nvidia-pytriton wheel, Valkey, Envoy, the three services, a Celery worker and
Flower, each a supervised child process; the tests and benchmarks start isolated stacks with it.
"""

import satkit  # noqa: F401  (first: it turns off gRPC's fork handlers before gRPC is imported)
