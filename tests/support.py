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
