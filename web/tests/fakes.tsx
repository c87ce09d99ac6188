// An in-memory backend for component tests: the real generated clients over connect's router
// transport, with handlers written per test.
import type { ReactNode } from "react";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { createRouterTransport, type ServiceImpl } from "@connectrpc/connect";
import { render } from "@testing-library/react";
import { IngestService } from "@gen/satlas/v1/ingest_service_pb.js";
import { OrchestratorService } from "@gen/satlas/v1/orchestrator_service_pb.js";
import { AnalysisService, ModelSchema, type Model } from "@gen/satlas/v1/analysis_service_pb.js";
import { JobSchema, type Job } from "@gen/satlas/v1/job_pb.js";
import { JobState } from "@gen/satlas/v1/job_state_pb.js";
import { ClientsContext, createClients } from "../src/api";

export type Handlers = {
  ingest?: Partial<ServiceImpl<typeof IngestService>>;
  orchestrator?: Partial<ServiceImpl<typeof OrchestratorService>>;
  analysis?: Partial<ServiceImpl<typeof AnalysisService>>;
};

export function fakeClients(h: Handlers) {
  return createClients(
    createRouterTransport(({ service }) => {
      service(IngestService, h.ingest ?? {});
      service(OrchestratorService, h.orchestrator ?? {});
      service(AnalysisService, h.analysis ?? {});
    }),
  );
}

export function renderWith(ui: ReactNode, h: Handlers) {
  return render(<ClientsContext.Provider value={fakeClients(h)}>{ui}</ClientsContext.Provider>);
}

export function job(id: string, state: JobState, version: number, extra: MessageInitShape<typeof JobSchema> = {}): Job {
  const init = { modelName: "vae_timeseries", ...(extra as object), jobId: id, state, version: BigInt(version) };
  return create(JobSchema, init as MessageInitShape<typeof JobSchema>);
}

export const VAE: Model = create(ModelSchema, {
  name: "vae_timeseries",
  versions: ["1"],
  ready: true,
  task: "reconstruction",
  window: 128,
  minLength: 8,
  maxLength: 4096,
  backend: "onnxruntime",
  // the series score is calibrated (-log10 of a tail probability); points have their own threshold
  parameters: { anomaly_threshold: "2", anomaly_false_positive_rate: "0.01", point_anomaly_threshold: "4.5" },
});

export const TRANSFORMER: Model = create(ModelSchema, {
  name: "transformer_timeseries",
  versions: ["1"],
  ready: false,
  task: "forecast",
  window: 128,
  horizon: 8,
  minLength: 8,
  maxLength: 4096,
  backend: "onnxruntime",
  parameters: { quantile_levels: "0.1,0.5,0.9" },
});

/** Resolves after `ms`, or at once when the call is cancelled. */
export function pause(ms: number, signal?: AbortSignal) {
  return new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => (clearTimeout(t), resolve()));
  });
}
