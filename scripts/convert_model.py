"""Convert a PyTorch checkpoint into a Triton model: ONNX (or a TensorRT plan) plus config.pbtxt.

    python -m scripts.convert_model --model-path scripts/checkpoints/vae_timeseries.pt \\
        --model-class TimeSeriesVAE --model-name vae_timeseries --version 1 --max-batch 64

Steps: load the checkpoint, export ONNX with dynamic axes, check the graph, run onnxruntime and
PyTorch on the same random inputs and fail if they differ beyond the tolerance, write
``<repository>/<name>/<version>/model.onnx`` and generate ``config.pbtxt`` from the graph's
real inputs and outputs.

A checkpoint is either ``{"model_class", "config", "state_dict"}`` (what ``scripts.train``
writes) or a pickled ``nn.Module``. ``--model-class`` is a class of ``scripts.tsmodels`` or
``package.module:Class``. Models that describe their Triton signature (``triton_signature()``,
ragged batching) get a ragged config; any other model needs ``--input-shape`` and is exported
with one dense input ``input`` of that shape plus a batch dimension.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

from launcher import model_repository as repo
from scripts.tsmodels import MODEL_CLASSES, TensorSpec, TritonSignature, datasets
from tools import patterns

ROOT = Path(__file__).resolve().parent.parent
ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: "FP32", onnx.TensorProto.DOUBLE: "FP64", onnx.TensorProto.FLOAT16: "FP16",
                  onnx.TensorProto.INT64: "INT64", onnx.TensorProto.INT32: "INT32", onnx.TensorProto.INT8: "INT8",
                  onnx.TensorProto.UINT8: "UINT8", onnx.TensorProto.BOOL: "BOOL"}


class ConversionError(RuntimeError):
    pass


def resolve_class(spec: str) -> type[torch.nn.Module]:
    if ":" in spec:
        module, _, name = spec.partition(":")
        return getattr(importlib.import_module(module), name)
    if spec in MODEL_CLASSES:
        return MODEL_CLASSES[spec]
    raise ConversionError(f"unknown model class {spec!r}: use one of {sorted(MODEL_CLASSES)} or module:Class")


def load_model(path: Path, model_class: str | None) -> torch.nn.Module:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(checkpoint, torch.nn.Module):
        return checkpoint.eval()
    cls = resolve_class(model_class or checkpoint["model_class"])
    model = cls(**checkpoint.get("config", {}))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def dense_signature(shape: list[int]) -> TritonSignature:
    return TritonSignature(inputs=(TensorSpec("input", "FP32", tuple(shape)),),
                           outputs=(TensorSpec("output", "FP32", ()),), ragged_input="", batch_input="")


def example_inputs(sig: TritonSignature, rng: np.random.Generator, batch: int) -> dict[str, np.ndarray]:
    """Inputs for export and parity checks: realistic series of random lengths for ragged models."""
    if sig.ragged_input:
        series = [patterns.random_series(rng, length=patterns.random_length(rng, 8, 1024)).values
                  for _ in range(batch)]
        values, offsets = datasets.pack(series)
        return {sig.ragged_input: values, sig.batch_input: offsets}
    (spec,) = sig.inputs
    dims = [d if d > 0 else 16 for d in spec.dims]
    return {spec.name: rng.standard_normal([batch, *dims]).astype(np.float32)}


def export_onnx(model: torch.nn.Module, sig: TritonSignature, path: Path, opset: int, output_names: list[str]) -> None:
    """torch.export-based ONNX export; every leading axis is dynamic (batch, or ragged length)."""
    inputs = example_inputs(sig, np.random.default_rng(0), 4)
    dims = {n: {0: torch.export.Dim("n" if n == sig.ragged_input else "batch", min=1)} for n in inputs}
    torch.onnx.export(model, tuple(torch.from_numpy(v) for v in inputs.values()), str(path),
                      input_names=list(inputs), output_names=output_names, dynamic_shapes=tuple(dims.values()),
                      opset_version=opset, dynamo=True, external_data=False, verbose=False)


def check_parity(model: torch.nn.Module, sig: TritonSignature, path: Path, atol: float, rtol: float,
                 trials: int = 5) -> float:
    """Largest error of onnxruntime against PyTorch, scaled by the tolerance (must stay <= 1)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    worst = 0.0
    for trial in range(trials):
        inputs = example_inputs(sig, rng, [1, 3, 17, 64, 5][trial % 5])
        with torch.no_grad():
            expected = model(*(torch.from_numpy(v) for v in inputs.values()))
        expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
        got = session.run(None, inputs)
        for out, exp, ref in zip(session.get_outputs(), got, expected):
            ref = ref.numpy()
            if exp.shape != ref.shape:
                raise ConversionError(f"{out.name}: onnxruntime shape {exp.shape} != PyTorch {ref.shape}")
            if ref.dtype == np.bool_:
                if (exp != ref).any():
                    raise ConversionError(f"{out.name}: {int((exp != ref).sum())} boolean outputs differ")
                continue
            err = float(np.max(np.abs(exp - ref) / (atol + rtol * np.abs(ref)), initial=0.0))
            if not err <= 1.0:
                raise ConversionError(f"{out.name}: onnxruntime differs from PyTorch by {err:.2f}x the tolerance "
                                      f"(atol={atol}, rtol={rtol}) on trial {trial}")
            worst = max(worst, err)
    return worst


def graph_io(path: Path, sig: TritonSignature) -> tuple[list[repo.Tensor], list[repo.Tensor]]:
    """Config inputs/outputs read from the ONNX graph itself (batch inputs are Triton's, not clients')."""
    graph = onnx.load(str(path)).graph

    def tensor(v, ragged=False):
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
        if ragged:
            dims = [-1]  # ragged: the graph sees one concatenated 1-D tensor, each request sends [1, n]
        else:
            dims = dims[1:]  # drop the batch dimension
        return repo.Tensor(v.name, ONNX_TO_TRITON[v.type.tensor_type.elem_type], tuple(dims), ragged)

    inputs = [tensor(v, v.name == sig.ragged_input) for v in graph.input if v.name != sig.batch_input]
    outputs = [tensor(v) for v in graph.output]
    return inputs, outputs


def _tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise ConversionError("TensorRT is not installed here (import tensorrt failed); use --backend onnx") from None
    return tensorrt


def build_tensorrt(onnx_path: Path, plan_path: Path, sig: TritonSignature, max_batch: int) -> None:
    trt = _tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        raise ConversionError("TensorRT could not parse the ONNX graph: " + "; ".join(
            str(parser.get_error(i)) for i in range(parser.num_errors)))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    max_len = 4096
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name == sig.ragged_input:
            profile.set_shape(name, (1,), (64 * max_batch,), (max_len * max_batch,))
        else:
            profile.set_shape(name, (1,), (max_batch,), (max_batch,))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ConversionError("TensorRT failed to build the engine")
    plan_path.write_bytes(bytes(plan))


def convert(args: argparse.Namespace) -> Path:
    if args.backend == "tensorrt":
        _tensorrt()  # fail before any work
    model = load_model(args.model_path, args.model_class)
    sig = model.triton_signature() if hasattr(model, "triton_signature") else None
    if sig is None:
        if not args.input_shape:
            raise ConversionError(f"{type(model).__name__} has no triton_signature(); pass --input-shape")
        sig = dense_signature(args.input_shape)
    output_names = [o.name for o in sig.outputs]
    metadata = model.serving_metadata() if hasattr(model, "serving_metadata") else {}

    model_dir = args.repository / args.model_name
    version_dir = model_dir / str(args.version)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(model, sig, onnx_path, args.opset, output_names)
        proto = onnx.load(str(onnx_path))
        onnx.checker.check_model(proto, full_check=True)
        for key, value in {**metadata, "satlas.source": args.model_path.name}.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(onnx_path))
        worst = check_parity(model, sig, onnx_path, args.atol, args.rtol)
        print(f"parity: onnxruntime within {worst:.3f}x of the tolerance (atol={args.atol}, rtol={args.rtol})")
        inputs, outputs = graph_io(onnx_path, sig)
        batch_inputs = [(sig.batch_input, "BATCH_ACCUMULATED_ELEMENT_COUNT", sig.ragged_input)] if sig.batch_input else []
        version_dir.mkdir(parents=True, exist_ok=True)
        if args.backend == "tensorrt":
            build_tensorrt(onnx_path, version_dir / "model.plan", sig, args.max_batch)
            platform = "tensorrt_plan"
        else:
            shutil.copyfile(onnx_path, version_dir / "model.onnx")
            platform = "onnxruntime_onnx"
    config = repo.gpu_config(args.model_name, inputs, outputs, max_batch_size=args.max_batch,
                             batch_inputs=batch_inputs, parameters=metadata, platform=platform,
                             instance_count=args.instance_count, max_queue_delay_us=args.max_queue_delay_us)
    (model_dir / repo.CONFIG).write_text(repo.render(config))
    print(f"wrote {version_dir / ('model.plan' if args.backend == 'tensorrt' else 'model.onnx')} "
          f"and {model_dir / repo.CONFIG}")
    return model_dir


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-path", type=Path, required=True, help="checkpoint (.pt/.pth)")
    p.add_argument("--model-class", help="class name in scripts.tsmodels or module:Class (default: from checkpoint)")
    p.add_argument("--backend", choices=("onnx", "tensorrt"), default="onnx")
    p.add_argument("--model-name", required=True)
    p.add_argument("--version", type=int, default=1)
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    p.add_argument("--input-shape", type=int, nargs="+", help="per-sample input shape for models without a signature")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--atol", type=float, default=1e-4)
    p.add_argument("--rtol", type=float, default=1e-3)
    p.add_argument("--instance-count", type=int, default=1, help="GPU instances per model")
    p.add_argument("--max-queue-delay-us", type=int, default=500, help="dynamic batching delay on the GPU")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        convert(args)
    except ConversionError as exc:
        print(f"convert_model: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
