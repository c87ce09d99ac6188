"""Settings from the environment, one mechanism for every process.

Each variable is declared once, as a ``Var`` with its default and its doc; a settings dataclass
names the variables it reads with ``setting(VAR)`` and ``load(cls)`` fills it from the environment.
Variables several processes read (addresses, URLs) are declared here; a process's own ones next to
its settings class. ``python -m launcher.settings`` prints the README's settings tables, and a
test keeps the README equal to it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

REGISTRY: dict[str, Var] = {}
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class Var:
    """One environment variable: its name, default, doc, and the variables it falls back on."""

    name: str
    default: Any
    doc: str
    also: tuple[str, ...] = ()  # read in turn when ``name`` is unset or empty
    shown: str = ""  # the default as the README shows it, when the value itself says little

    def __post_init__(self):
        if self.name in REGISTRY and REGISTRY[self.name] != self:
            raise ValueError(f"{self.name} is declared twice")
        REGISTRY[self.name] = self

    def raw(self, environ: Mapping[str, str] | None = None) -> str | None:
        e = os.environ if environ is None else environ
        for name in (self.name, *self.also):
            if e.get(name):
                return e[name]
        return None

    def read(self, environ: Mapping[str, str] | None = None) -> Any:
        raw = self.raw(environ)
        return self.default if raw is None else parse(raw, self.default, self.name)

    @property
    def default_text(self) -> str:
        if self.shown:
            return self.shown
        if isinstance(self.default, tuple):
            return ",".join(self.default)
        if isinstance(self.default, bool):
            return "1" if self.default else "0"
        return str(self.default)


def parse(raw: str, like: Any, name: str) -> Any:
    """``raw`` as the type of the default ``like``; a value that isn't one names its variable."""
    try:
        if isinstance(like, bool):
            if raw.lower() in TRUE + FALSE:
                return raw.lower() in TRUE
            raise ValueError(f"not one of {TRUE + FALSE}")
        if isinstance(like, tuple):
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        return type(like)(raw) if like is not None else raw
    except ValueError as e:
        raise ValueError(f"{name}={raw!r}: {e}") from None


def setting(var: Var) -> Any:
    """A dataclass field read from ``var`` by ``load``, defaulting to its default."""
    return dataclasses.field(default=var.default, metadata={"var": var})


def variables(cls: type) -> list[Var]:
    return [f.metadata["var"] for f in dataclasses.fields(cls) if "var" in f.metadata]


def load(cls: type, environ: Mapping[str, str] | None = None, **overrides: Any) -> Any:
    """An instance of the settings dataclass ``cls`` from the environment; ``overrides`` win."""
    values = {f.name: f.metadata["var"].read(environ) for f in dataclasses.fields(cls) if "var" in f.metadata}
    return cls(**{**values, **overrides})


def sqlalchemy_url(url: str) -> str:
    """DATABASE_URL for SQLAlchemy: ``postgresql://`` means psycopg2 (SQLAlchemy 2.1 would pick psycopg 3)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


def table(vars_: list[Var]) -> str:
    rows = ["| variable | default | what |", "|---|---|---|"]
    rows += [f"| `{v.name}` | {f'`{v.default_text}`' if v.default_text else '(none)'} | {v.doc} |" for v in vars_]
    return "\n".join(rows)


# Read by several processes (and the project's clients), so declared here once.
INGEST_ADDR = Var("INGEST_ADDR", "127.0.0.1:50051", "IngestService: where ingest listens and clients submit")
ORCHESTRATOR_ADDR = Var("ORCHESTRATOR_ADDR", "127.0.0.1:50052",
                        "OrchestratorService and the internal JobControlService; clients also take the "
                        "replicas' list, IP:port comma-separated, and spread calls round robin")
ANALYSIS_ADDR = Var("ANALYSIS_ADDR", "127.0.0.1:50053", "AnalysisService (Analyze, ListModels)")
INGEST_METRICS_ADDR = Var("INGEST_METRICS_ADDR", "127.0.0.1:9101", "the ingest's Prometheus /metrics (`off`: none)")
ORCHESTRATOR_METRICS_ADDR = Var("ORCHESTRATOR_METRICS_ADDR", "127.0.0.1:9102",
                                "the orchestrator's Prometheus /metrics (replicas: 10, 20, ... ports above)")
ANALYSIS_METRICS_ADDR = Var("ANALYSIS_METRICS_ADDR", "127.0.0.1:9103",
                            "the analysis server's Prometheus /metrics (`off`: none)")
TRITON_URL = Var("TRITON_URL", "127.0.0.1:8001", "Triton's gRPC endpoint (`make up`: unset starts the local Triton)")
REDIS_URL = Var("REDIS_URL", "redis://127.0.0.1:6379/0",
                "Redis for job events (pub/sub) and the default broker (`make up`: unset starts an embedded Valkey)")
BROKER_URL = Var("BROKER_URL", "redis://127.0.0.1:6379/0", "the Celery broker; `amqp://…` for RabbitMQ",
                 also=("REDIS_URL",), shown="REDIS_URL")
DATABASE_URL = Var("DATABASE_URL", f"sqlite:///{ROOT / '.run' / 'satlas.db'}",
                   "the job store; `postgresql://…` uses psycopg2",
                   shown="sqlite:///.run/satlas.db (make up: under $SATLAS_RUN_DIR)")
RUN_DIR = Var("SATLAS_RUN_DIR", ROOT / ".run", "logs, the embedded servers' files, the default database, "
              "the local token (auth/)", shown=".run")
TOKEN = Var("SATLAS_TOKEN", "", "the token the project's clients send (`authorization: Bearer`); unset: "
            "the one `make up` wrote to $SATLAS_RUN_DIR/auth/token, if any")
CA_FILE = Var("SATLAS_CA", "", "a CA file the project's clients verify the front door's TLS certificate with "
              "(`--ca`); unset: plaintext")
LOG_FORMAT = Var("LOG_FORMAT", "text", "`text`, or `json`: one JSON object a line")
LOG_LEVEL = Var("LOG_LEVEL", "INFO", "the root logger's level")
# OpenTelemetry's own variables (satkit.tracing): the SDK reads them; declared here for the README.
OTEL_ENDPOINT = Var("OTEL_EXPORTER_OTLP_ENDPOINT", "", "an OTLP/gRPC collector (`http://127.0.0.1:4317`): "
                    "set, every process sends its spans there; unset, tracing is off")
OTEL_TRACES_ENDPOINT = Var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "", "the same, for traces only")
OTEL_DISABLED = Var("OTEL_SDK_DISABLED", False, "`true`: tracing off whatever the endpoint")
OTEL_SAMPLER = Var("OTEL_TRACES_SAMPLER", "parentbased_always_on", "which traces are kept: "
                   "`parentbased_traceidratio` with OTEL_TRACES_SAMPLER_ARG keeps that share of new traces")
OTEL_SAMPLER_ARG = Var("OTEL_TRACES_SAMPLER_ARG", "", "the sampler's argument (`0.1`: one trace in ten)")

SHARED = [INGEST_ADDR, ORCHESTRATOR_ADDR, ANALYSIS_ADDR, TRITON_URL, REDIS_URL, BROKER_URL, DATABASE_URL,
          LOG_FORMAT, LOG_LEVEL, OTEL_ENDPOINT, OTEL_TRACES_ENDPOINT, OTEL_DISABLED, OTEL_SAMPLER, OTEL_SAMPLER_ARG]

