import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { fireEvent, screen, waitFor, within } from "@testing-library/react";
import { JobState } from "@gen/satlas/v1/job_state_pb.js";
import { GetStatsResponseSchema, type WatchJobsRequest } from "@gen/satlas/v1/orchestrator_service_pb.js";
import { BadRequestSchema } from "@gen/google/rpc/error_details_pb.js";
import { Overview } from "../src/components/Overview";
import { JobFeed } from "../src/components/JobFeed";
import { JobDetail } from "../src/components/JobDetail";
import { shortId } from "../src/components/Bits";
import { Models } from "../src/components/Models";
import { Submit } from "../src/components/Submit";
import { RecentResults } from "../src/components/RecentResults";
import { ResultChart, resultLines } from "../src/components/Chart";
import { job, pause, renderWith, TRANSFORMER, VAE } from "./fakes";

const series = (n: number) => ({ values: Array.from({ length: n }, (_, i) => Math.sin(i / 3)) });

describe("Overview", () => {
  it("shows totals, rates and per-model latency from GetStats, polled", async () => {
    let calls = 0;
    renderWith(<Overview intervalMs={50} />, {
      orchestrator: {
        getStats: () => {
          calls += 1;
          return create(GetStatsResponseSchema, {
            totals: { total: BigInt(1000 + calls), succeeded: 990n, failed: 10n },
            throughput: 512.3,
            successRate: 0.99,
            latency: { p50: 0.012, p95: 0.25 },
            queueDepth: 42n,
            activeWorkers: 4,
            models: [{ modelName: "vae_timeseries", totals: { total: 600n }, throughput: 300, successRate: 1, latency: { p50: 0.01, p95: 0.02 } }],
          });
        },
      },
    });
    expect(await screen.findByText("512.3 jobs/s")).toBeTruthy();
    expect(screen.getByText("99.0 %")).toBeTruthy();
    expect(screen.getByText("12.0 ms / 250.0 ms")).toBeTruthy();
    expect(screen.getByText("42")).toBeTruthy();
    expect(screen.getByText("vae_timeseries")).toBeTruthy();
    await waitFor(() => expect(calls).toBeGreaterThan(2));
    await waitFor(() => expect(screen.getByText(String(1000 + calls))).toBeTruthy());
  });
  it("shows the gRPC status when GetStats fails", async () => {
    renderWith(<Overview intervalMs={50} />, {
      orchestrator: {
        getStats: () => {
          throw new ConnectError("orchestrator down", Code.Unavailable);
        },
      },
    });
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain("UNAVAILABLE");
    expect(alert.textContent).toContain("orchestrator down");
  });
});

describe("JobFeed", () => {
  it("renders WatchJobs events in batches, bounded, newest first", async () => {
    renderWith(<JobFeed max={50} />, {
      orchestrator: {
        async *watchJobs(_req, ctx) {
          // A flood: 2000 events for 1000 jobs, as fast as possible, in the batches the page asks for
          // (the last 200 one per message, as a server that predates batching sends them).
          for (let i = 0; i < 900; i += 100) {
            const ids = Array.from({ length: 100 }, (_, k) => `job-${i + k}`);
            yield { jobs: ids.map((id) => job(id, JobState.QUEUED, 2)) };
            yield { jobs: ids.map((id) => job(id, JobState.SUCCEEDED, 4, { timings: { totalSeconds: 0.2 } })) };
          }
          for (let i = 900; i < 1000; i++) {
            yield { job: job(`job-${i}`, JobState.QUEUED, 2) };
            yield { job: job(`job-${i}`, JobState.SUCCEEDED, 4, { timings: { totalSeconds: 0.2 } }) };
          }
          await pause(60_000, ctx.signal);
        },
      },
    });
    // Correctness, not speed: a loaded CI machine may take more than the default second.
    await waitFor(() => expect(screen.getAllByTestId("feed-row")).toHaveLength(50), { timeout: 5000 });
    const first = screen.getAllByTestId("feed-row")[0];
    expect(first.textContent).toContain(shortId("job-999"));
    expect(within(first).getByText("JOB_STATE_SUCCEEDED".replace("JOB_STATE_", ""))).toBeTruthy();
    expect(screen.getByRole("status").textContent).toBe("live");
  });

  it("says it is reconnecting when the stream breaks, then goes live again", async () => {
    let calls = 0;
    renderWith(<JobFeed />, {
      orchestrator: {
        async *watchJobs(_req, ctx) {
          calls += 1;
          if (calls === 1) {
            yield { job: job("first", JobState.RUNNING, 3) };
            await pause(300);
            throw new ConnectError("upstream reset", Code.Unavailable);
          }
          yield { job: job("second", JobState.SUCCEEDED, 4) };
          await pause(60_000, ctx.signal);
        },
      },
    });
    await waitFor(() => expect(screen.getByRole("status").textContent).toBe("live"));
    await waitFor(() => expect(screen.getByRole("status").textContent).toMatch(/reconnecting/));
    await waitFor(() => expect(screen.getByRole("status").textContent).toBe("live"), { timeout: 3000 });
    await waitFor(() => expect(screen.getAllByTestId("feed-row")).toHaveLength(2));
  });

  it("sends the model and state filters to WatchJobs", async () => {
    const requests: WatchJobsRequest[] = [];
    renderWith(<JobFeed models={["vae_timeseries", "transformer_timeseries"]} />, {
      orchestrator: {
        async *watchJobs(req, ctx) {
          requests.push(req);
          await pause(60_000, ctx.signal);
        },
      },
    });
    fireEvent.change(screen.getByLabelText("model filter"), { target: { value: "transformer_timeseries" } });
    fireEvent.click(screen.getByLabelText("failed"));
    await waitFor(() => {
      const last = requests.at(-1)!;
      expect(last.modelNames).toEqual(["transformer_timeseries"]);
      expect(last.states).toEqual([JobState.FAILED]);
      expect(last.batched).toBe(true);
    });
  });
});

describe("JobDetail", () => {
  it("shows the live timeline and, at the end, the result with anomalies marked", async () => {
    const scores = Array.from({ length: 20 }, (_, i) => (i === 17 ? 9 : 0.5));
    const done = job("j1", JobState.SUCCEEDED, 4, {
      series: series(20),
      result: { predictions: series(20).values, anomalyScores: scores, anomalyScore: 3.2, anomalyFlag: true },
      timings: { queueSeconds: 0.01, inferenceSeconds: 0.005, totalSeconds: 0.03 },
      traceId: "0af7651916cd43dd8448eb211c80319c",
    });
    let terminal = false;
    renderWith(<JobDetail jobId="j1" models={[VAE]} />, {
      orchestrator: {
        getStats: () => ({ models: [{ modelName: done.modelName, latency: { p95: 0.01 } }] }),
        getJob: () => ({ job: terminal ? done : job("j1", JobState.PENDING, 1, { series: series(20) }) }),
        async *watchJob() {
          for (const [s, v] of [
            [JobState.PENDING, 1],
            [JobState.QUEUED, 2],
            [JobState.RUNNING, 3],
          ] as const) {
            yield { job: job("j1", s, v) };
            await pause(20);
          }
          terminal = true;
          yield { job: job("j1", JobState.SUCCEEDED, 4, { timings: done.timings, traceId: done.traceId }) };
        },
      },
    });
    const timeline = await screen.findByLabelText("timeline");
    await waitFor(() => expect(within(timeline).getAllByRole("listitem").map((li) => li.textContent?.split(" ")[0])).toEqual(["PENDING", "QUEUED", "RUNNING", "SUCCEEDED"]));
    await waitFor(() => expect(screen.getAllByTestId("anomaly")).toHaveLength(1));
    expect(screen.getByText("anomalous")).toBeTruthy();
    // one point past the point threshold (4.5), not past the series' (2, on the calibrated scale)
    expect(screen.getByText(/1 clean series in 1,585 scores as high/)).toBeTruthy();
    expect(screen.getByRole("status").textContent).toBe("watch: ended");
    expect(screen.getByText("30.0 ms")).toBeTruthy();
    expect(screen.getByTestId("trace-id").textContent).toBe("0af7651916cd43dd8448eb211c80319c");
    // 30 ms against the model's p95 of 10 ms (GetStats), most of it in the mesh (15 of 30 ms).
    await waitFor(() => expect(screen.getByTestId("job-explained").textContent).toContain("3.0× the model's recent p95; most of it in the mesh"));
  });

  it("shows the error of a failed job and NOT_FOUND for an unknown one", async () => {
    renderWith(<JobDetail jobId="bad" />, {
      orchestrator: {
        getJob: () => ({ job: job("bad", JobState.FAILED, 3, { error: "Triton: model not ready" }) }),
        async *watchJob() {
          yield { job: job("bad", JobState.FAILED, 3, { error: "Triton: model not ready" }) };
        },
      },
    });
    expect((await screen.findByTestId("job-error")).textContent).toBe("Triton: model not ready");
  });

  it("reports NOT_FOUND without retrying", async () => {
    let watches = 0;
    renderWith(<JobDetail jobId="nope" />, {
      orchestrator: {
        getJob: () => {
          throw new ConnectError("job nope not found", Code.NotFound);
        },
        // eslint-disable-next-line require-yield
        async *watchJob() {
          watches += 1;
          throw new ConnectError("job nope not found", Code.NotFound);
        },
      },
    });
    expect((await screen.findByRole("alert")).textContent).toContain("NOT_FOUND");
    await waitFor(() => expect(screen.getByRole("status").textContent).toBe("watch: stream failed"));
    expect(watches).toBe(1);
  });
});

describe("Models", () => {
  it("lists models with versions and readiness", () => {
    renderWith(<Models models={[VAE, TRANSFORMER]} />, {});
    expect(screen.getByText("vae_timeseries")).toBeTruthy();
    const cells = screen.getAllByRole("cell").map((c) => c.textContent);
    expect(cells).toContain("ready");
    expect(cells).toContain("not ready");
    expect(cells).toContain("8–4096");
    expect(cells).toContain("flag at 1 % false positives");
    expect(cells).toContain("quantiles 0.1, 0.5, 0.9");
  });
});

describe("Submit", () => {
  it("shows INVALID_ARGUMENT with field violations", async () => {
    renderWith(<Submit models={[VAE, TRANSFORMER]} />, {
      ingest: {
        submitSeries: () => {
          throw new ConnectError("series too short", Code.InvalidArgument, undefined, [
            { desc: BadRequestSchema, value: { fieldViolations: [{ field: "series.values", description: "vae_timeseries needs at least 8 values" }] } },
          ]);
        },
      },
    });
    fireEvent.change(screen.getByLabelText("values"), { target: { value: "1 2 3" } });
    fireEvent.click(screen.getByText("submit"));
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain("INVALID_ARGUMENT");
    expect(alert.textContent).toContain("series too short");
    expect(within(alert).getByText("series.values")).toBeTruthy();
    expect(alert.textContent).toContain("needs at least 8 values");
  });

  it("generates a series, submits it to the chosen models and follows the jobs", async () => {
    const seen: { values: number[]; models: string[]; horizon: number }[] = [];
    renderWith(<Submit models={[VAE, TRANSFORMER]} />, {
      ingest: {
        submitSeries: (req) => {
          seen.push({ values: req.series!.values, models: req.models, horizon: req.horizon });
          return { jobIds: req.models.map((m) => `id-${m}`) };
        },
      },
      orchestrator: {
        getJob: (req) => ({ job: job(req.jobId, JobState.QUEUED, 2) }),
        async *watchJob(req, ctx) {
          yield { job: job(req.jobId, JobState.QUEUED, 2) };
          await pause(60_000, ctx.signal);
        },
      },
    });
    fireEvent.change(screen.getByLabelText("pattern"), { target: { value: "cyclical" } });
    fireEvent.change(screen.getByLabelText("length"), { target: { value: "40" } });
    fireEvent.click(screen.getByText("generate"));
    expect(screen.getByText("40 values")).toBeTruthy();
    fireEvent.click(screen.getByLabelText("transformer_timeseries"));
    fireEvent.change(screen.getByLabelText("forecast points"), { target: { value: "5" } });
    fireEvent.click(screen.getByText("submit"));
    await waitFor(() => expect(screen.getAllByTestId("job-detail")).toHaveLength(1));
    expect(seen).toHaveLength(1);
    expect(seen[0].horizon).toBe(5);
    expect(seen[0].values).toHaveLength(40);
    expect(seen[0].models).toEqual(["vae_timeseries"]);
    expect(screen.getByText("id-vae_timeseries")).toBeTruthy();
    expect((await screen.findAllByText("QUEUED")).length).toBeGreaterThan(0);
  });
});

describe("RecentResults and charts", () => {
  it("charts recent results with their series from GetJob", async () => {
    renderWith(<RecentResults models={[VAE, TRANSFORMER]} count={2} />, {
      orchestrator: {
        listJobs: () => ({ jobs: [job("r1", JobState.SUCCEEDED, 4, { modelName: "transformer_timeseries" }), job("r2", JobState.SUCCEEDED, 4)] }),
        getJob: (req) => ({
          job: job(req.jobId, JobState.SUCCEEDED, 4, {
            modelName: req.jobId === "r1" ? "transformer_timeseries" : "vae_timeseries",
            series: series(30),
            result: req.jobId === "r1" ? { predictions: [1, 2, 3] } : { predictions: series(30).values, anomalyScores: Array(30).fill(5), anomalyFlag: true },
          }),
        }),
      },
    });
    await waitFor(() => expect(screen.getAllByTestId("result-card")).toHaveLength(2));
    expect(screen.getByText("forecast")).toBeTruthy();
    expect(screen.getByText("reconstruction")).toBeTruthy();
    expect(screen.getAllByTestId("anomaly")).toHaveLength(30);
  });

  it("puts a forecast after the series and a reconstruction over its last points", () => {
    const f = resultLines(job("f", JobState.SUCCEEDED, 4, { series: series(10), result: { predictions: [7, 8] } }), TRANSFORMER);
    expect(f.lines[1]).toMatchObject({ start: 9, label: "forecast" });
    expect(f.lines[1].values).toHaveLength(3);
    const r = resultLines(
      job("r", JobState.SUCCEEDED, 4, { series: series(10), result: { predictions: [1, 2, 3, 4], anomalyScores: [0, 0, 9, 0] } }),
      VAE,
    );
    expect(r.lines[1]).toMatchObject({ start: 6, label: "reconstruction" });
    expect(r.markers.map((m) => m.x)).toEqual([8]);
    expect(f.bands).toEqual([]);
  });

  it("draws a forecast's quantiles as a band from the lowest level to the highest", () => {
    const quantiles = [
      { level: 0.1, values: [6, 7] },
      { level: 0.5, values: [7, 8] },
      { level: 0.9, values: [9, 10] },
    ];
    const input = series(10);
    const done = job("q", JobState.SUCCEEDED, 4, { series: input, result: { predictions: [7, 8], quantiles } });
    const { bands } = resultLines(done, TRANSFORMER);
    expect(bands).toEqual([{ lower: [input.values[9], 6, 7], upper: [input.values[9], 9, 10], start: 9, label: "80 % interval (q10–q90)" }]);
    renderWith(<ResultChart job={done} model={TRANSFORMER} />, {});
    const area = document.querySelector("path.band");
    expect(area?.getAttribute("d")).toMatch(/^M.*Z$/);
    expect(screen.getByText("80 % interval (q10–q90)")).toBeTruthy();
  });
});
