"""Runs a batch of jobs: claim them from the orchestrator, infer on Triton over the process's
stream, report the outcomes. Transient Triton errors are retried with backoff; errors that
retrying cannot fix end the job FAILED with Triton's reason."""

from __future__ import annotations

import collections
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
from satlas.internal.v1 import job_control_service_pb2 as jc
from satlas.internal.v1 import job_control_service_pb2_grpc as jc_grpc

from analysis_svc import catalogue
from analysis_svc.settings import Settings
from analysis_svc.tensors import build_batch_request, check_length, parse_batch_response
from analysis_svc.worker import metrics
from analysis_svc.worker.spans import Spans
from analysis_svc.worker.triton_stream import TritonRejected, TritonStream, TritonUnavailable
from satkit.jobs import cut_to_horizon
from satkit.queue import TaskJob
from satkit.server import balanced, channel_options, target
from satkit.tracing import trace_id

log = logging.getLogger(__name__)
RPC_TIMEOUT_S = 30.0  # waits out an orchestrator restart (wait_for_ready)
RPC_ATTEMPTS = 4
# A call cut by an orchestrator restart fails UNAVAILABLE even with wait_for_ready. Both calls
# are safe to repeat: StartJobs re-claims the same active jobs, ReportResults applies once per job.
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def batches(models: dict, jobs: list[TaskJob], alone: bool = False):
    """(model, jobs) per request: jobs of one model and one length together, up to the model's
    max_batch_size, where the model takes several series at once; otherwise one job each."""
    groups: dict[tuple[str, int], list[TaskJob]] = {}
    for job in jobs:
        model = models[job.model_name]
        if alone or not model.multi_series:
            yield model, [job]
        else:
            groups.setdefault((job.model_name, len(job.values)), []).append(job)
    for (name, _), group in groups.items():
        size = max(1, models[name].max_batch_size)
        for i in range(0, len(group), size):
            yield models[name], group[i : i + size]


def call_orchestrator(method, request):
    for attempt in range(RPC_ATTEMPTS):
        try:
            return method(request, timeout=RPC_TIMEOUT_S, wait_for_ready=True)
        except grpc.RpcError as exc:
            if exc.code() not in RETRYABLE or attempt == RPC_ATTEMPTS - 1:
                raise
            log.warning("orchestrator %s; trying again", exc.code().name)
            time.sleep(0.5 * 2**attempt)


class Runner:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.triton = TritonStream(settings.triton_url)
        addr = settings.orchestrator_addr  # one, or the replicas' list (round robin)
        self.channel = grpc.insecure_channel(target(addr), options=channel_options() + balanced(addr))
        self.control = jc_grpc.JobControlServiceStub(self.channel)
        # The claim runs beside the first Triton round in a thread of its own: a gRPC future would
        # start (and end) a channel-polling thread for every message.
        self.claimer = ThreadPoolExecutor(1, thread_name_prefix="claim")
        self.catalogue = catalogue.Catalogue(self.triton.stub, settings.triton_timeout_s, settings.catalogue_ttl_s)

    def run(self, jobs: list[TaskJob], claim: bool = True, traceparent: str = "", requeues: int = 0) -> list[TaskJob]:
        """Returns the jobs whose Triton calls stayed unavailable after every retry (the
        caller re-queues them); all others are reported.

        The claim (StartJobs) goes out first and the first Triton round runs while it commits:
        the claim's wait is off each message's path. Only claimed jobs are reported (a job
        cancelled or finished meanwhile is inferred for nothing, which is rare), and a job is
        counted as started before its inference begins, as the poison check needs."""
        request = jc.StartJobsRequest(job_ids=[j.job_id for j in jobs], worker=self.worker)
        claiming = self.claimer.submit(call_orchestrator, self.control.StartJobs, request) if claim else None
        spans = Spans(jobs, traceparent, requeues)
        try:
            todo = self._run(jobs, claiming, spans)
        except BaseException:
            spans.end(len(jobs))
            raise
        spans.end(len(todo))
        return todo

    def _run(self, jobs: list[TaskJob], claiming, spans: Spans) -> list[TaskJob]:
        outcomes: list[jc.JobOutcome] = []
        todo = self._infer(jobs, outcomes, spans)
        if claiming is not None:
            keep = set(claiming.result().job_ids)  # safe to repeat: a retried claim re-claims active jobs
            outcomes = [o for o in outcomes if o.job_id in keep]
            todo = [j for j in todo if j.job_id in keep]
        # Jobs of a model that is not loaded go back to the queue at once: retrying here would only
        # hold the other jobs' reports for the backoff.
        waiting = [j for j in todo if (m := self.catalogue.models.get(j.model_name)) is not None and not m.ready]
        if waiting:
            todo = [j for j in todo if j not in waiting]
        for attempt in range(1, self.settings.triton_retries):
            if not todo:
                break
            time.sleep(min(0.25 * 2 ** (attempt - 1), 4.0))
            for job in todo:
                metrics.RETRIES.labels(job.model_name).inc()
            todo = self._infer(todo, outcomes, spans)
        self.report(outcomes, jobs)
        return todo + waiting

    def _infer(self, jobs: list[TaskJob], outcomes: list[jc.JobOutcome], spans: Spans | None = None,
               alone: bool = False) -> list[TaskJob]:
        """One request per model and length for models that take several series at once (one
        request costs Triton and this process about as much as one series does), one per job
        otherwise or when ``alone``. Returns the jobs to try again."""
        spans = spans or Spans([], on=False)
        try:
            models = {name: self.catalogue.find(name) for name in {j.model_name for j in jobs}}
        except grpc.RpcError as exc:
            log.warning("Triton unavailable for model metadata: %s", exc.code().name)
            return jobs
        runnable, waiting = [], []
        for job in jobs:
            model = models[job.model_name]
            if model is not None and not model.ready:  # unloaded or loading (ModelAdminService): wait
                waiting.append(job)
                continue
            if model is None:
                outcomes.append(jc.JobOutcome(job_id=job.job_id, error=f"model {job.model_name!r} is not served"))
            elif problem := check_length(model, len(job.values)):
                outcomes.append(jc.JobOutcome(job_id=job.job_id, error=problem))
            else:
                runnable.append(job)
                continue
            spans.settled(job.model_name, [job], {job.job_id: outcomes[-1]})
        requests, carried = [], []  # carried[i]: (model, the jobs requests[i] carries)
        for model, batch in batches(models, runnable, alone):
            requests.append(build_batch_request(model, [j.values for j in batch]))
            carried.append((model, batch))
        answers = self.triton.infer_many(requests, self.settings.triton_timeout_s) if requests else []
        retry, single = [], []
        stale = self._stale({m.name for (m, _), (a, _) in zip(carried, answers) if isinstance(a, TritonRejected)})
        for (model, batch), (answer, seconds) in zip(carried, answers):
            if isinstance(answer, TritonUnavailable) or (isinstance(answer, TritonRejected) and model.name in stale):
                retry.extend(batch)  # (a stale description: the next round builds the request anew)
                spans.request(model.name, batch, seconds, "UNAVAILABLE")
            elif isinstance(answer, TritonRejected) and len(batch) > 1:
                single.extend(batch)  # one bad series must not fail the others: again, one per request
                spans.request(model.name, batch, seconds, "INVALID_ARGUMENT")
            elif isinstance(answer, TritonRejected):
                outcomes.append(jc.JobOutcome(job_id=batch[0].job_id, error=f"Triton rejected the request: {answer}"))
                spans.request(model.name, batch, seconds, "INVALID_ARGUMENT", {batch[0].job_id: outcomes[-1]})
            else:
                metrics.BATCH_SIZE.labels(model.name).observe(len(batch))
                metrics.TRITON_SECONDS.labels(model.name).observe(seconds)
                results = parse_batch_response(model, answer, [len(j.values) for j in batch])
                for job, result in zip(batch, results):
                    cut_to_horizon(result, model.horizon, job.horizon)
                # Each job's time is that of the request that carried it, on its own model.
                done = [jc.JobOutcome(job_id=j.job_id, result=r, inference_seconds=seconds)
                        for j, r in zip(batch, results)]
                spans.request(model.name, batch, seconds, outcomes={o.job_id: o for o in done})
                outcomes.extend(done)
        if single:
            retry.extend(self._infer(single, outcomes, spans, alone=True))
        retry.extend(waiting)
        if retry:
            log.warning("Triton unavailable for %d jobs; retrying", len(retry))
        return retry

    def _stale(self, names: set[str]) -> set[str]:
        """Of the models Triton refused a request for, those whose description changed since it was
        read (reloaded with a new config): not the series' fault, so tried again."""
        if not names:
            return set()
        before = {n: self.catalogue.models.get(n) for n in names}
        try:
            after = self.catalogue.get(refresh=True)
        except grpc.RpcError:
            return set()
        return {n for n in names if after.get(n) != before[n]}

    def report(self, outcomes: list[jc.JobOutcome], jobs: list[TaskJob]) -> None:
        if outcomes:
            call_orchestrator(self.control.ReportResults, jc.ReportResultsRequest(outcomes=outcomes))
            by_id = {j.job_id: j for j in jobs}
            counts = collections.Counter((by_id[o.job_id].model_name, "error" if o.error else "ok") for o in outcomes)
            for labels, n in counts.items():  # one inc a label set: each is a write to a shared file
                metrics.JOBS.labels(*labels).inc(n)
            for o in outcomes:
                job = by_id[o.job_id]
                if o.error:
                    extra = {"job_id": o.job_id, "model": job.model_name}
                    extra |= {"trace_id": trace_id(job.traceparent)} if job.traceparent else {}
                    log.warning("job failed: %s", o.error, extra=extra)

    def fail(self, jobs: list[TaskJob], reason: str) -> None:
        self.report([jc.JobOutcome(job_id=j.job_id, error=reason) for j in jobs], jobs)

    def close(self) -> None:
        self.claimer.shutdown(wait=False)
        self.triton.close()
        self.channel.close()
