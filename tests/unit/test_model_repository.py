"""One source of truth: the CPU repository is derived from the committed GPU configs."""

import json
import os

from support import ROOT

from launcher import model_repository as repo

MODELS = ["transformer_timeseries", "vae_timeseries"]


def test_committed_configs_target_the_gpu_with_dynamic_batching():
    for name in MODELS:
        config = repo.read_config(ROOT / "model_repository" / name)
        assert config.name == name
        assert config.backend == "onnxruntime"
        assert [g.kind for g in config.instance_group] == [repo.mc.ModelInstanceGroup.KIND_GPU]
        assert config.HasField("dynamic_batching") and config.max_batch_size >= 32
        assert (ROOT / "model_repository" / name / "1" / "model.onnx").is_file()


def test_cpu_config_is_the_gpu_config_on_the_python_backend():
    gpu = repo.read_config(ROOT / "model_repository" / "vae_timeseries")
    cpu = repo.cpu_config(gpu, instance_count=2, intra_op_threads=1, max_queue_delay_us=50)
    assert cpu.backend == "python"
    assert [(g.kind, g.count) for g in cpu.instance_group] == [(repo.mc.ModelInstanceGroup.KIND_CPU, 2)]
    assert cpu.dynamic_batching.max_queue_delay_microseconds == 50
    # Same contract as the GPU model: inputs, outputs, batch size and parameters.
    assert cpu.input == gpu.input and cpu.output == gpu.output and cpu.max_batch_size == gpu.max_batch_size
    for key, value in gpu.parameters.items():
        assert cpu.parameters[key] == value
    # Batch inputs are filled by the wrapper, told by a parameter what Triton would have filled.
    assert not cpu.batch_input
    assert json.loads(cpu.parameters["python.batch_inputs"].string_value) == [
        {"target_name": "offsets", "kind": "BATCH_ACCUMULATED_ELEMENT_COUNT", "source_input": "values"}]


def test_cpu_repository_links_the_committed_files(tmp_path):
    names = repo.build_cpu_repository(ROOT / "model_repository", tmp_path / "cpu")
    assert names == MODELS
    for name in names:
        version = tmp_path / "cpu" / name / "1"
        assert os.path.realpath(version / "model.onnx") == str(ROOT / "model_repository" / name / "1" / "model.onnx")
        assert os.path.realpath(version / "model.py") == str(repo.ONNX_WRAPPER)
        assert repo.read_config(tmp_path / "cpu" / name).backend == "python"


def test_models_that_cannot_run_on_cpu_are_left_out(tmp_path):
    src = tmp_path / "src"
    (src / "plan_model" / "1").mkdir(parents=True)
    config = repo.mc.ModelConfig(name="plan_model", platform="tensorrt_plan", max_batch_size=8)
    (src / "plan_model" / repo.CONFIG).write_text(repo.render(config))
    (src / "not_a_model").mkdir()
    assert repo.build_cpu_repository(src, tmp_path / "cpu") == []
