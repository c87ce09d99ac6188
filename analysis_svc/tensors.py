"""Series -> a Triton request, a Triton response -> JobResults, for any model the catalogue
describes: one series as [1, n], or (``model.multi_series``) several of one length as [k, n]."""

from __future__ import annotations

import itertools

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
    lengths = {len(s) for s in series}
    if len(lengths) > 1:  # as np.asarray refused them: rows of one length only
        raise ValueError(f"series of lengths {sorted(lengths)} cannot be the rows of one request")
    # fromiter over the rows chained: np.asarray on a list of protobuf containers takes twice as long.
    array = np.fromiter(itertools.chain.from_iterable(series), dtype=NUMPY.get(model.input_datatype, np.float32),
                        count=len(series) * lengths.pop()).reshape(len(series), -1)
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
    """One JobResult per row (series of ``lengths``, in request order). Each output is converted for
    all rows at once (one tolist, one quantile sort): per row, numpy's calls cost the worker more
    than the copying (py-spy at 5,000 jobs/s)."""
    results = [job_pb2.JobResult(model_version=response.model_version) for _ in lengths]
    for tensor, raw in zip(response.outputs, response.raw_output_contents):
        dtype = NUMPY.get(tensor.datatype)
        if dtype is None:
            continue
        rows = _rows(model, np.frombuffer(raw, dtype=dtype).astype(np.float64).reshape(len(lengths), -1), lengths)
        role = model.role_of.get(tensor.name)
        levels = model.quantile_levels
        if role == "quantiles" and levels and isinstance(rows, np.ndarray) and rows.shape[1] % len(levels) == 0:
            _quantiles(results, levels, rows)
            continue
        for result, values in zip(results, rows.tolist() if isinstance(rows, np.ndarray) else rows):
            _fill(result, role, tensor.name, values, levels)
    return results


def _rows(model: ModelInfo, block: np.ndarray, lengths: list[int]) -> np.ndarray | list[list[float]]:
    """Each series' part of an output [k, m]: the block itself, or where a series is shorter than a
    per-point output (as long as the model's window, right-aligned) each one's last n, as a list."""
    if model.window and block.shape[1] == model.window and min(lengths) < model.window:
        return [(row[-n:] if n < model.window else row).tolist() for row, n in zip(block, lengths)]
    return block


def _fill(result: job_pb2.JobResult, role: str | None, name: str, values: list[float],
          levels: tuple[float, ...]) -> None:
    """Map one series' output to its role; outputs without a role go to ``outputs`` by name."""
    if role == "predictions":
        result.predictions.extend(values)
    elif role == "anomaly_scores":
        result.anomaly_scores.extend(values)
    elif role == "anomaly_score" and values:
        result.anomaly_score = values[0]
    elif role == "anomaly_flag" and values:
        result.anomaly_flag = bool(values[0])
    elif role == "quantiles" and levels and len(values) % len(levels) == 0:
        _quantiles([result], levels, np.asarray(values).reshape(1, -1))
    else:
        result.outputs[name].values.extend(values)


def _quantiles(results: list[job_pb2.JobResult], levels: tuple[float, ...], rows: np.ndarray) -> None:
    """Each row [levels, horizon] as one QuantileForecast a level, lowest first. Non-decreasing in the
    level at every point whatever the model gave (a crossing is taken to the lower level's value)."""
    order = np.argsort(levels)
    bands = np.maximum.accumulate(rows.reshape(len(rows), len(levels), -1)[:, order], axis=1).tolist()
    ordered = [levels[i] for i in order]
    for result, series in zip(results, bands):
        for level, values in zip(ordered, series):
            result.quantiles.add(level=level, values=values)
