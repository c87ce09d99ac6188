"""Prometheus for the local stack: a scrape configuration rendered from the stack's real ports
(like Envoy's), the committed rules (``prometheus/rules.yml``) and Debian's ``prometheus`` server.

One job per part, named as the rules and the Grafana dashboard expect: ``ingest``,
``orchestrator`` (every replica), ``analysis``, ``worker`` (its pool summed), ``triton``,
``flower`` and ``envoy`` (its admin's Prometheus page).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus" / "rules.yml"
BINARY = "prometheus"  # Debian's, installed by scripts/system_deps.sh
RETENTION = "2d"  # a local stack's history; compose keeps Prometheus's default


@dataclass(frozen=True)
class PrometheusSettings:
    listen: str = "127.0.0.1:9090"
    scrape_interval: str = "5s"
    # job -> (metrics path, [host:port, ...])
    targets: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    rules: tuple[str, ...] = (str(RULES),)


def render(s: PrometheusSettings) -> str:
    config = {
        # A scrape may take until the next one is due (Prometheus refuses a timeout past the interval).
        "global": {"scrape_interval": s.scrape_interval, "evaluation_interval": s.scrape_interval,
                   "scrape_timeout": s.scrape_interval},
        "rule_files": list(s.rules),
        "scrape_configs": [{"job_name": job, "metrics_path": path, "static_configs": [{"targets": targets}]}
                           for job, (path, targets) in s.targets.items() if targets],
    }
    return "# Rendered by launcher/prometheus.py for this stack's ports.\n" + yaml.safe_dump(config, sort_keys=False)


def binary() -> str:
    found = shutil.which(BINARY) or (BINARY if Path(f"/usr/bin/{BINARY}").exists() else None)
    if not found:
        raise FileNotFoundError("prometheus is not installed (scripts/system_deps.sh installs Debian's); "
                                "PROMETHEUS_ADDR=off runs the stack without it")
    return found


def command(config: Path, data: Path, listen: str) -> list[str]:
    return [binary(), f"--config.file={config}", f"--storage.tsdb.path={data}", f"--web.listen-address={listen}",
            f"--storage.tsdb.retention.time={RETENTION}", "--log.level=warn"]
