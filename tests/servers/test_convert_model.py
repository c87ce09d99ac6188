"""scripts/convert_model.py: export, parity, generated configs, failure modes."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from launcher import model_repository as repo  # noqa: E402
from satkit.jobs import DEFAULT_MODELS  # noqa: E402
from scripts import convert_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINTS = ROOT / "scripts" / "checkpoints"
MODELS = list(DEFAULT_MODELS)


def _convert(tmp_path, name, *extra):
    return convert_model.main(["--model-path", str(CHECKPOINTS / f"{name}.pt"), "--model-name", name,
                               "--repository", str(tmp_path), *extra])


def _graph_io(path):
    graph = onnx.load(str(path)).graph
    def dims(v):
        return [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
    return {v.name: dims(v) for v in graph.input}, {v.name: dims(v) for v in graph.output}


@pytest.mark.parametrize("name", MODELS)
def test_conversion_writes_an_onnx_model_and_a_config_that_matches_its_graph(tmp_path, name, capsys):
    assert _convert(tmp_path, name) == 0
    assert "parity: onnxruntime within" in capsys.readouterr().out
    onnx_path = tmp_path / name / "1" / "model.onnx"
    onnx.checker.check_model(str(onnx_path))
    inputs, outputs = _graph_io(onnx_path)
    config = repo.read_config(tmp_path / name)
    assert config.name == name and config.backend == "onnxruntime" and config.max_batch_size == 64
    # Ragged input: the graph takes the concatenated 1-D values plus Triton's accumulated counts.
    assert inputs == {"values": [-1], "offsets": [-1]}
    assert [(i.name, list(i.dims), i.allow_ragged_batch) for i in config.input] == [("values", [-1], True)]
    (batch_input,) = config.batch_input
    assert (batch_input.target_name, batch_input.source_input) == (["offsets"], ["values"])
    assert repo.mc.BatchInput.Kind.Name(batch_input.kind) == "BATCH_ACCUMULATED_ELEMENT_COUNT"
    # Outputs: the graph's own names and per-series shapes (batch dimension dropped).
    assert {o.name: [-1, *o.dims] for o in config.output} == outputs
    assert config.instance_group[0].kind == repo.mc.ModelInstanceGroup.KIND_GPU
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert {k: v.string_value for k, v in config.parameters.items()}.items() <= meta.items()


@pytest.mark.parametrize("name", MODELS)
def test_committed_models_are_what_the_converter_makes_of_the_committed_checkpoints(name):
    model = convert_model.load_model(CHECKPOINTS / f"{name}.pt", None)
    sig = model.triton_signature()
    onnx_path = ROOT / "model_repository" / name / "1" / "model.onnx"
    assert convert_model.check_parity(model, sig, onnx_path, atol=1e-4, rtol=1e-3) <= 1.0
    inputs, outputs = convert_model.graph_io(onnx_path, sig)
    expected = repo.gpu_config(name, inputs, outputs, max_batch_size=64, parameters=model.serving_metadata(),
                               batch_inputs=[(sig.batch_input, "BATCH_ACCUMULATED_ELEMENT_COUNT", sig.ragged_input)])
    assert (ROOT / "model_repository" / name / repo.CONFIG).read_text() == repo.render(expected)


def test_a_parity_failure_stops_the_conversion_loudly(tmp_path, capsys):
    assert _convert(tmp_path, "transformer_timeseries", "--atol", "1e-12", "--rtol", "0") == 1
    assert "differs from PyTorch" in capsys.readouterr().err
    assert not (tmp_path / "transformer_timeseries" / repo.CONFIG).exists()


def test_tensorrt_needs_tensorrt(tmp_path, capsys):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    assert _convert(tmp_path, "vae_timeseries", "--backend", "tensorrt") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "TensorRT is not installed" in err


def test_any_module_converts_given_an_input_shape(tmp_path):
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 4)
    checkpoint = tmp_path / "linear.pt"
    torch.save({"model_class": "torch.nn:Linear", "config": {"in_features": 16, "out_features": 4},
                "state_dict": layer.state_dict()}, checkpoint)
    assert convert_model.main(["--model-path", str(checkpoint), "--model-name", "linear", "--repository",
                               str(tmp_path), "--input-shape", "16", "--max-batch", "8"]) == 0
    config = repo.read_config(tmp_path / "linear")
    assert [(i.name, list(i.dims), i.allow_ragged_batch) for i in config.input] == [("input", [16], False)]
    assert [(o.name, list(o.dims)) for o in config.output] == [("output", [4])]
    assert not config.batch_input and config.max_batch_size == 8
    import onnxruntime as ort
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    (got,) = ort.InferenceSession(str(tmp_path / "linear" / "1" / "model.onnx")).run(None, {"input": x})
    np.testing.assert_allclose(got, layer(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_a_model_without_signature_or_shape_is_refused(tmp_path, capsys):
    checkpoint = tmp_path / "linear.pt"
    torch.save({"model_class": "torch.nn:Linear", "config": {"in_features": 2, "out_features": 1},
                "state_dict": torch.nn.Linear(2, 1).state_dict()}, checkpoint)
    assert convert_model.main(["--model-path", str(checkpoint), "--model-name", "x", "--repository",
                               str(tmp_path)]) == 1
    assert "--input-shape" in capsys.readouterr().err
