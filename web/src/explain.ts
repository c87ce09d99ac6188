// What explains a job's time or failure, from its own stage timings (the same figures as the
// satlas_job_duration_seconds histograms) and, when known, its model's recent p95 (GetStats).
import type { Job } from "@gen/satlas/v1/job_pb.js";
import { JobState } from "@gen/satlas/v1/job_state_pb.js";

export interface Explanation {
  summary: string;
  metric: string; // the Prometheus query that shows the cause across the mesh
}

const POISON = "gave up after";

export function explain(job: Job, modelP95Seconds = 0): Explanation | undefined {
  if (job.state === JobState.FAILED) {
    if (job.error.startsWith(POISON))
      return { summary: `poison: started ${job.attempts} times, never finished on a worker`, metric: "satlas_jobs_poisoned_total" };
    if (/triton/i.test(job.error))
      return { summary: "Triton refused the request or stayed unavailable", metric: "satlas_worker_triton_retries_total, nv_inference_request_failure" };
    return { summary: "the model or the series was refused", metric: 'satlas_jobs_finished_total{state="failed"}' };
  }
  if (job.state !== JobState.SUCCEEDED || !job.timings) return undefined;
  const { queueSeconds: queue, inferenceSeconds: inference, totalSeconds: total } = job.timings;
  if (total <= 0) return undefined;
  // Dispatch, the claim, the report and the commits: what neither the queue nor Triton took.
  const mesh = Math.max(0, total - queue - inference);
  const stages: [string, number, string, string][] = [
    ["queue", queue, "waiting for a worker", 'satlas_job_duration_seconds{stage="queue"}, satlas_jobs_in_state{state="queued"}'],
    ["inference", inference, "on Triton", "satlas_worker_triton_request_seconds, nv_inference_queue_duration_us"],
    ["mesh", mesh, "in the mesh (dispatch, claim, report)", 'grpc_server_handling_seconds{grpc_service="satlas.internal.v1.JobControlService"}'],
  ];
  const [name, seconds, where, metric] = stages.reduce((a, b) => (b[1] > a[1] ? b : a));
  const share = Math.round((100 * seconds) / total);
  const slow = modelP95Seconds > 0 && total > modelP95Seconds ? `${(total / modelP95Seconds).toFixed(1)}× the model's recent p95; ` : "";
  return { summary: `${slow}most of it ${where}: ${name} ${share} %`, metric };
}
