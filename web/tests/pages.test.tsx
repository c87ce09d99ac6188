import { describe, expect, it } from "vitest";
import { act, screen, waitFor } from "@testing-library/react";
import { App } from "../src/App";
import { Dashboard } from "../src/Dashboard";
import { pause, renderWith, TRANSFORMER, VAE } from "./fakes";
import type { Handlers } from "./fakes";

const backend: Handlers = {
  analysis: { listModels: () => ({ models: [VAE, TRANSFORMER] }) },
  orchestrator: {
    getStats: () => ({ throughput: 3 }),
    listJobs: () => ({ jobs: [] }),
    async *watchJobs(_r, ctx) {
      await pause(60_000, ctx.signal);
    },
  },
};

describe("pages", () => {
  it("dashboard.html shows overview, live jobs and recent results", async () => {
    renderWith(<Dashboard />, backend);
    expect(screen.getByText("Overview")).toBeTruthy();
    expect(screen.getByText(/Live jobs/)).toBeTruthy();
    expect(screen.getByText("Recent results")).toBeTruthy();
    await screen.findByText("3.0 jobs/s");
    // The model filter is filled from ListModels.
    await waitFor(() => expect(screen.getByRole("option", { name: "transformer_timeseries" })).toBeTruthy());
  });

  it("the app routes by hash", async () => {
    window.location.hash = "#/models";
    renderWith(<App />, backend);
    await screen.findByText("not ready");
    await act(async () => {
      window.location.hash = "#/submit";
      window.dispatchEvent(new HashChangeEvent("hashchange"));
    });
    expect(screen.getByText("Submit a series")).toBeTruthy();
    window.location.hash = "";
  });
});
