// The grpc-web clients. The page is served by Envoy, which also routes grpc-web, so the API is
// the page's own origin unless `?api=URL` or VITE_API_BASE says otherwise.
import { createContext, useContext } from "react";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { IngestService } from "@gen/satlas/v1/ingest_service_pb.js";
import { OrchestratorService } from "@gen/satlas/v1/orchestrator_service_pb.js";
import { AnalysisService } from "@gen/satlas/v1/analysis_service_pb.js";
import { authInterceptor } from "./auth";

export type Clients = {
  ingest: Client<typeof IngestService>;
  orchestrator: Client<typeof OrchestratorService>;
  analysis: Client<typeof AnalysisService>;
};

export function apiBase(search: string = window.location.search, origin: string = window.location.origin): string {
  const fromQuery = new URLSearchParams(search).get("api");
  const fromEnv = import.meta.env.VITE_API_BASE as string | undefined;
  return (fromQuery || fromEnv || origin).replace(/\/+$/, "");
}

export function createClients(transport: Transport): Clients {
  return {
    ingest: createClient(IngestService, transport),
    orchestrator: createClient(OrchestratorService, transport),
    analysis: createClient(AnalysisService, transport),
  };
}

export function defaultClients(): Clients {
  return createClients(createGrpcWebTransport({ baseUrl: apiBase(), interceptors: [authInterceptor] }));
}

export const ClientsContext = createContext<Clients | null>(null);

export function useClients(): Clients {
  const c = useContext(ClientsContext);
  if (!c) throw new Error("ClientsContext is not provided");
  return c;
}

// The stack's settings for the page (Envoy answers /config.json): a trace viewer's URL template.
let config: Promise<{ traceUrl: string }> | undefined;

export function stackConfig(): Promise<{ traceUrl: string }> {
  config ??= fetch(`${apiBase()}/config.json`)
    .then((r) => (r.ok ? (r.json() as Promise<{ traceUrl?: unknown }>) : {}))
    .then((c: { traceUrl?: unknown }) => ({ traceUrl: typeof c.traceUrl === "string" ? c.traceUrl : "" }))
    .catch(() => ({ traceUrl: "" }));
  return config;
}

export function traceLink(template: string, traceId: string): string | undefined {
  return template && traceId ? template.replaceAll("{trace_id}", encodeURIComponent(traceId)) : undefined;
}
