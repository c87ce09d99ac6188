"""Triton Python-backend model that runs a ``model.onnx`` with onnxruntime on the CPU.

Linked as ``model.py`` into each version folder of the local CPU repository (see
``model_repository.build_cpu_repository``). It behaves like Triton's ONNX Runtime backend for
the models Satlas ships: requests of one dynamic batch are concatenated (ragged inputs into one
1-D tensor), batch inputs are filled in, the graph runs once, and outputs are split back per
request. It also checks what the ONNX backend cannot: a length within the model's limits and finite
values, so a bad request fails alone and the batch goes on. Unlike Triton's ragged batcher,
which gives a request one offset, it reads the rows of a [k, n] request as k series
(parameter ``multi_series_requests``), so a client may send a batch of series as one request.
"""

import json
import os
import sys

# The stub's embedded interpreter ignores PYTHONPATH; the launcher sets it to the environment
# that has numpy and onnxruntime.
sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("python.intra_op_threads", "1"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = [(i["name"], pb_utils.triton_string_to_numpy(i["data_type"]), bool(i.get("allow_ragged_batch")))
                       for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        self.batch_inputs = json.loads(params.get("python.batch_inputs", "[]"))
        # A [k, n] request carries k series of n points (see satkit.jobs.MULTI_SERIES).
        self.multi_series = params.get("multi_series_requests", "false") == "true"
        self.min_length = int(params.get("min_length", "1"))
        self.max_length = int(params.get("max_length", str(2**31)))

    def _check(self, request):
        """The request's input arrays, or an error message."""
        arrays = {}
        for name, dtype, ragged in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                return f"missing input '{name}'"
            array = tensor.as_numpy()
            if ragged:
                if array.ndim != 2 or (array.shape[0] != 1 and not self.multi_series):
                    return f"input '{name}' must have shape [1, n] (one series per request), got {list(array.shape)}"
                n = array.shape[1]
                if not self.min_length <= n <= self.max_length:
                    return f"input '{name}' has {n} points; this model takes {self.min_length} to {self.max_length}"
            if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
                return f"input '{name}' contains NaN or infinite values"
            arrays[name] = array.astype(dtype, copy=False)
        return arrays

    def _feeds(self, batch):
        feeds = {}
        for name, _, ragged in self.inputs:
            parts = [a[name] for a in batch]
            feeds[name] = np.concatenate([p.reshape(-1) for p in parts] if ragged else parts)
        for b in self.batch_inputs:  # per series: a request's rows are series of one length each
            counts = np.concatenate([np.full(a[b["source_input"]].shape[0], a[b["source_input"]][0].size)
                                     for a in batch]).astype(np.float32)
            if b["kind"] == "BATCH_ACCUMULATED_ELEMENT_COUNT":
                feeds[b["target_name"]] = np.cumsum(counts, dtype=np.float32)
            elif b["kind"] == "BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO":
                feeds[b["target_name"]] = np.concatenate([[0.0], np.cumsum(counts)]).astype(np.float32)
            elif b["kind"] == "BATCH_ELEMENT_COUNT":
                feeds[b["target_name"]] = counts
            else:
                raise pb_utils.TritonModelException(f"batch input kind {b['kind']} is not supported here")
        return feeds

    def execute(self, requests):
        checked = [self._check(r) for r in requests]
        batch = [c for c in checked if isinstance(c, dict)]
        results = []
        if batch:
            outs = self.session.run(self.outputs, self._feeds(batch))
            rows = np.cumsum([0] + [next(iter(a.values())).shape[0] for a in batch])
            results = [[o[rows[i]:rows[i + 1]] for o in outs] for i in range(len(batch))]
        responses, k = [], 0
        for c in checked:
            if isinstance(c, str):
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(c, pb_utils.TritonError.INVALID_ARG)))
                continue
            tensors = [pb_utils.Tensor(name, arr) for name, arr in zip(self.outputs, results[k])]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            k += 1
        return responses
