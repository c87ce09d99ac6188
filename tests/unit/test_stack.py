"""The launcher's own logic: settings, ports, child environment and commands (no services started)."""

from __future__ import annotations

import itertools
import socket
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from launcher import stack as st
from launcher.embedded_redis import EmbeddedRedis, valkey_binary
from launcher.settings import NAMES, SERVICES
from launcher.stack import Stack, StackSettings
from launcher.triton_local import TritonSettings, free_port
from launcher.up import simulator_command


def test_from_env_defaults():
    s = StackSettings.from_env({})
    assert (s.database_url, s.redis_url, s.broker_url, s.triton_url) == ("", "", "", "")
    assert (s.ingest_addr, s.orchestrator_addr, s.analysis_addr) == (
        "127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053")
    assert (s.flower_port, s.worker_concurrency, s.log_format) == (5555, 4, "text")
    assert s.startup_timeout_s == 120.0
    assert s.names == NAMES


def test_from_env_overrides():
    s = StackSettings.from_env({
        "DATABASE_URL": "postgresql://db/satlas", "REDIS_URL": "redis://r:1/0", "BROKER_URL": "amqp://b//",
        "TRITON_URL": "t:8001", "INGEST_ADDR": "0.0.0.0:1", "ORCHESTRATOR_ADDR": "127.0.0.1:2",
        "ANALYSIS_ADDR": "127.0.0.1:3", "FLOWER_PORT": "4", "WORKER_CONCURRENCY": "5", "LOG_FORMAT": "json",
        "STACK_STARTUP_TIMEOUT": "7.5"})
    assert (s.database_url, s.redis_url, s.broker_url, s.triton_url) == (
        "postgresql://db/satlas", "redis://r:1/0", "amqp://b//", "t:8001")
    assert (s.flower_port, s.worker_concurrency, s.log_format, s.startup_timeout_s) == (4, 5, "json", 7.5)
    assert s.names == SERVICES  # external Redis and Triton: neither is started


def test_names_only_and_unknown():
    assert StackSettings(only=("triton", "redis")).names == ("redis", "triton")
    assert StackSettings(only=("redis", "worker"), redis_url="redis://x:1/0").names == ("worker",)
    with pytest.raises(ValueError, match="unknown"):
        _ = StackSettings(only=("redsi",)).names


def test_resolved_picks_distinct_ports_and_keeps_given_ones(tmp_path):
    picks = itertools.chain([7000, 7000, 7001, 50052], itertools.count(7002))  # repeats must be skipped
    s = StackSettings.isolated(tmp_path, orchestrator_addr="127.0.0.1:50052").resolved(lambda: next(picks))
    ports = [s.triton.http_port, s.triton.grpc_port, s.triton.metrics_port, s.flower_port, s.embedded_redis_port,
             *(st.split_addr(a)[1] for a in (s.ingest_addr, s.orchestrator_addr, s.analysis_addr))]
    assert 0 not in ports and len(set(ports)) == len(ports)
    assert s.orchestrator_addr == "127.0.0.1:50052"
    assert s.database_url == f"sqlite:///{tmp_path.resolve() / 'satlas.db'}"
    assert s.triton.work_dir == tmp_path / "triton"


def test_resolved_leaves_external_ports_alone(tmp_path):
    s = StackSettings.isolated(tmp_path, triton_url="h:1", redis_url="redis://h:2/0",
                               database_url="postgresql://x/y").resolved(itertools.count(9000).__next__)
    assert (s.triton.grpc_port, s.embedded_redis_port, s.database_url) == (0, 0, "postgresql://x/y")


def test_addresses():
    assert st.split_addr("127.0.0.1:50051") == ("127.0.0.1", 50051)
    assert st.connect_addr("0.0.0.0:5") == "127.0.0.1:5"
    assert st.connect_addr("[::]:5") == "127.0.0.1:5"
    assert st.connect_addr("10.0.0.2:5") == "10.0.0.2:5"
    with pytest.raises(ValueError):
        st.split_addr("50051")


def test_stack_env_broker_defaults_to_redis_and_drops_empty():
    s = StackSettings(database_url="sqlite:///x.db")
    env = st.stack_env(s, "redis://127.0.0.1:9/0", "")
    assert env["REDIS_URL"] == env["BROKER_URL"] == "redis://127.0.0.1:9/0"
    assert "TRITON_URL" not in env
    assert env["ORCHESTRATOR_ADDR"] == "127.0.0.1:50052" and env["FLOWER_PORT"] == "5555"
    assert env["LOG_FORMAT"] == "text" and env["PYTHONUNBUFFERED"] == "1"
    assert st.stack_env(replace(s, broker_url="amqp://b//"), "redis://r/0", "t:1")["BROKER_URL"] == "amqp://b//"


def test_child_env_layers(tmp_path, monkeypatch):
    monkeypatch.setenv("SOMETHING_INHERITED", "yes")
    stack = Stack(StackSettings.isolated(tmp_path, triton_url="t:1", env={"ORCHESTRATOR_STUCK_S": "3",
                                                                           "TRITON_URL": "t:2"}))
    env = stack.child_env({"ORCHESTRATOR_STUCK_S": "5"})
    assert env["SOMETHING_INHERITED"] == "yes"
    assert env["ORCHESTRATOR_STUCK_S"] == "5"  # per start beats per stack beats computed
    assert env["TRITON_URL"] == "t:2"
    assert env["REDIS_URL"] == stack.redis_url == f"redis://127.0.0.1:{stack.settings.embedded_redis_port}/0"
    assert env["DATABASE_URL"] == stack.database_url


def test_stack_addresses_before_start(tmp_path):
    stack = Stack(StackSettings.isolated(tmp_path, triton_url="t:1", redis_url="redis://r:1/0"))
    assert stack.redis is None and stack.triton is None and stack.processes == {}
    assert stack.triton_url == "t:1" and stack.broker_url == "redis://r:1/0"
    assert stack.flower_url == f"http://127.0.0.1:{stack.settings.flower_port}"
    assert stack.log_file("worker") == tmp_path / "logs" / "worker.log"
    text = stack.summary()
    for line in ("ingest", "orchestrator", "analysis", "worker", "flower", "t:1 (gRPC, external)",
                 "redis://r:1/0 (external)", "database", "Ctrl-C stops everything"):
        assert line in text
    with pytest.raises(st.StackError):
        stack.restart("triton")


def test_commands():
    s = StackSettings(worker_concurrency=3, flower_port=6000)
    worker = st.service_command("worker", s, python="py")
    assert worker[:5] == ["py", "-m", "celery", "-A", "analysis_svc.worker.app:app"]
    assert worker[worker.index("--concurrency") + 1] == "3"
    assert worker[worker.index("-Q") + 1] == "satlas.jobs"
    assert "--port=6000" in st.service_command("flower", s, python="py")
    assert st.service_command("ingest", s) == [sys.executable, "-m", "ingest_svc"]


def test_queue_matches_the_celery_app():
    from satkit.queue import QUEUE

    assert st.QUEUE == QUEUE


def test_port_checks():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert st.port_taken("127.0.0.1", port)
        assert not st.http_answers(f"http://127.0.0.1:{free_port()}/")
    s = StackSettings(ingest_addr=f"127.0.0.1:{port}", only=("ingest", "flower", "triton"),
                      triton=TritonSettings(grpc_port=1))
    ports = st.ports_to_bind(s)
    assert ports["INGEST_ADDR"] == ("127.0.0.1", port) and ports["FLOWER_PORT"] == ("127.0.0.1", 5555)
    assert ports["TRITON_GRPC_PORT"] == ("127.0.0.1", 1) and "ORCHESTRATOR_ADDR" not in ports


def test_embedded_redis_command_and_life(tmp_path):
    assert valkey_binary().is_file()
    server = EmbeddedRedis(tmp_path / "valkey", log_file=tmp_path / "redis.log")
    with server:
        import redis

        assert server.port and server.url == f"redis://127.0.0.1:{server.port}/0"
        client = redis.Redis.from_url(server.url)
        assert client.ping() and client.config_get("save") == {"save": ""}
        client.close()
        pid = server.process.pid
    assert server.process is None and not Path(f"/proc/{pid}").exists()  # stopped and reaped


def test_run_dir_from_env_moves_triton_along(tmp_path):
    s = StackSettings.from_env({"SATLAS_RUN_DIR": str(tmp_path)})
    assert s.run_dir == tmp_path and s.triton.work_dir == tmp_path / "triton"


def test_simulator_command_points_at_the_stacks_services():
    s = StackSettings(ingest_addr="0.0.0.0:7001", orchestrator_addr="127.0.0.1:7002")
    command = simulator_command(s, "--interval 0.5 --models 'vae_timeseries'", python="py")
    assert command == ["py", "-m", "tools.simulator", "--url", "127.0.0.1:7001", "--orchestrator",
                       "127.0.0.1:7002", "--interval", "0.5", "--models", "vae_timeseries"]


def test_two_orchestrator_replicas_listen_apart_and_clients_get_both():
    s = StackSettings.from_env({"ORCHESTRATOR_REPLICAS": "2", "DATABASE_URL": "postgresql://db/satlas"}).resolved()
    assert s.names[:4] == ("redis", "triton", "orchestrator", "orchestrator-2")
    assert s.orchestrator_addrs == ("127.0.0.1:50052", "127.0.0.1:50062")
    assert s.addr_of("orchestrator-2") == "127.0.0.1:50062"
    env = st.stack_env(s, "redis://r", "t:1")
    assert env["ORCHESTRATOR_ADDR"] == "127.0.0.1:50052,127.0.0.1:50062"
    assert st.service_command("orchestrator-2", s)[-2:] == ["-m", "orchestrator_svc"]
    assert st.envoy_settings(s).upstreams["orchestrator"] == (("127.0.0.1", 50052), ("127.0.0.1", 50062))
    assert "ORCHESTRATOR_ADDR (replica orchestrator-2)" in st.ports_to_bind(s)


def test_isolated_replicas_get_free_ports_of_their_own():
    s = StackSettings.isolated(Path("/tmp/x"), orchestrator_replicas=3, database_url="postgresql://db/x").resolved()
    ports = [st.split_addr(a)[1] for a in s.orchestrator_addrs]
    assert len(set(ports)) == 3 and 0 not in ports


def test_replicas_need_postgresql():
    with pytest.raises(ValueError, match="PostgreSQL"):
        StackSettings.from_env({"ORCHESTRATOR_REPLICAS": "2"}).resolved()


def test_clients_spread_calls_over_a_list_of_replicas():
    from satkit.server import balanced, target

    assert (target("127.0.0.1:1"), balanced("127.0.0.1:1")) == ("127.0.0.1:1", [])
    assert target("127.0.0.1:1, 127.0.0.1:2") == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert target("[::1]:1,[::1]:2") == "ipv6:[::1]:1,[::1]:2"
    assert balanced("127.0.0.1:1,127.0.0.1:2") == [("grpc.lb_policy_name", "round_robin")]


def test_envoy_retries_only_where_there_are_replicas():
    from launcher.envoy import render

    one = StackSettings.from_env({"DATABASE_URL": "postgresql://db/satlas"}).resolved()
    two = StackSettings.from_env({"ORCHESTRATOR_REPLICAS": "2", "DATABASE_URL": "postgresql://db/satlas"}).resolved()
    assert "retry_policy" not in render(st.envoy_settings(one))  # on one server it stalled grpc-web calls
    assert "retry_policy" in render(st.envoy_settings(two)) and "outlier_detection" in render(st.envoy_settings(two))
