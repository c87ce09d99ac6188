"""What ``make up`` reads: ``StackSettings`` and its variables, and every process's settings tables.

    python -m launcher.settings     # the README's settings tables (a test keeps them equal)

Port 0 in any address means a free port. REDIS_URL, BROKER_URL, TRITON_URL and DATABASE_URL
unset mean: start an embedded Valkey, use it as the broker, start the local Triton, keep the
jobs in ``$SATLAS_RUN_DIR/satlas.db``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from analysis_svc.settings import WORKER_METRICS_ADDR
from launcher.envoy import EnvoySettings
from launcher.triton_local import WORK_DIR, TritonSettings, free_port
from satkit.metrics import wanted as serves_metrics
from satkit.settings import (
    ANALYSIS_ADDR,
    ANALYSIS_METRICS_ADDR,
    BROKER_URL,
    CA_FILE,
    DATABASE_URL,
    INGEST_ADDR,
    INGEST_METRICS_ADDR,
    LOG_FORMAT,
    ORCHESTRATOR_ADDR,
    ORCHESTRATOR_METRICS_ADDR,
    REDIS_URL,
    RUN_DIR,
    SHARED,
    TOKEN,
    TRITON_URL,
    Var,
    load,
    setting,
    table,
    variables,
)

FLOWER_PORT = Var("FLOWER_PORT", 5555, "Flower, Celery's monitor, on 127.0.0.1")
ENVOY_PORT = Var("ENVOY_PORT", 8080, "the front door: dashboard, grpc-web and gRPC")
ENVOY_HOST = Var("ENVOY_HOST", "127.0.0.1", "where the front door listens; any address but loopback needs "
                 "SATLAS_AUTH on (or off said explicitly)")
AUTH = Var("SATLAS_AUTH", True, "`on`: every public call needs a signed token (keys and a local token with "
           "every scope under $SATLAS_RUN_DIR/auth/); `off`: the front door is open", shown="on")
TLS = Var("SATLAS_TLS", False, "`make up TLS=1`: a local CA and a certificate for localhost under "
          "$SATLAS_RUN_DIR/tls/ (CA: tls/ca.pem), and TLS only on the front door", shown="off")
TLS_CERT = Var("ENVOY_TLS_CERT", "", "certificate chain (PEM) for the front door: TLS only (with ENVOY_TLS_KEY)")
TLS_KEY = Var("ENVOY_TLS_KEY", "", "its private key (PEM)")
RATE_LIMIT = Var("ENVOY_RATE_LIMIT", 1000, "calls per second each client address may make at the front door, "
                 "beyond it RESOURCE_EXHAUSTED; 0: no limit")
RATE_BURST = Var("ENVOY_RATE_BURST", 2000, "calls a client may make at once before ENVOY_RATE_LIMIT applies")
ENVOY_ADMIN_PORT = Var("ENVOY_ADMIN_PORT", 9901, "Envoy's admin, on 127.0.0.1 only")
WEB_PORT = Var("WEB_PORT", 8081, "the dashboard's static files, behind Envoy, on 127.0.0.1")
CORS_ORIGINS = Var("ENVOY_CORS_ORIGINS", EnvoySettings().cors_origins,
                   "comma-separated origins allowed to call grpc-web", shown="localhost/127.0.0.1 on 8080, 5173")
# Its processes mostly wait on gRPC and Triton: more than the 2 cores (measured in issue 11).
WORKER_CONCURRENCY = Var("WORKER_CONCURRENCY", 4, "Celery worker processes")
STARTUP_TIMEOUT = Var("STACK_STARTUP_TIMEOUT", 120.0, "seconds for the services to turn healthy")
STOP_TIMEOUT = Var("STACK_STOP_TIMEOUT", 10.0, "seconds for a graceful stop before SIGKILL")
RESTART_LIMIT = Var("STACK_RESTART_LIMIT", 5,
                    "restarts of one crashed process within the window before `make up` gives up")
RESTART_WINDOW = Var("STACK_RESTART_WINDOW_S", 60.0, "seconds over which a process's crashes count")
REPLICAS = Var("ORCHESTRATOR_REPLICAS", 1, "orchestrator processes, all serving every RPC (more than one needs "
                                          "PostgreSQL); the others listen 10, 20, ... ports above ORCHESTRATOR_ADDR")
PROMETHEUS_ADDR = Var("PROMETHEUS_ADDR", "127.0.0.1:9090", "Prometheus (Debian's `prometheus`), scraping every "
                      "part of the stack with the rules of prometheus/rules.yml (`off`: not started)")
TRITON_METRICS_ADDR = Var("TRITON_METRICS_ADDR", "", "Triton's metrics (host:port) for Prometheus, where TRITON_URL "
                          "is a Triton of your own; unset: the local Triton's")
TRACE_URL = Var("SATLAS_TRACE_URL", "", "a trace viewer's page of one trace, `{trace_id}` in it (Jaeger: "
                "`http://127.0.0.1:16686/trace/{trace_id}`): the dashboard links each job's trace there")
SCRAPE_INTERVAL = Var("PROMETHEUS_SCRAPE_INTERVAL", "5s", "how often Prometheus scrapes each target")
SIMULATOR_ARGS = Var("SIMULATOR_ARGS", "--interval 1 --random-interval --follow",
                     "the simulator's flags under `make run`")

SERVICES = ("orchestrator", "analysis", "ingest", "web", "envoy", "worker", "flower", "prometheus")
METERED = ("orchestrator", "analysis", "ingest", "worker")  # processes with a /metrics of their own
NAMES = ("redis", "triton", *SERVICES)  # start order; stop is the reverse

STACK_VARS = [RUN_DIR, FLOWER_PORT, ENVOY_PORT, ENVOY_HOST, ENVOY_ADMIN_PORT, AUTH, TLS, TLS_CERT, TLS_KEY,
              RATE_LIMIT, RATE_BURST, WEB_PORT, CORS_ORIGINS, WORKER_CONCURRENCY,
              PROMETHEUS_ADDR, SCRAPE_INTERVAL, TRITON_METRICS_ADDR, TRACE_URL, STARTUP_TIMEOUT, STOP_TIMEOUT,
              RESTART_LIMIT, RESTART_WINDOW, REPLICAS, SIMULATOR_ARGS]


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def _above(addr: str, by: int) -> str:
    """``addr`` ``by`` ports up (a free port stays a free port; none stays none)."""
    if not addr:
        return addr
    host, port = split_addr(addr)
    return f"{host}:{port + by if port else 0}"


def kind(name: str) -> str:
    """What a process is: ``orchestrator-2``, a replica, is an ``orchestrator``."""
    return name.partition("-")[0]


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {addr!r}")
    return host, int(port)


def connect_addr(addr: str) -> str:
    """Where a client on this machine reaches a server bound to ``addr`` (wildcards → loopback)."""
    host, port = split_addr(addr)
    return f"{'127.0.0.1' if host in ('0.0.0.0', '[::]', '::') else host}:{port}"


@dataclass(frozen=True)
class StackSettings:
    run_dir: Path = setting(RUN_DIR)  # logs/, valkey/ and the default sqlite database
    database_url: str = ""  # "" → sqlite:///<run_dir>/satlas.db
    redis_url: str = ""  # "" → embedded Valkey on embedded_redis_port
    broker_url: str = ""  # "" → redis_url
    triton_url: str = ""  # "" → local Triton with `triton`
    triton: TritonSettings = TritonSettings()
    embedded_redis_port: int = 0
    ingest_addr: str = setting(INGEST_ADDR)
    orchestrator_addr: str = setting(ORCHESTRATOR_ADDR)
    analysis_addr: str = setting(ANALYSIS_ADDR)
    flower_port: int = setting(FLOWER_PORT)
    envoy_addr: str = f"{ENVOY_HOST.default}:{ENVOY_PORT.default}"
    auth: bool = setting(AUTH)
    auth_off_said: bool = False  # SATLAS_AUTH=off, in words: only then may the front door be open beyond loopback
    tls: bool = setting(TLS)
    tls_cert: str = setting(TLS_CERT)
    tls_key: str = setting(TLS_KEY)
    rate_limit: int = setting(RATE_LIMIT)
    rate_burst: int = setting(RATE_BURST)
    envoy_admin_port: int = setting(ENVOY_ADMIN_PORT)
    web_port: int = setting(WEB_PORT)
    cors_origins: tuple[str, ...] = setting(CORS_ORIGINS)
    worker_concurrency: int = setting(WORKER_CONCURRENCY)
    log_format: str = setting(LOG_FORMAT)
    startup_timeout_s: float = setting(STARTUP_TIMEOUT)
    stop_timeout_s: float = setting(STOP_TIMEOUT)
    restart_limit: int = setting(RESTART_LIMIT)
    restart_window_s: float = setting(RESTART_WINDOW)
    orchestrator_replicas: int = setting(REPLICAS)
    replica_addrs: tuple[str, ...] = ()  # the 2nd, 3rd, ... orchestrator (filled in by ``resolved``)
    ingest_metrics_addr: str = setting(INGEST_METRICS_ADDR)
    orchestrator_metrics_addr: str = setting(ORCHESTRATOR_METRICS_ADDR)
    analysis_metrics_addr: str = setting(ANALYSIS_METRICS_ADDR)
    worker_metrics_addr: str = setting(WORKER_METRICS_ADDR)
    replica_metrics_addrs: tuple[str, ...] = ()  # like replica_addrs
    prometheus_addr: str = setting(PROMETHEUS_ADDR)
    scrape_interval: str = setting(SCRAPE_INTERVAL)
    triton_metrics_addr: str = setting(TRITON_METRICS_ADDR)
    trace_url: str = setting(TRACE_URL)
    env: Mapping[str, str] = field(default_factory=dict)  # extra env for every child; wins over the stack's
    only: tuple[str, ...] = ()  # start just these (debugging); () = all

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "StackSettings":
        run_dir = RUN_DIR.read(environ)
        triton = load(TritonSettings, environ)
        if not WORK_DIR.raw(environ):
            triton = replace(triton, work_dir=run_dir / "triton")  # the run dir carries Triton's files along
        return load(cls, environ, run_dir=run_dir, triton=triton,
                    database_url=DATABASE_URL.raw(environ) or "", redis_url=REDIS_URL.raw(environ) or "",
                    broker_url=BROKER_URL.raw(environ) or "", triton_url=TRITON_URL.raw(environ) or "",
                    envoy_addr=f"{ENVOY_HOST.read(environ)}:{ENVOY_PORT.read(environ)}",
                    auth_off_said=(AUTH.raw(environ) or "").strip().lower() == "off")

    @classmethod
    def isolated(cls, run_dir: Path, **overrides) -> "StackSettings":
        """Everything on free ports with its files under ``run_dir``: for tests."""
        run_dir = Path(run_dir)
        triton = replace(TritonSettings(), work_dir=run_dir / "triton", http_port=0, grpc_port=0, metrics_port=0)
        base = dict(run_dir=run_dir, triton=triton, ingest_addr="127.0.0.1:0", orchestrator_addr="127.0.0.1:0",
                    analysis_addr="127.0.0.1:0", flower_port=0, envoy_addr="127.0.0.1:0", envoy_admin_port=0,
                    web_port=0, ingest_metrics_addr="127.0.0.1:0", orchestrator_metrics_addr="127.0.0.1:0",
                    analysis_metrics_addr="127.0.0.1:0", worker_metrics_addr="127.0.0.1:0",
                    prometheus_addr="off")  # a test that wants Prometheus says so (prometheus_addr="127.0.0.1:0")
        return cls(**{**base, **overrides})

    @property
    def job_database_url(self) -> str:
        """DATABASE_URL, else the SQLite file in the run directory."""
        return self.database_url or f"sqlite:///{Path(self.run_dir).resolve() / 'satlas.db'}"

    @property
    def names(self) -> tuple[str, ...]:
        """What this stack starts, in order."""
        unknown = set(self.only) - set(NAMES)
        if unknown:
            raise ValueError(f"unknown names {sorted(unknown)}; known: {', '.join(NAMES)}")
        wanted = [n for n in NAMES if not self.only or n in self.only]
        names = []
        for n in wanted:
            if not (n == "redis" and self.redis_url or n == "triton" and self.triton_url
                    or n == "prometheus" and not serves_metrics(self.prometheus_addr)):
                names.append(n)
            if n == "orchestrator":
                names += [f"orchestrator-{k}" for k in range(2, self.orchestrator_replicas + 1)]
        return tuple(names)

    @property
    def orchestrator_addrs(self) -> tuple[str, ...]:
        return (self.orchestrator_addr, *self.replica_addrs)

    def addr_of(self, name: str) -> str:
        """The listen address of a gRPC service's process (``orchestrator-2``: the second replica)."""
        if kind(name) == "orchestrator":
            return self.orchestrator_addrs[int(name.partition("-")[2] or 1) - 1]
        return getattr(self, f"{name}_addr")

    def metrics_addr_of(self, name: str) -> str:
        """Where a process of METERED serves /metrics ("" for nowhere; ``resolved`` turns "off" into it)."""
        if kind(name) == "orchestrator":
            return (self.orchestrator_metrics_addr, *self.replica_metrics_addrs)[int(name.partition("-")[2] or 1) - 1]
        return getattr(self, f"{name}_metrics_addr")

    def resolved(self, pick: Callable[[], int] = free_port) -> "StackSettings":
        """Port 0 replaced by distinct free ports, and the default database filled in."""
        t = self.triton
        given = [self.flower_port, self.envoy_admin_port, self.web_port,
                 *(split_addr(a)[1] for a in (self.ingest_addr, self.orchestrator_addr, self.analysis_addr,
                                              self.envoy_addr))]
        given += [] if self.triton_url else [t.http_port, t.grpc_port, t.metrics_port]
        given += [] if self.redis_url else [self.embedded_redis_port]
        first_host, first_port = split_addr(self.orchestrator_addr)
        replicas = tuple(self.replica_addrs) or tuple(
            f"{first_host}:{first_port + 10 * k if first_port else 0}" for k in range(1, self.orchestrator_replicas))
        given += [split_addr(a)[1] for a in replicas]  # fixed ones are not handed out as free ports
        metrics = [a if serves_metrics(a) else "" for a in (self.ingest_metrics_addr, self.orchestrator_metrics_addr,
                                                    self.analysis_metrics_addr, self.worker_metrics_addr)]
        replica_metrics = tuple(self.replica_metrics_addrs) or tuple(_above(metrics[1], 10 * k)
                                                                     for k in range(1, self.orchestrator_replicas))
        given += [split_addr(a)[1] for a in (*metrics, *replica_metrics) if a]
        prometheus = self.prometheus_addr if serves_metrics(self.prometheus_addr) else ""
        given += [split_addr(prometheus)[1]] if prometheus else []
        fixed = [p for p in given if p]
        if len(fixed) != len(set(fixed)):
            raise ValueError(f"two listeners on one port: {sorted(p for p in set(fixed) if fixed.count(p) > 1)}")
        taken = set(given) - {0}

        def port(p: int) -> int:
            while not p:
                p = pick()
                p = 0 if p in taken else p  # a port just released may come back from the next pick
            taken.add(p)
            return p

        def addr(a: str) -> str:
            if not a:  # not served
                return a
            host, p = split_addr(a)
            return f"{host}:{port(p)}"

        if self.orchestrator_replicas < 1:
            raise ValueError("ORCHESTRATOR_REPLICAS must be 1 or more")
        if self.orchestrator_replicas > 1 and self.job_database_url.startswith("sqlite"):
            raise ValueError("ORCHESTRATOR_REPLICAS > 1 needs DATABASE_URL on PostgreSQL")
        host = split_addr(self.envoy_addr)[0]
        if not self.auth and not self.auth_off_said and host not in LOOPBACK:
            raise ValueError(f"refusing to open the front door on {host} without authentication: "
                             "set SATLAS_AUTH=on, or SATLAS_AUTH=off to mean it")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("ENVOY_TLS_CERT and ENVOY_TLS_KEY go together")
        if not self.triton_url:
            t = replace(t, http_port=port(t.http_port), grpc_port=port(t.grpc_port), metrics_port=port(t.metrics_port))
        return replace(
            self, triton=t, ingest_addr=addr(self.ingest_addr), orchestrator_addr=addr(self.orchestrator_addr),
            analysis_addr=addr(self.analysis_addr), flower_port=port(self.flower_port),
            replica_addrs=tuple(addr(a) for a in replicas),
            ingest_metrics_addr=addr(metrics[0]), orchestrator_metrics_addr=addr(metrics[1]),
            analysis_metrics_addr=addr(metrics[2]), worker_metrics_addr=addr(metrics[3]),
            prometheus_addr=addr(prometheus),
            replica_metrics_addrs=tuple(addr(a) for a in replica_metrics),
            envoy_addr=addr(self.envoy_addr), envoy_admin_port=port(self.envoy_admin_port),
            web_port=port(self.web_port),
            embedded_redis_port=self.embedded_redis_port if self.redis_url else port(self.embedded_redis_port),
            database_url=self.job_database_url)


def sections() -> list[tuple[str, list[Var]]]:
    """Every process's variables, in the README's order."""
    from analysis_svc.settings import Settings as Analysis
    from ingest_svc.settings import Settings as Ingest
    from orchestrator_svc.settings import Settings as Orchestrator

    def own(vs: list[Var]) -> list[Var]:
        return [v for v in vs if v not in SHARED]

    return [("every process", SHARED), ("ingest_svc", own(variables(Ingest))),
            ("orchestrator_svc", own(variables(Orchestrator))),
            ("analysis_svc (server and worker)", own(variables(Analysis))), ("make up", STACK_VARS),
            ("the project's clients (CLI, simulator, demo, load test, benchmarks)", [TOKEN, CA_FILE]),
            ("the local Triton", variables(TritonSettings))]


def markdown() -> str:
    return "\n\n".join(f"**{title}**\n\n{table(vs)}" for title, vs in sections())


if __name__ == "__main__":
    print(markdown())
