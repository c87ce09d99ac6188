"""Series -> a Triton request, a Triton response -> JobResults, for any model the catalogue
describes: one series as [1, n], or (``model.multi_series``) several of one length as [k, n]."""

from __future__ import annotations

import numpy as np
from satlas.v1 import job_pb2
from tritonclient.grpc import service_pb2 as tpb

from analysis_svc.catalogue import ModelInfo

NUMPY = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "BOOL": np.bool_, "INT32": np.int32,
         "INT64": np.int64}


def check_length(model: ModelInfo, n: int) -> str | None:
    """Why a series of ``n`` points does not fit the model (None: it does). Callers check this
    before building a request, so that a misfit fails alone with a field violation."""
    if n < model.min_length or n > model.max_length:
        return f"series has {n} points; {model.name} takes {model.min_length} to {model.max_length}"
    return None


def build_request(model: ModelInfo, values, request_id: str = "") -> tpb.ModelInferRequest:
    return build_batch_request(model, [values], request_id)


def build_batch_request(model: ModelInfo, series: list, request_id: str = "") -> tpb.ModelInferRequest:
    """One request for ``series`` (all of one length, each checked with check_length) as the rows of [k, n]."""
    array = np.asarray(series, dtype=NUMPY.get(model.input_datatype, np.float32)).reshape(len(series), -1)
    return tpb.ModelInferRequest(
        model_name=model.name,
        id=request_id,
        inputs=[tpb.ModelInferRequest.InferInputTensor(name=model.input_name, datatype=model.input_datatype,
                                                      shape=array.shape)],
        raw_input_contents=[array.tobytes()],
    )


def parse_response(model: ModelInfo, response: tpb.ModelInferResponse, n: int) -> job_pb2.JobResult:
    return parse_batch_response(model, response, [n])[0]


def parse_batch_response(model: ModelInfo, response: tpb.ModelInferResponse, lengths: list[int]
                         ) -> list[job_pb2.JobResult]:
    """One JobResult per row (series of ``lengths``, in request order)."""
    results = [job_pb2.JobResult(model_version=response.model_version) for _ in lengths]
    for tensor, raw in zip(response.outputs, response.raw_output_contents):
        dtype = NUMPY.get(tensor.datatype)
        if dtype is None:
            continue
        rows = np.frombuffer(raw, dtype=dtype).astype(np.float64).reshape(len(lengths), -1)
        for result, row, n in zip(results, rows, lengths):
            _fill(model, result, tensor.name, row, n)
    return results


def _fill(model: ModelInfo, result: job_pb2.JobResult, name: str, flat: np.ndarray, n: int) -> None:
    """Map an output to its role; outputs without a role go to ``outputs`` by name. Per-point
    outputs (as long as the model's window) are right-aligned: only their last min(n, window)
    entries belong to the series, so the rest is cut off."""
    if model.window and flat.size == model.window and n < model.window:
        flat = flat[-n:]
    values = flat.tolist()
    role = model.role_of.get(name)
    if role == "predictions":
        result.predictions.extend(values)
    elif role == "anomaly_scores":
        result.anomaly_scores.extend(values)
    elif role == "anomaly_score" and values:
        result.anomaly_score = values[0]
    elif role == "anomaly_flag" and values:
        result.anomaly_flag = bool(values[0])
    elif role == "quantiles" and model.quantile_levels and flat.size % len(model.quantile_levels) == 0:
        _quantiles(result, model.quantile_levels, flat)
    else:
        result.outputs[name].values.extend(values)


def _quantiles(result: job_pb2.JobResult, levels: tuple[float, ...], flat: np.ndarray) -> None:
    """[levels, horizon] as one QuantileForecast a level, lowest first. Non-decreasing in the level
    at every point whatever the model gave (a crossing is taken to the lower level's value)."""
    order = np.argsort(levels)
    rows = np.maximum.accumulate(flat.reshape(len(levels), -1)[order], axis=0)
    for i, row in zip(order, rows):
        result.quantiles.add(level=levels[i], values=row.tolist())
