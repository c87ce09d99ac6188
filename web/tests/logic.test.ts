import { describe, expect, it } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { JobState } from "@gen/satlas/v1/job_state_pb.js";
import { IngestService } from "@gen/satlas/v1/ingest_service_pb.js";
import { BadRequestSchema } from "@gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "@gen/google/rpc/status_pb.js";
import { mergeFeed } from "../src/feed";
import { generate, parseValues, PATTERNS, seededRng } from "../src/patterns";
import { codeName, describeError } from "../src/errors";
import { followStream, type StreamStatus } from "../src/stream";
import { apiBase, traceLink } from "../src/api";
import { explain } from "../src/explain";
import { job } from "./fakes";

describe("mergeFeed", () => {
  it("puts the newest first, one row per job, and keeps at most max", () => {
    let rows = mergeFeed([], [job("a", JobState.PENDING, 1), job("b", JobState.PENDING, 1)], 3);
    expect(rows.map((r) => r.jobId)).toEqual(["b", "a"]);
    rows = mergeFeed(rows, [job("a", JobState.RUNNING, 3), job("c", JobState.PENDING, 1), job("d", JobState.PENDING, 1)], 3);
    expect(rows.map((r) => r.jobId)).toEqual(["d", "c", "a"]);
    expect(rows[2].state).toBe(JobState.RUNNING);
  });
  it("ignores versions it has already seen", () => {
    const rows = mergeFeed([job("a", JobState.SUCCEEDED, 5)], [job("a", JobState.RUNNING, 4)]);
    expect(rows[0].state).toBe(JobState.SUCCEEDED);
    const same = mergeFeed(rows, [job("a", JobState.QUEUED, 2), job("a", JobState.RUNNING, 3)]);
    expect(same).toBe(rows);
  });
  it("takes an event delivered twice (at least once, after a fault) as one", () => {
    const rows = mergeFeed([], [job("a", JobState.SUCCEEDED, 5), job("b", JobState.PENDING, 1)]);
    expect(mergeFeed(rows, [job("a", JobState.SUCCEEDED, 5)])).toBe(rows);
  });
  it("stays bounded under a flood", () => {
    const batch = Array.from({ length: 5000 }, (_, i) => job(`j${i}`, JobState.SUCCEEDED, 4));
    const rows = mergeFeed([], batch, 200);
    expect(rows).toHaveLength(200);
    expect(rows[0].jobId).toBe("j4999");
  });
});

describe("patterns", () => {
  it("generates every pattern, finite and of the asked length", () => {
    for (const p of PATTERNS) {
      const v = generate(p, 50, seededRng(1));
      expect(v).toHaveLength(50);
      expect(v.every(Number.isFinite)).toBe(true);
    }
  });
  it("is deterministic for a seed", () => {
    expect(generate("random_walk", 20, seededRng(7))).toEqual(generate("random_walk", 20, seededRng(7)));
  });
  it("parses pasted values and names the bad ones", () => {
    expect(parseValues("1, 2.5\n-3e2 x;4")).toEqual({ values: [1, 2.5, -300, 4], bad: ["x"] });
  });
});

describe("errors", () => {
  it("names codes the gRPC way", () => {
    expect(codeName(Code.InvalidArgument)).toBe("INVALID_ARGUMENT");
    expect(codeName(Code.ResourceExhausted)).toBe("RESOURCE_EXHAUSTED");
  });
  it("decodes grpc-status-details-bin from a grpc-web response into field violations", async () => {
    const status = create(StatusSchema, {
      code: Code.InvalidArgument,
      message: "bad series",
      details: [
        anyPack(BadRequestSchema, create(BadRequestSchema, { fieldViolations: [{ field: "series.values", description: "at least 8 values" }] })),
      ],
    });
    const bin = btoa(String.fromCharCode(...toBinary(StatusSchema, status)));
    const fakeFetch = async () =>
      new Response(null, {
        status: 200,
        headers: {
          "content-type": "application/grpc-web+proto",
          "grpc-status": "3",
          "grpc-message": "bad%20series",
          "grpc-status-details-bin": bin.replace(/=+$/, ""),
        },
      });
    const client = createClient(IngestService, createGrpcWebTransport({ baseUrl: "http://x", fetch: fakeFetch }));
    const err = await client.submitSeries({ models: ["m"] }).catch((e) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect(describeError(err)).toEqual({
      code: "INVALID_ARGUMENT",
      message: "bad series",
      violations: [{ field: "series.values", description: "at least 8 values" }],
    });
  });
});

describe("followStream", () => {
  it("reconnects after an error and reports it", async () => {
    const statuses: StreamStatus["state"][] = [];
    const got: number[] = [];
    let calls = 0;
    const ac = new AbortController();
    await followStream(
      async function* ({ onHeader }) {
        calls += 1;
        if (calls === 1) throw new ConnectError("down", Code.Unavailable);
        onHeader();
        yield calls;
        if (calls === 3) ac.abort();
        throw new ConnectError("reset", Code.Unavailable);
      },
      { signal: ac.signal, onMessage: (m) => got.push(m), onStatus: (s) => statuses.push(s.state), sleep: async () => {} },
    );
    expect(got).toEqual([2, 3]);
    expect(statuses).toEqual(["connecting", "reconnecting", "live", "reconnecting", "live"]);
  });
  it("stops on a permanent error and on a final end", async () => {
    const s1: StreamStatus[] = [];
    await followStream(
      async function* () {
        yield 1;
        throw new ConnectError("no such job", Code.NotFound);
      },
      { signal: new AbortController().signal, onMessage: () => {}, onStatus: (s) => s1.push(s), sleep: async () => {} },
    );
    expect(s1.at(-1)?.state).toBe("failed");
    const s2: StreamStatus[] = [];
    await followStream(
      async function* () {
        yield 1;
      },
      { signal: new AbortController().signal, onMessage: () => {}, onStatus: (s) => s2.push(s), endIsFinal: () => true },
    );
    expect(s2.map((s) => s.state)).toEqual(["connecting", "live", "ended"]);
  });
});

describe("apiBase", () => {
  it("is the page's origin unless ?api= says otherwise", () => {
    expect(apiBase("", "http://h:8080")).toBe("http://h:8080");
    expect(apiBase("?api=http://other:9000/", "http://h:8080")).toBe("http://other:9000");
  });
});

describe("explain", () => {
  const timed = (queue: number, inference: number, total: number, extra = {}) =>
    job("e", JobState.SUCCEEDED, 4, { timings: { queueSeconds: queue, inferenceSeconds: inference, totalSeconds: total }, ...extra });

  it("names the stage that took most of a job's time, and how it compares with the model's p95", () => {
    expect(explain(timed(0.9, 0.05, 1.0), 0.25)).toEqual({
      summary: "4.0× the model's recent p95; most of it waiting for a worker: queue 90 %",
      metric: 'satlas_job_duration_seconds{stage="queue"}, satlas_jobs_in_state{state="queued"}',
    });
    expect(explain(timed(0.001, 0.02, 0.03))?.summary).toBe("most of it on Triton: inference 67 %");
    expect(explain(timed(0.001, 0.002, 0.05))?.summary).toBe("most of it in the mesh (dispatch, claim, report): mesh 94 %");
    expect(explain(timed(0.001, 0.02, 0.03), 1.0)?.summary).not.toContain("p95");
  });

  it("says why a job failed, and nothing for one still running", () => {
    expect(explain(job("p", JobState.FAILED, 9, { attempts: 3, error: "gave up after 3 attempts: the job never finished on a worker" }))).toEqual({
      summary: "poison: started 3 times, never finished on a worker",
      metric: "satlas_jobs_poisoned_total",
    });
    expect(explain(job("t", JobState.FAILED, 5, { error: "Triton stayed unavailable through 7 rounds of retries" }))?.metric).toContain("triton");
    expect(explain(job("r", JobState.RUNNING, 3))).toBeUndefined();
  });
});

describe("traceLink", () => {
  it("puts the trace id into the viewer's URL, and gives none without both", () => {
    expect(traceLink("http://127.0.0.1:16686/trace/{trace_id}", "0af7")).toBe("http://127.0.0.1:16686/trace/0af7");
    expect(traceLink("", "0af7")).toBeUndefined();
    expect(traceLink("http://x/{trace_id}", "")).toBeUndefined();
  });
});
