#!/usr/bin/env bash
# Checkpoint -> deployed model, for both Satlas models: ONNX + config.pbtxt in model_repository/.
# Run from the repository root (make convert). Train new checkpoints first with `make train`.
set -euo pipefail
PY=${PY:-.venv/bin/python}
BACKEND=${BACKEND:-onnx}  # or tensorrt, where TensorRT is installed
for model in vae_timeseries:TimeSeriesVAE transformer_timeseries:TimeSeriesTransformer; do
  name=${model%%:*}
  "$PY" -m scripts.convert_model \
    --model-path "scripts/checkpoints/${name}.pt" \
    --model-class "${model##*:}" \
    --backend "$BACKEND" \
    --model-name "$name" \
    --version 1 \
    --max-batch 64
done
