"""Model quality on held-out synthetic series (a seed the training never used).

    python -m scripts.evaluate                        # the ONNX files in model_repository/, onnxruntime
    python -m scripts.evaluate --triton 127.0.0.1:8001  # the models served by a running Triton

Forecast: mean absolute error of the transformer against the naive last-value forecast, each
series' errors scaled by the mean absolute step of its own history (the MASE scaling of Hyndman
and Koehler), so that series in large units, or short series whose future strays far from
their few points, don't drown the rest. Anomalies: AUROC of the VAE's series score for series with an
injected spike or level shift against clean ones, how often the top point score lands within 2
steps of an injected spike, and the false-positive rate of the calibrated flag on clean series.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from scripts.tsmodels import datasets
from tools import patterns

HELD_OUT_SEED = 20261122
REPOSITORY = Path(__file__).resolve().parent.parent / "model_repository"

# predict(list of series) -> one dict of named output arrays per series (batch dim removed)
Predictor = Callable[[Sequence[np.ndarray]], list[dict[str, np.ndarray]]]


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def forecast_quality(predict: Predictor, size: int = 1000, seed: int = HELD_OUT_SEED, horizon: int = 16) -> dict:
    rng = np.random.default_rng(seed)
    items = [patterns.random_series(rng, horizon=horizon, length=patterns.random_length(rng, 8, 4096))
             for _ in range(size)]
    outputs = predict([s.values for s in items])
    rows, covered = [], []
    for s, out in zip(items, outputs):
        step = max(float(np.mean(np.abs(np.diff(s.values)))), 1e-12)
        rows.append((s.pattern,
                     float(np.mean(np.abs(out["forecast"] - s.future))) / step,
                     float(np.mean(np.abs(s.values[-1] - s.future))) / step))
        if "quantiles" in out:  # rows: the levels, lowest first; the interval is the outer two
            q = out["quantiles"].reshape(-1, horizon)
            covered.append((q[0] <= s.future) & (s.future <= q[-1]))
    report = {"series": size, "seed": seed, "horizon": horizon}
    if covered:  # the share of future points inside the low-high interval (0.1-0.9: 80 % is honest)
        hits = np.array(covered)
        report["interval_coverage"] = float(hits.mean())
        for p in patterns.PATTERNS:
            report[f"interval_coverage_{p}"] = float(hits[np.array([r[0] == p for r in rows])].mean())
    model_mae, naive_mae = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    report["overall"] = {"mae": float(model_mae.mean()), "naive_mae": float(naive_mae.mean()),
                         "ratio": float(model_mae.mean() / naive_mae.mean())}
    for p in patterns.PATTERNS:
        sel = np.array([r[0] == p for r in rows])
        report[p] = {"mae": float(model_mae[sel].mean()), "naive_mae": float(naive_mae[sel].mean()),
                     "ratio": float(model_mae[sel].mean() / naive_mae[sel].mean())}
    return report


def anomaly_quality(predict: Predictor, window: int, size: int = 2000, seed: int = HELD_OUT_SEED) -> dict:
    data = datasets.anomaly_set(np.random.default_rng(seed), size, window=window)
    outputs = predict(data.series)
    scores = np.array([float(o["anomaly_score"][0]) for o in outputs])
    flags = np.array([bool(o["anomaly_flag"][0]) for o in outputs])
    hits, spikes = 0, 0
    for values, kind, pos, out in zip(data.series, data.kinds, data.positions, outputs):
        if kind != "spike":
            continue
        seen = min(len(values), window)
        top = len(values) - seen + int(np.argmax(out["anomaly_scores"][-seen:]))
        hits += abs(top - pos) <= 2
        spikes += 1
    clean = data.labels == 0
    report = {"series": size, "seed": seed, "auroc": auroc(scores, data.labels),
              "spike_top_point_within_2": hits / spikes,
              "false_positive_rate": float(flags[clean].mean()),
              "true_positive_rate": float(flags[~clean].mean())}
    for kind in patterns.ANOMALY_KINDS:
        sel = np.array([k in ("clean", kind) for k in data.kinds])
        report[f"auroc_{kind}"] = auroc(scores[sel], data.labels[sel])
    for p in patterns.PATTERNS:
        sel = np.array([q == p for q in data.patterns])
        report[f"auroc_{p}"] = auroc(scores[sel], data.labels[sel])
    return report


def onnx_predictor(model_name: str, repository: Path = REPOSITORY, version: int = 1, chunk: int = 256) -> Predictor:
    import onnxruntime as ort

    session = ort.InferenceSession(str(repository / model_name / str(version) / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def predict(series: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        results: list[dict[str, np.ndarray]] = []
        for i in range(0, len(series), chunk):
            values, offsets = datasets.pack(series[i:i + chunk])
            outs = session.run(None, {"values": values, "offsets": offsets})
            results += [{n: o[j] for n, o in zip(names, outs)} for j in range(len(offsets))]
        return results

    return predict


def triton_predictor(model_name: str, url: str, concurrency: int = 16) -> Predictor:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    names = [o.name for o in client.get_model_metadata(model_name).outputs]

    def one(values: np.ndarray) -> dict[str, np.ndarray]:
        inp = grpcclient.InferInput("values", [1, len(values)], "FP32")
        inp.set_data_from_numpy(np.asarray(values, dtype=np.float32)[None, :])
        result = client.infer(model_name, [inp], client_timeout=30)
        return {n: result.as_numpy(n)[0] for n in names}

    def predict(series: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(one, series))

    return predict


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triton", metavar="HOST:PORT", help="evaluate through a running Triton (gRPC)")
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)

    def predictor(name: str) -> Predictor:
        return triton_predictor(name, args.triton) if args.triton else onnx_predictor(name)

    window = int(_window("vae_timeseries"))
    report = {"transformer_timeseries": forecast_quality(predictor("transformer_timeseries"), args.size, args.seed),
              "vae_timeseries": anomaly_quality(predictor("vae_timeseries"), window, args.size, args.seed)}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def _window(model_name: str) -> str:
    from launcher import model_repository

    return model_repository.read_config(REPOSITORY / model_name).parameters["window"].string_value


if __name__ == "__main__":
    main()
