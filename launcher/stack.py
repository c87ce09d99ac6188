"""The whole of Satlas on one machine: ``Stack`` starts, watches, restarts and stops its processes.

Redis (an embedded Valkey unless REDIS_URL is set), Triton (the local server unless TRITON_URL is
set), then the orchestrator, analysis server, ingest, dashboard files, Envoy, a Celery worker and
Flower; ``start`` returns once each answers its health check. ``with Stack(settings) as stack:``
is the same for tests. ``python -m launcher`` (``make up``) runs it in the foreground; its
settings are in ``launcher.settings``. Logs go to ``$SATLAS_RUN_DIR/logs/<name>.log``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from launcher import auth, prometheus, supervise, tls
from launcher.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from launcher.envoy import EnvoySettings, render
from launcher.probes import WORKER_HOSTNAME, GrpcHealth, WorkerPing, http_answers, worker_nodename
from launcher.settings import LOOPBACK, METERED, SERVICES, StackSettings, connect_addr, kind, split_addr
from launcher.triton_local import ROOT, LocalTriton, TritonError
from satkit.queue import QUEUE

GRPC_SERVICES = ("orchestrator", "analysis", "ingest")
FLOWER_HOST = "127.0.0.1"
WEB_HOST = "127.0.0.1"
WEB_DIR = ROOT / "web" / "dist"


class StackError(RuntimeError):
    pass


class StackInterrupted(StackError):
    pass


def ports_to_bind(s: StackSettings) -> dict[str, tuple[str, int]]:
    """(host, port) of every listener this stack opens, by the setting that names it."""
    names = s.names
    ports = {f"{n.upper()}_ADDR": split_addr(getattr(s, f"{n}_addr")) for n in GRPC_SERVICES if n in names}
    ports |= {f"ORCHESTRATOR_ADDR (replica {n})": split_addr(s.addr_of(n)) for n in names
              if kind(n) == "orchestrator" and n != "orchestrator"}
    ports |= {f"{kind(n).upper()}_METRICS_ADDR ({n})": split_addr(s.metrics_addr_of(n)) for n in names
              if kind(n) in METERED and s.metrics_addr_of(n)}
    if "prometheus" in names:
        ports["PROMETHEUS_ADDR"] = split_addr(s.prometheus_addr)
    if "flower" in names:
        ports["FLOWER_PORT"] = (FLOWER_HOST, s.flower_port)
    if "envoy" in names:
        ports["ENVOY_PORT"] = split_addr(s.envoy_addr)
        ports["ENVOY_ADMIN_PORT"] = ("127.0.0.1", s.envoy_admin_port)
    if "web" in names:
        ports["WEB_PORT"] = (WEB_HOST, s.web_port)
    if "triton" in names:
        t = s.triton
        ports |= {"TRITON_HTTP_PORT": (t.host, t.http_port), "TRITON_GRPC_PORT": (t.host, t.grpc_port),
                  "TRITON_METRICS_PORT": (t.host, t.metrics_port)}
    if "redis" in names and s.embedded_redis_port:
        ports["embedded redis"] = ("127.0.0.1", s.embedded_redis_port)
    return ports


def port_taken(host: str, port: int) -> bool:
    """Someone listens there. SO_REUSEADDR, as servers bind, so a TIME_WAIT from a last run does not count."""
    with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError:
            return True
    return False


def service_command(name: str, s: StackSettings, python: str = sys.executable) -> list[str]:
    """The command of process ``name`` (a replica's is its kind's)."""
    if name == "prometheus":
        return prometheus.command(prometheus_dir(s) / "prometheus.yml", prometheus_dir(s) / "data", s.prometheus_addr)
    celery = [python, "-m", "celery", "-A", "analysis_svc.worker.app:app"]
    return {
        "orchestrator": [python, "-m", "orchestrator_svc"],
        "analysis": [python, "-m", "analysis_svc"],
        "ingest": [python, "-m", "ingest_svc"],
        "worker": [*celery, "worker", "--loglevel", "INFO", "--concurrency", str(s.worker_concurrency),
                   "-Q", QUEUE, "--hostname", WORKER_HOSTNAME],
        "flower": [*celery, "flower", f"--port={s.flower_port}", f"--address={FLOWER_HOST}"],
        "web": [python, "-m", "http.server", str(s.web_port), "--bind", WEB_HOST, "--directory", str(WEB_DIR)],
        # A distinct base id per Envoy on one host (their shared memory); the listener port is one.
        "envoy": [str(Path(python).parent / "envoy"), "-c", str(envoy_config_path(s)), "--log-level", "warn",
                  "--base-id", str(split_addr(s.envoy_addr)[1])],
    }[kind(name)]


def prometheus_dir(s: StackSettings) -> Path:
    return Path(s.run_dir) / "prometheus"


def worker_metrics_dir(s: StackSettings) -> Path:
    """The worker's pool processes count into files here (prometheus_client's multiprocess mode)."""
    return Path(s.run_dir) / "metrics" / "worker"


def prometheus_settings(s: StackSettings) -> prometheus.PrometheusSettings:
    """Every part of this stack that serves metrics, where it serves them."""
    names = s.names

    def at(n: str) -> list[str]:
        return [connect_addr(s.metrics_addr_of(r)) for r in names if kind(r) == n and s.metrics_addr_of(r)]

    t = s.triton
    triton = s.triton_metrics_addr or (f"{t.host}:{t.metrics_port}" if "triton" in names else "")
    return prometheus.PrometheusSettings(
        listen=s.prometheus_addr, scrape_interval=s.scrape_interval,
        targets={n: ("/metrics", at(n)) for n in METERED}
        | {"triton": ("/metrics", [connect_addr(triton)] if triton else []),
           "flower": ("/metrics", [f"{FLOWER_HOST}:{s.flower_port}"] if "flower" in names else []),
           "envoy": ("/stats/prometheus", [f"127.0.0.1:{s.envoy_admin_port}"] if "envoy" in names else [])})


def envoy_config_path(s: StackSettings) -> Path:
    return Path(s.run_dir) / "envoy.yaml"


def envoy_settings(s: StackSettings) -> EnvoySettings:
    """The committed local config's shape, with this stack's addresses, keys and certificate."""
    cert, key = tls_files(s)
    return EnvoySettings(
        listen=split_addr(s.envoy_addr), admin=("127.0.0.1", s.envoy_admin_port), cors_origins=s.cors_origins,
        jwks=str(auth.auth_dir(Path(s.run_dir)).resolve() / "jwks.json") if s.auth else "",
        tls_cert=cert, tls_key=key, rate_per_s=s.rate_limit, rate_burst=s.rate_burst, trace_url=s.trace_url,
        upstreams={n: split_addr(connect_addr(getattr(s, f"{n}_addr"))) for n in GRPC_SERVICES}
        | {"web": (WEB_HOST, s.web_port)}
        | ({"orchestrator": tuple(split_addr(connect_addr(a)) for a in s.orchestrator_addrs)}
           if len(s.orchestrator_addrs) > 1 else {}))


def tls_files(s: StackSettings) -> tuple[str, str]:
    """(certificate, key) Envoy serves, or ("", "") for plaintext."""
    if s.tls_cert:
        return s.tls_cert, s.tls_key
    if s.tls:
        local = Path(s.run_dir).resolve() / "tls"
        return str(local / "server.pem"), str(local / "server-key.pem")
    return "", ""


def stack_env(s: StackSettings, redis_url: str, triton_url: str) -> dict[str, str]:
    """What every child is told about the others (empty values left out: not started, --only)."""
    env = {
        "DATABASE_URL": s.database_url,
        "REDIS_URL": redis_url,
        "BROKER_URL": s.broker_url or redis_url,
        "TRITON_URL": triton_url,
        "INGEST_ADDR": s.ingest_addr,
        # Clients of two or more replicas get them all, and spread their calls (satkit.server.balanced).
        "ORCHESTRATOR_ADDR": (",".join(connect_addr(a) for a in s.orchestrator_addrs) if s.replica_addrs
                              else s.orchestrator_addr),
        "ANALYSIS_ADDR": s.analysis_addr,
        "FLOWER_PORT": str(s.flower_port),
        "WORKER_CONCURRENCY": str(s.worker_concurrency),
        "LOG_FORMAT": s.log_format,
        "PYTHONUNBUFFERED": "1",  # log lines reach the files as they happen
    }
    return {k: v for k, v in env.items() if v}


class Stack:
    """``with Stack(StackSettings.isolated(tmp_path)) as stack:`` — every process up and healthy.

    Start it from the main thread: a child's parent-death signal fires when the thread that
    started it ends.
    """

    def __init__(self, settings: StackSettings | None = None, echo: Callable[[str], None] | None = None):
        self.settings = (settings or StackSettings.from_env()).resolved()
        s = self.settings
        self.names = s.names
        self.logs_dir = Path(s.run_dir) / "logs"
        self.echo = echo or (lambda _: None)
        self.redis = EmbeddedRedis(Path(s.run_dir) / "valkey", s.embedded_redis_port,
                                   log_file=self.logs_dir / "redis.log") if "redis" in self.names else None
        self.triton = LocalTriton(s.triton) if "triton" in self.names else None
        self._services: dict[str, subprocess.Popen] = {}
        self._token = ""

    # Addresses, for clients.
    @property
    def ingest(self) -> str:
        return connect_addr(self.settings.ingest_addr)

    @property
    def orchestrator(self) -> str:
        return connect_addr(self.settings.orchestrator_addr)

    @property
    def analysis(self) -> str:
        return connect_addr(self.settings.analysis_addr)

    @property
    def redis_url(self) -> str:
        return self.settings.redis_url or (self.redis.url if self.redis else "")

    @property
    def broker_url(self) -> str:
        return self.settings.broker_url or self.redis_url

    @property
    def triton_url(self) -> str:
        return self.settings.triton_url or (self.triton.settings.grpc_url if self.triton else "")

    @property
    def database_url(self) -> str:
        return self.settings.database_url

    @property
    def envoy(self) -> str:
        """The front door, for gRPC clients (host:port)."""
        return connect_addr(self.settings.envoy_addr)

    @property
    def scheme(self) -> str:
        return "https" if tls_files(self.settings)[0] else "http"

    @property
    def dashboard_url(self) -> str:
        host, port = split_addr(self.envoy)
        # The local certificate names localhost (and 127.0.0.1); a browser shows that name.
        return f"{self.scheme}://{'localhost' if self.settings.tls and host == '127.0.0.1' else host}:{port}/"

    @property
    def token(self) -> str:
        """The token with every scope that ``start`` wrote ("" with SATLAS_AUTH=off)."""
        return self._token

    @property
    def ca_file(self) -> str:
        """The CA clients verify the front door with ("" without TLS, or with a certificate of one's own)."""
        return str(Path(self.settings.run_dir) / "tls" / "ca.pem") if self.settings.tls and not self.settings.tls_cert \
            else ""

    def signed_in_url(self, page: str = "", token: str | None = None) -> str:
        """The dashboard (``page``: "" or "dashboard.html") with a link that signs in by itself."""
        token = self.token if token is None else token
        return f"{self.dashboard_url}{page}" + (f"#token={token}" if token else "")

    def metrics_url(self, name: str) -> str:
        """A gRPC service's Prometheus endpoint."""
        return f"http://{connect_addr(self.settings.metrics_addr_of(name))}/metrics"

    @property
    def prometheus_url(self) -> str:
        return f"http://{connect_addr(self.settings.prometheus_addr)}" if "prometheus" in self.names else ""

    @property
    def flower_url(self) -> str:
        return f"http://{FLOWER_HOST}:{self.settings.flower_port}"

    @property
    def processes(self) -> dict[str, subprocess.Popen]:
        """The running processes by name (redis and triton only when started here)."""
        procs = {}
        if self.redis and self.redis.process:
            procs["redis"] = self.redis.process
        if self.triton and self.triton.process:
            procs["triton"] = self.triton.process
        return procs | self._services

    def log_file(self, name: str) -> Path:
        return self.triton.settings.log_file if name == "triton" and self.triton else self.logs_dir / f"{name}.log"

    def log_tail(self, name: str, lines: int = 20) -> str:
        if name == "triton" and self.triton:
            return self.triton.log_tail(lines)
        try:
            return "\n".join(self.log_file(name).read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def child_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, **stack_env(self.settings, self.redis_url, self.triton_url),
                **self.settings.env, **(extra or {})}

    # Life cycle.
    def start(self) -> "Stack":
        # A taken port otherwise shows only as a service that never turns healthy.
        taken = [f"{k} {h}:{p}" for k, (h, p) in ports_to_bind(self.settings).items() if port_taken(h, p)]
        if taken:
            raise StackError(f"already in use: {', '.join(taken)} (set another port, or 0 for a free one)")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        host = split_addr(self.settings.envoy_addr)[0]
        if "envoy" in self.names and not self.settings.auth and host not in LOOPBACK:
            self.echo(f"WARNING: the front door on {host} is open to anyone who reaches it (SATLAS_AUTH=off)")
        if self.settings.auth:  # keys once (tokens stay good across restarts), a fresh local token each time
            self._token = auth.write_local_token(auth.auth_dir(Path(self.settings.run_dir))).read_text().strip()
        if self.settings.tls and not self.settings.tls_cert:
            tls.ensure(Path(self.settings.run_dir) / "tls")
        try:
            if self.redis:
                self.echo(f"starting redis (embedded valkey; log: {self.log_file('redis')})")
                self._start_embedded("redis")
            if self.triton:  # loads its models while the services start: none needs it to start
                self.echo(f"starting triton (log: {self.log_file('triton')})")
                self._start_embedded("triton", wait=False)
            services = [n for n in self.names if kind(n) in SERVICES]
            for name in services:
                self.echo(f"starting {name} (log: {self.log_file(name)})")
                self._spawn(name, fresh_log=True)
            self.wait_healthy(services, watch=self.processes)
            if self.triton:
                self._embedded("triton", self.triton.wait_ready)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_embedded(self, name: str, wait: bool = True) -> None:
        server = self.redis if name == "redis" else self.triton
        self._embedded(name, server.start if name == "redis" else lambda: server.start(wait=wait))

    def _embedded(self, name: str, step: Callable[[], object]) -> None:
        try:
            step()
        except (EmbeddedRedisError, TritonError) as exc:
            if supervise.stop_requested():
                raise StackInterrupted(f"interrupted while starting {name}") from None
            raise StackError(f"{name}: {exc}") from None

    def _spawn(self, name: str, extra_env: Mapping[str, str] | None = None, fresh_log: bool = False) -> None:
        if name == "envoy":
            envoy_config_path(self.settings).write_text(render(envoy_settings(self.settings)))
        if name == "prometheus":
            prometheus_dir(self.settings).mkdir(parents=True, exist_ok=True)
            (prometheus_dir(self.settings) / "prometheus.yml").write_text(
                prometheus.render(prometheus_settings(self.settings)))
        if name == "worker":  # a new worker counts from zero: a last one's files would add to its sums
            shutil.rmtree(worker_metrics_dir(self.settings), ignore_errors=True)
            worker_metrics_dir(self.settings).mkdir(parents=True)
            extra_env = {"PROMETHEUS_MULTIPROC_DIR": str(worker_metrics_dir(self.settings).resolve()),
                         **(extra_env or {})}
        if not fresh_log:
            with open(self.log_file(name), "ab") as log:
                log.write(f"--- {name} restarted by the stack at {time.strftime('%H:%M:%S')} ---\n".encode())
        if kind(name) == "orchestrator":  # each replica listens on its own address; clients get the list
            extra_env = {"ORCHESTRATOR_ADDR": self.settings.addr_of(name), **(extra_env or {})}
        if kind(name) in METERED:  # each its own; "off" for none (an empty value means the default)
            extra_env = {f"{kind(name).upper()}_METRICS_ADDR": self.settings.metrics_addr_of(name) or "off",
                         **(extra_env or {})}
        self._services[name] = supervise.spawn(service_command(name, self.settings), self.log_file(name),
                                               mode="wb" if fresh_log else "ab", cwd=ROOT,
                                               env=self.child_env(extra_env))

    def wait_healthy(self, names: Iterable[str], timeout: float | None = None,
                     watch: Mapping[str, subprocess.Popen] | None = None) -> None:
        """Until every one of ``names`` passes its check; StackError if one of ``watch`` exits first."""
        pending = [n for n in names if kind(n) in SERVICES]
        watch = {n: self._services[n] for n in pending} if watch is None else dict(watch)
        timeout = self.settings.startup_timeout_s if timeout is None else timeout
        checks = {n: self._check(n) for n in pending}
        deadline = time.monotonic() + timeout
        try:
            while pending:
                if supervise.stop_requested():
                    raise StackInterrupted("interrupted while starting")
                for name, p in watch.items():
                    if p.poll() is not None:
                        raise StackError(f"{name} exited with code {p.returncode} while starting; "
                                         f"{self.log_file(name)}:\n{self.log_tail(name)}")
                # The worker's ping blocks up to a second, so it goes once nothing else is pending.
                for name in [n for n in pending if n != "worker"] or pending:
                    if checks[name]():
                        pending.remove(name)
                if pending and time.monotonic() > deadline:
                    tails = "\n".join(f"--- {n} ({self.log_file(n)}):\n{self.log_tail(n)}" for n in pending)
                    raise StackError(f"not healthy after {timeout:g}s: {', '.join(pending)}\n{tails}")
                if pending:
                    time.sleep(0.2)
        finally:
            for check in checks.values():
                getattr(check, "close", lambda: None)()

    def _check(self, name: str) -> Callable[[], bool]:
        if kind(name) in GRPC_SERVICES:
            return GrpcHealth(connect_addr(self.settings.addr_of(name)))
        if name == "flower":
            return lambda: http_answers(self.flower_url)
        if name == "envoy":  # the admin's /ready answers 200 once listeners and clusters are up
            return lambda: http_answers(f"http://127.0.0.1:{self.settings.envoy_admin_port}/ready", ok_below=300)
        if name == "web":
            return lambda: http_answers(f"http://{WEB_HOST}:{self.settings.web_port}/")
        if name == "prometheus":
            return lambda: http_answers(f"{self.prometheus_url}/-/ready", ok_below=300)
        return WorkerPing(self.broker_url, WORKER_HOSTNAME)

    def wait(self, extra: Mapping[str, subprocess.Popen] | None = None) -> str | None:
        """Block until a stop signal (→ None) or until a process (or one of ``extra``) exits (→ its name).

        Needs ``supervise.block_signals()`` before anything started, as ``main`` does.
        """
        procs = self.processes | dict(extra or {})
        why = supervise.wait(procs.values())
        if why in {s.name for s in supervise.STOP_SIGNALS}:  # a stop, even if a child died meanwhile
            return None
        return next((n for n, p in procs.items() if p.poll() is not None), None)

    def stop(self, name: str | None = None) -> None:
        """Stop one process, or everything (services first, then Triton, then Redis)."""
        names = self.names if name is None else (self._known(name),)
        self._stop_services([n for n in reversed(self.names) if kind(n) in SERVICES and n in names])
        if self.triton and "triton" in names:
            self.triton.stop()
        if self.redis and "redis" in names:
            self.redis.stop()

    def _stop_services(self, names: list[str]) -> None:
        procs = [self._services.pop(n) for n in names if n in self._services]
        for p in procs:  # the leader only: a graceful stop (Celery's warm shutdown drains its pool)
            if p.poll() is None:
                signal_pid(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.stop_timeout_s
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in procs:  # stragglers, and whatever a dead leader left behind in its group
            signal_pid(p.pid, signal.SIGKILL, group=True)
            p.wait()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole process group of ``name`` (no grace), and reap it if it ends."""
        p = self.processes.get(self._known(name))
        if p is None:
            return
        signal_pid(p.pid, sig, group=True)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.stop(name)  # reaps; also clears LocalTriton/EmbeddedRedis state

    def restart(self, name: str, env: Mapping[str, str] | None = None) -> subprocess.Popen | None:
        """Stop ``name``, start it again on the same address (with ``env`` on top) and wait until healthy."""
        self._known(name)
        self.stop(name)
        if name in ("redis", "triton"):
            self._start_embedded(name)
        else:
            self._spawn(name, env)
            self.wait_healthy([name])
        return self.processes.get(name)

    def _known(self, name: str) -> str:
        if name not in self.names:
            raise StackError(f"{name!r} is not started by this stack ({', '.join(self.names)})")
        return name

    def state(self) -> dict:
        """Where everything is and which PID serves it: ``$SATLAS_RUN_DIR/stack.json`` under ``make up``,
        for tools that drive a running stack (the soak kills its processes by these PIDs)."""
        return {"ingest": self.ingest, "orchestrator": self.orchestrator, "analysis": self.analysis,
                "orchestrators": [connect_addr(a) for a in self.settings.orchestrator_addrs],
                "envoy": self.envoy, "triton_url": self.triton_url, "redis_url": self.redis_url,
                "broker_url": self.broker_url, "database_url": self.database_url,
                "flower_url": self.flower_url, "dashboard_url": self.dashboard_url, "logs": str(self.logs_dir),
                "token_file": str(auth.auth_dir(Path(self.settings.run_dir)) / "token") if self.token else "",
                "metrics": {n: self.metrics_url(n) for n in self.names if kind(n) in METERED
                            and self.settings.metrics_addr_of(n)},
                "prometheus_url": self.prometheus_url,
                "pids": {n: p.pid for n, p in self.processes.items()}}

    def summary(self) -> str:
        s = self.settings
        rows = {
            "ingest": f"{self.ingest} (gRPC)",
            "orchestrator": f"{self.orchestrator} (gRPC)" + (
                f"; replicas {', '.join(connect_addr(a) for a in s.replica_addrs)}" if s.replica_addrs else ""),
            "analysis": f"{self.analysis} (gRPC)",
            "worker": f"{worker_nodename()}, concurrency {s.worker_concurrency}, queue {QUEUE}",
            "triton": self.triton_url and f"{self.triton_url} (gRPC{'' if self.triton else ', external'})",
            "redis": self.redis_url and f"{self.redis_url} ({'embedded valkey' if self.redis else 'external'})",
            "broker": self.broker_url != self.redis_url and self.broker_url,
            "database": "orchestrator" in self.names and s.database_url,
            "flower": self.flower_url,
            "metrics": ", ".join(f"{n} {self.metrics_url(n)}" for n in self.names
                                 if kind(n) in METERED and self.settings.metrics_addr_of(n)),
            "prometheus": self.prometheus_url and f"{self.prometheus_url} (targets: {self.prometheus_url}/targets)",
            "envoy": f"{self.envoy} (gRPC and grpc-web{', TLS only' if self.scheme == 'https' else ''}; "
                     f"admin 127.0.0.1:{s.envoy_admin_port})",
            "dashboard": "envoy" in self.names and f"{self.dashboard_url} (live view: {self.dashboard_url}dashboard.html)",
            "sign in": "envoy" in self.names and self.token and self.signed_in_url(),
            "token": "envoy" in self.names and (
                f"{auth.auth_dir(Path(s.run_dir)) / 'token'} (every scope; the project's clients read it; "
                "`make token SCOPES=read` for a narrower one)" if s.auth
                else "none: SATLAS_AUTH=off, the front door is open"),
            "tls": self.ca_file and f"CA {self.ca_file} (clients: --ca or SATLAS_CA)",
        }
        lines = [f"  {n:<13}{v}" for n, v in rows.items() if v and (n not in SERVICES or n in self.names)]
        return "\n".join(["Satlas is up:", *lines, f"  {'logs':<13}{self.logs_dir}/", "Ctrl-C stops everything."])

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def signal_pid(pid: int, sig: int, group: bool = False) -> None:
    try:
        os.killpg(pid, sig) if group else os.kill(pid, sig)
    except ProcessLookupError:
        pass
