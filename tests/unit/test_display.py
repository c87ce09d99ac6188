"""tools.display: how jobs, results, tables, stats, models and JSON look on a terminal."""

from __future__ import annotations

import json

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message
from satlas.v1 import analysis_service_pb2, job_pb2, job_state_pb2, orchestrator_service_pb2

from tools import display

S = job_state_pb2.JobState


# --- output --------------------------------------------------------------------------------


def _ts(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


def _job(**overrides) -> job_pb2.Job:
    job = job_pb2.Job(
        job_id="job-123",
        model_name="transformer_timeseries",
        state=S.JOB_STATE_SUCCEEDED,
        series_id="sensor-9",
        labels={"site": "a"},
        series_length=128,
        attempts=1,
        version=4,
        create_time=_ts(1_700_000_000),
        end_time=_ts(1_700_000_001),
        timings=job_pb2.JobTimings(queue_seconds=0.0123, inference_seconds=0.0045, total_seconds=0.0201),
        worker="host:77",
        result=job_pb2.JobResult(
            predictions=[float(i) for i in range(20)],
            anomaly_score=0.25,
            anomaly_flag=True,
            anomaly_scores=[0.1, 0.2],
            model_version="1",
            outputs={"forecast": job_pb2.Values(values=[1.0] * 20)},
        ),
    )
    for k, v in overrides.items():
        if isinstance(v, Message):
            getattr(job, k).CopyFrom(v)
        else:
            setattr(job, k, v)
    return job


def test_job_text_shows_summary_and_only_a_preview():
    text = display.job_text(_job())
    assert "state          SUCCEEDED" in text
    assert "model          transformer_timeseries" in text
    assert "timings        queue 12.3 ms, inference 4.5 ms, total 20.1 ms" in text
    assert "attempts       1" in text and "worker         host:77" in text
    assert "sensor-9 (128 points)  site=a" in text
    assert "predictions    [20] 0, 1, 2, 3, 4, 5, 6, 7, ... (+12 more)" in text
    assert "anomaly        score 0.25 (ANOMALY)" in text
    assert "outputs        forecast[20]" in text
    assert "19" not in text.split("predictions")[1].split("\n")[0]  # never the whole series
    assert "error" not in text


def test_job_text_failed_without_result():
    job = _job(state=S.JOB_STATE_FAILED, error="model exploded", worker="")
    job.ClearField("result")
    job.timings.Clear()
    text = display.job_text(job)
    assert "state          FAILED" in text and "error          model exploded" in text
    assert "timings        -" in text and "worker         -" in text
    assert "predictions" not in text and "anomaly" not in text


def test_result_lines_without_anomaly_outputs():
    lines = display.result_lines(job_pb2.JobResult(predictions=[1.5, 2.0], model_version="2"))
    assert lines == ["model version  2", "predictions    [2] 1.5, 2"]


def test_event_line_uses_the_state_timestamp():
    job = _job()
    line = display.event_line(job)
    assert line.startswith(display.clock(job.end_time) + "  job-123  transformer_timeseries  SUCCEEDED  v4")
    assert line.endswith("queue 12.3 ms, inference 4.5 ms, total 20.1 ms")
    queued = job_pb2.Job(job_id="j", model_name="m", state=S.JOB_STATE_QUEUED, version=2, queue_time=_ts(5),
                         error="")
    assert display.event_line(queued) == f"{display.clock(_ts(5))}  j  m  QUEUED     v2"
    failed = job_pb2.Job(job_id="j", model_name="m", state=S.JOB_STATE_FAILED, version=3, error="boom")
    assert display.event_line(failed).endswith("FAILED     v3  error: boom")  # no end_time: now, still one line


def test_jobs_table():
    text = display.jobs_table([_job(), _job(job_id="j2", state=S.JOB_STATE_QUEUED, timings=job_pb2.JobTimings())])
    header, first, second = text.splitlines()
    assert header.split() == ["JOB_ID", "MODEL", "STATE", "LENGTH", "ATTEMPTS", "CREATED", "TOTAL_MS"]
    assert first.split()[:5] == ["job-123", "transformer_timeseries", "SUCCEEDED", "128", "1"]
    assert first.split()[-1] == "20.1" and second.split()[-1] == "-"
    assert first.index("SUCCEEDED") == second.index("QUEUED")  # columns line up


def test_stats_and_model_text():
    stats = orchestrator_service_pb2.GetStatsResponse(
        totals=orchestrator_service_pb2.JobCounts(total=10, succeeded=8, failed=1, queued=1),
        throughput=2.5, success_rate=0.875, queue_depth=1, active_workers=2,
        latency=orchestrator_service_pb2.LatencySummary(p50=0.01, p95=0.02, p99=0.03, mean=0.012, count=9),
        models=[orchestrator_service_pb2.ModelStats(model_name="vae_timeseries", mean_inference_seconds=0.002)],
    )
    stats.window.FromSeconds(60)
    text = display.stats_text(stats)
    assert "window        60 s" in text
    assert "total 10  pending 0  queued 1  running 0  succeeded 8  failed 1  cancelled 0" in text
    assert "throughput    2.50 jobs/s   success rate 87.5 %" in text
    assert "p50 10.0 ms  p95 20.0 ms  p99 30.0 ms  mean 12.0 ms  (n=9)" in text
    assert "vae_timeseries" in text.splitlines()[-1] and text.splitlines()[-1].endswith("2.0")

    model = analysis_service_pb2.Model(
        name="vae_timeseries", versions=["1"], ready=True, task="reconstruction", min_length=16, max_length=4096,
        window=64, backend="onnxruntime", max_batch_size=64,
        outputs=[analysis_service_pb2.TensorSpec(name="recon", data_type="TYPE_FP32", shape=[-1, 64],
                                                 role="predictions")],
    )
    text = display.model_text(model)
    assert text.splitlines()[0] == "vae_timeseries  versions 1  ready  task reconstruction  backend onnxruntime"
    assert "length 16..4096  window 64  horizon 0" in text
    assert "  out  recon TYPE_FP32 [-1,64] -> predictions" in text


def test_json_output():
    one = json.loads(display.to_json(orchestrator_service_pb2.GetJobResponse(job=_job())))
    assert one["job"]["state"] == "JOB_STATE_SUCCEEDED" and one["job"]["jobId"] == "job-123"
    assert "\n" not in display.to_json(_job(), stream=True)  # JSON Lines for the streams


def test_short_id_is_the_random_end_of_a_version_7_id_as_the_dashboard_shows_it():
    a, b = "0192f0c0-1234-7abc-8def-0123456789ab", "0192f0c0-1234-7abc-8def-ba9876543210"
    assert display.short_id(a) == "456789ab" and display.short_id(a) != display.short_id(b)
