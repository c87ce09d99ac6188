"""Model quality on held-out synthetic series (a seed the training never used).

    python -m scripts.evaluate                        # the ONNX files in model_repository/, onnxruntime
    python -m scripts.evaluate --triton 127.0.0.1:8001  # the models served by a running Triton
    python -m scripts.evaluate --ingest 127.0.0.1:50051 --orchestrator 127.0.0.1:50052  # through the whole mesh

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
    """The detector on the five training patterns and on shapes it never saw, in equal shares."""
    data = datasets.anomaly_set(np.random.default_rng(seed), size, window=window, shapes=patterns.ALL_SHAPES)
    outputs = predict(data.series)
    scores = np.array([float(o["anomaly_score"][0]) for o in outputs])
    flags = np.array([bool(o["anomaly_flag"][0]) for o in outputs])
    near = np.zeros(size, dtype=bool)  # the top point score within 2 steps of the spike
    for i, (values, kind, pos, out) in enumerate(zip(data.series, data.kinds, data.positions, outputs)):
        if kind == "spike":
            seen = min(len(values), window)
            near[i] = abs(len(values) - seen + int(np.argmax(out["anomaly_scores"][-seen:])) - pos) <= 2
    kinds, of = np.array(data.kinds), np.array(data.patterns)
    clean, spikes = data.labels == 0, kinds == "spike"

    def summary(sel: np.ndarray) -> dict:
        row = {"auroc": auroc(scores[sel], data.labels[sel])}
        for kind in patterns.ANOMALY_KINDS:
            pick = sel & ((kinds == kind) | clean)
            row[f"auroc_{kind}"] = auroc(scores[pick], data.labels[pick])
        row["spike_top_point_within_2"] = float(near[sel & spikes].mean())
        row["false_positive_rate"] = float(flags[sel & clean].mean())
        row["true_positive_rate"] = float(flags[sel & ~clean].mean())
        return row

    report = {"series": size, "seed": seed, "held_out_shapes": list(patterns.HELD_OUT_SHAPES),
              **summary(np.ones(size, dtype=bool)),
              "training_patterns": summary(np.isin(of, patterns.PATTERNS)),
              "held_out": summary(np.isin(of, patterns.HELD_OUT_SHAPES))}
    for shape in patterns.ALL_SHAPES:
        report[shape] = summary(of == shape)
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


def mesh_predictor(model_name: str, ingest: str, orchestrator: str, timeout_s: float = 600.0) -> Predictor:
    """Each series as a producer sends it (one StreamSeries stream) and its result as a watcher sees
    it (one WatchJobs stream, opened first), under the output names the other predictors use: the
    mesh adds nothing and loses nothing. A job whose event a slow watcher missed is read with GetJob."""
    import threading
    import time

    from satlas.v1 import ingest_service_pb2 as ipb
    from satlas.v1 import ingest_service_pb2_grpc as ipb_grpc
    from satlas.v1 import job_state_pb2 as js
    from satlas.v1 import orchestrator_service_pb2 as opb
    from satlas.v1 import orchestrator_service_pb2_grpc as opb_grpc

    from satkit import client
    from satkit.jobs import TERMINAL_STATES

    def outputs(job) -> dict[str, np.ndarray]:
        if job.state != js.JOB_STATE_SUCCEEDED:
            raise RuntimeError(f"job {job.job_id}: {js.JobState.Name(job.state)} {job.error}")
        result = job.result
        predictions = np.array(result.predictions)
        out = {"forecast": predictions, "reconstruction": predictions,
               "anomaly_scores": np.array(result.anomaly_scores), "anomaly_score": np.array([result.anomaly_score]),
               "anomaly_flag": np.array([result.anomaly_flag])}
        if result.quantiles:
            out["quantiles"] = np.array([q.values for q in sorted(result.quantiles, key=lambda q: q.level)])
        return out

    def predict(series: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        with client.channel(ingest) as ic, client.channel(orchestrator) as oc:
            stub = opb_grpc.OrchestratorServiceStub(oc)
            watch = stub.WatchJobs(opb.WatchJobsRequest(model_names=[model_name], states=sorted(TERMINAL_STATES)))
            watch.initial_metadata()  # subscribed before the first job exists
            ended: dict[str, object] = {}
            heard = [time.monotonic()]

            def listen() -> None:
                try:
                    for event in watch:
                        ended[event.job.job_id] = event.job
                        heard[0] = time.monotonic()
                except Exception:  # cancelled below
                    pass

            listener = threading.Thread(target=listen, daemon=True)
            listener.start()
            requests = (ipb.StreamSeriesRequest(submission=ipb.SubmitSeriesRequest(
                series={"values": [float(v) for v in values]}, models=[model_name]), sequence=i)
                for i, values in enumerate(series))
            ids = [""] * len(series)
            for r in ipb_grpc.IngestServiceStub(ic).StreamSeries(requests, timeout=timeout_s):
                if r.HasField("error"):
                    raise RuntimeError(f"series {r.sequence} refused: {r.error.message}")
                ids[r.sequence] = r.job_ids[0]
            deadline = time.monotonic() + timeout_s
            # Until every job is heard of, or the stream has been quiet for 10 s (events dropped).
            while any(i not in ended for i in ids) and time.monotonic() < min(deadline, heard[0] + 10):
                time.sleep(0.05)
            watch.cancel()
            listener.join()
            for job_id in (i for i in ids if i not in ended):
                while (job := stub.GetJob(opb.GetJobRequest(job_id=job_id), timeout=30).job).state \
                        not in TERMINAL_STATES and time.monotonic() < deadline:
                    time.sleep(0.1)
                ended[job_id] = job
            return [outputs(ended[i]) for i in ids]

    return predict


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triton", metavar="HOST:PORT", help="evaluate through a running Triton (gRPC)")
    parser.add_argument("--ingest", metavar="HOST:PORT", help="or through a running mesh: its ingest ...")
    parser.add_argument("--orchestrator", metavar="HOST:PORT", help="... and its orchestrator")
    parser.add_argument("--size", type=int, default=2000, help="forecast series")
    parser.add_argument("--anomaly-size", type=int, default=11000, help="anomaly series (a thousand per shape)")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--plot", type=Path, help="and a picture of it (PNG)")
    args = parser.parse_args(argv)

    if bool(args.ingest) != bool(args.orchestrator):
        parser.error("--ingest and --orchestrator go together")

    def predictor(name: str) -> Predictor:
        if args.ingest:
            return mesh_predictor(name, args.ingest, args.orchestrator)
        return triton_predictor(name, args.triton) if args.triton else onnx_predictor(name)

    window = int(_window("vae_timeseries"))
    report = {"transformer_timeseries": forecast_quality(predictor("transformer_timeseries"), args.size, args.seed),
              "vae_timeseries": anomaly_quality(predictor("vae_timeseries"), window, args.anomaly_size, args.seed)}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        plot(report, args.plot)


def plot(report: dict, path: Path) -> None:
    """Per pattern and shape: the detector's AUROC and false-positive rate, the forecast's error
    against naive and its 80 % interval's coverage, each with the line it must hold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vae, fc = report["vae_timeseries"], report["transformer_timeseries"]
    shapes = list(patterns.ALL_SHAPES)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colours = ["tab:blue" if s in patterns.PATTERNS else "tab:orange" for s in shapes]
    ax = axes[0]
    ax.bar(shapes, [vae[s]["auroc"] for s in shapes], color=colours)
    ax.axhline(0.93, color="k", ls="--", lw=1)
    ax.set_ylim(0.8, 1.0)
    ax.set_title(f"anomaly AUROC (overall {vae['auroc']:.3f}; orange: never trained on)")
    ax = axes[1]
    ax.bar(shapes, [vae[s]["false_positive_rate"] for s in shapes], color=colours)
    ax.axhline(0.05, color="k", ls="--", lw=1)
    ax.set_title(f"flag on clean series (overall {vae['false_positive_rate']:.1%})")
    ax = axes[2]
    ps = list(patterns.PATTERNS)
    ax.bar([p + " " for p in ps], [fc.get(f"interval_coverage_{p}", 0.0) for p in ps], color="tab:green",
           label="80 % interval coverage")
    ax.plot([p + " " for p in ps], [fc[p]["ratio"] for p in ps], "ko", label="MAE ÷ naive")
    ax.axhspan(0.74, 0.86, color="tab:green", alpha=0.15)
    ax.set_ylim(0, 1.1)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"forecast (coverage {fc.get('interval_coverage', float('nan')):.1%}, "
                 f"MAE ratio {fc['overall']['ratio']:.2f})")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=60, labelsize=8)
    fig.suptitle(f"held-out series, seed {vae['seed']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    print(f"wrote {path}")


def _window(model_name: str) -> str:
    from launcher import model_repository

    return model_repository.read_config(REPOSITORY / model_name).parameters["window"].string_value


if __name__ == "__main__":
    main()
