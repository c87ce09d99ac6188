"""Models as Triton describes them. Everything Satlas needs to call a model (input name and
type, length limits, which output plays which role) comes from Triton's repository index,
model config and metadata, so a model dropped into model_repository/ needs no code here."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import cached_property

from satlas.v1 import analysis_service_pb2 as pb
from tritonclient.grpc import service_pb2 as tpb

from satkit.jobs import MULTI_SERIES

ROLES = ("predictions", "anomaly_scores", "anomaly_score", "anomaly_flag", "quantiles")
DEFAULT_MAX_LENGTH = 4096


@dataclass(frozen=True)
class ModelInfo:
    name: str
    versions: tuple[str, ...]
    ready: bool
    input_name: str = ""
    input_datatype: str = "FP32"
    min_length: int = 1
    max_length: int = DEFAULT_MAX_LENGTH
    window: int = 0
    horizon: int = 0
    task: str = ""
    description: str = ""
    backend: str = ""
    max_batch_size: int = 0
    # Several series of one length may go in one request, as the rows of [k, n]: plain batching,
    # or a ragged input whose server reads rows as series (parameter multi_series_requests).
    # Triton's own ragged batcher gives a request one offset, so there one series per request.
    multi_series: bool = False
    roles: dict[str, str] = field(default_factory=dict)  # role -> output tensor name
    # The levels of a "quantiles" output ([levels, horizon] per series), from parameter quantile_levels.
    quantile_levels: tuple[float, ...] = ()
    parameters: dict[str, str] = field(default_factory=dict)
    inputs: tuple = ()
    outputs: tuple = ()

    @cached_property
    def role_of(self) -> dict[str, str]:
        """Output tensor name -> role."""
        return {v: k for k, v in self.roles.items()}

    def to_proto(self) -> pb.Model:
        role_of = self.role_of
        return pb.Model(
            name=self.name, versions=self.versions, ready=self.ready, task=self.task,
            description=self.description, min_length=self.min_length, max_length=self.max_length,
            window=self.window, horizon=self.horizon, parameters=self.parameters, backend=self.backend,
            max_batch_size=self.max_batch_size,
            inputs=[pb.TensorSpec(name=n, data_type=d, shape=s) for n, d, s in self.inputs],
            outputs=[pb.TensorSpec(name=n, data_type=d, shape=s, role=role_of.get(n, "")) for n, d, s in self.outputs],
        )


def _int(params: dict[str, str], key: str, default: int) -> int:
    try:
        return int(params.get(key, default))
    except ValueError:
        return default


def _levels(text: str) -> tuple[float, ...]:
    """"0.1,0.5,0.9" → (0.1, 0.5, 0.9); anything else → () (the output then stays unnamed)."""
    try:
        levels = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        return ()
    return levels if all(0 < q < 1 for q in levels) and len(set(levels)) == len(levels) else ()


def describe(
    name: str, versions: list[str], ready: bool, config: tpb.ModelConfig | None, metadata: tpb.ModelMetadataResponse | None
) -> ModelInfo:
    """Build a ModelInfo from what Triton says; a model that is not loaded has no config."""
    if config is None or metadata is None:
        return ModelInfo(name=name, versions=tuple(versions), ready=False)
    params = {k: v.string_value for k, v in config.parameters.items()}
    batch_inputs = {b.target_name[0] if len(b.target_name) else "" for b in config.batch_input}
    data_inputs = [i for i in metadata.inputs if i.name not in batch_inputs]
    first = data_inputs[0] if data_inputs else None
    roles = {k.removeprefix("output."): v for k, v in params.items() if k.startswith("output.")}
    ragged = first is not None and any(i.allow_ragged_batch for i in config.input if i.name == first.name)
    multi_series = config.max_batch_size > 0 and (not ragged or params.get(MULTI_SERIES) == "true")
    if not roles and len(metadata.outputs) == 1:  # a plain one-output model: it predicts
        roles = {"predictions": metadata.outputs[0].name}
    return ModelInfo(
        name=name,
        versions=tuple(versions),
        ready=ready,
        input_name=first.name if first else "",
        input_datatype=first.datatype if first else "FP32",
        min_length=_int(params, "min_length", 1),
        max_length=_int(params, "max_length", DEFAULT_MAX_LENGTH),
        window=_int(params, "window", 0),
        horizon=_int(params, "horizon", 0),
        task=params.get("task", ""),
        description=params.get("description", ""),
        backend=config.backend or config.platform,
        max_batch_size=config.max_batch_size,
        multi_series=multi_series,
        roles=roles,
        quantile_levels=_levels(params.get("quantile_levels", "")),
        parameters={k: v for k, v in params.items() if not k.startswith("python.")},
        inputs=tuple((i.name, i.datatype, tuple(i.shape)) for i in data_inputs),
        outputs=tuple((o.name, o.datatype, tuple(o.shape)) for o in metadata.outputs),
    )


def fetch(stub, timeout: float) -> dict[str, ModelInfo]:
    """Describe every model in the repository (a sync Triton stub)."""
    index = stub.RepositoryIndex(tpb.RepositoryIndexRequest(), timeout=timeout)
    out: dict[str, ModelInfo] = {}
    for name, (versions, ready) in _group(index).items():
        config = metadata = None
        if ready:
            config = stub.ModelConfig(tpb.ModelConfigRequest(name=name), timeout=timeout).config
            metadata = stub.ModelMetadata(tpb.ModelMetadataRequest(name=name), timeout=timeout)
        out[name] = describe(name, versions, ready, config, metadata)
    return out


def _group(index: tpb.RepositoryIndexResponse) -> dict[str, tuple[list[str], bool]]:
    grouped: dict[str, tuple[list[str], bool]] = {}
    for m in index.models:
        versions, ready = grouped.get(m.name, ([], False))
        if m.version:
            versions.append(m.version)
        grouped[m.name] = (versions, ready or m.state == "READY")
    return grouped


class Catalogue:
    """``fetch`` results reused for ``ttl_s``. A name it does not know, or a model not ready, triggers
    a fresh fetch, at most once a second, so a model loaded into Triton is found without a restart."""

    def __init__(self, stub, timeout_s: float, ttl_s: float):
        self.stub, self.timeout_s, self.ttl_s = stub, timeout_s, ttl_s
        self.models: dict[str, ModelInfo] = {}
        self.fetched_at = float("-inf")
        self._lock = threading.Lock()

    def get(self, refresh: bool = False) -> dict[str, ModelInfo]:
        with self._lock:
            if refresh or time.monotonic() - self.fetched_at > self.ttl_s:
                self.models = fetch(self.stub, self.timeout_s)
                self.fetched_at = time.monotonic()
            return self.models

    def find(self, name: str) -> ModelInfo | None:
        models = self.get()
        # Unknown, or not ready (being loaded): ask again, at most once a second.
        if (name not in models or not models[name].ready) and time.monotonic() - self.fetched_at > 1.0:
            models = self.get(refresh=True)
        return models.get(name)
