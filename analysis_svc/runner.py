"""Runs a batch of jobs: claim them from the orchestrator, infer on Triton over the process's
stream, report the outcomes. Transient Triton errors are retried with backoff; errors that
retrying cannot fix end the job FAILED with Triton's reason."""

from __future__ import annotations

import logging
import os
import socket
import time

import grpc
from satlas.v1 import job_control_service_pb2 as jc
from satlas.v1 import job_control_service_pb2_grpc as jc_grpc

from analysis_svc import catalogue
from analysis_svc.settings import Settings
from analysis_svc.tensors import ModelInputError, build_request, parse_response
from analysis_svc.triton_stream import TritonRejected, TritonStream, TritonUnavailable
from satkit.server import channel_options

log = logging.getLogger(__name__)
RPC_TIMEOUT_S = 30.0  # waits out an orchestrator restart (wait_for_ready)
RPC_ATTEMPTS = 4
# A call cut by an orchestrator restart fails UNAVAILABLE even with wait_for_ready. Both calls
# are safe to repeat: StartJobs re-claims the same active jobs, ReportResults applies once per job.
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


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
        self.channel = grpc.insecure_channel(settings.orchestrator_addr, options=channel_options())
        self.control = jc_grpc.JobControlServiceStub(self.channel)
        self.catalogue = catalogue.Catalogue(self.triton.stub, settings.triton_timeout_s, settings.catalogue_ttl_s)

    def run(self, jobs: list[dict], claim: bool = True) -> list[dict]:
        """Returns the jobs whose Triton calls stayed unavailable after every retry (the
        caller re-queues them); all others are reported."""
        if claim:
            started = call_orchestrator(
                self.control.StartJobs, jc.StartJobsRequest(job_ids=[j["job_id"] for j in jobs], worker=self.worker)
            )
            keep = set(started.job_ids)
            jobs = [j for j in jobs if j["job_id"] in keep]
        outcomes: list[jc.JobOutcome] = []
        todo = jobs
        for attempt in range(self.settings.triton_retries):
            if not todo:
                break
            if attempt:
                time.sleep(min(0.25 * 2 ** (attempt - 1), 4.0))
            todo = self._infer(todo, outcomes)
        self.report(outcomes)
        return todo

    def _infer(self, jobs: list[dict], outcomes: list[jc.JobOutcome]) -> list[dict]:
        try:
            models = {name: self.catalogue.find(name) for name in {j["model"] for j in jobs}}
        except grpc.RpcError as exc:
            log.warning("Triton unavailable for model metadata: %s", exc.code().name)
            return jobs
        requests, sent = [], []
        for job in jobs:
            model = models[job["model"]]
            if model is None or not model.ready:
                outcomes.append(jc.JobOutcome(job_id=job["job_id"], error=f"model {job['model']!r} is not served"))
                continue
            try:
                requests.append(build_request(model, job["values"]))
                sent.append((job, model))
            except ModelInputError as exc:
                outcomes.append(jc.JobOutcome(job_id=job["job_id"], error=str(exc)))
        t0 = time.perf_counter()
        answers = self.triton.infer_many(requests, self.settings.triton_timeout_s) if requests else []
        elapsed = time.perf_counter() - t0
        retry = []
        for (job, model), answer in zip(sent, answers):
            if isinstance(answer, TritonUnavailable):
                retry.append(job)
            elif isinstance(answer, TritonRejected):
                outcomes.append(jc.JobOutcome(job_id=job["job_id"], error=f"Triton rejected the request: {answer}"))
            else:
                result = parse_response(model, answer, len(job["values"]))
                # Requests of one batch share the wait; each job gets the batch's time.
                outcomes.append(jc.JobOutcome(job_id=job["job_id"], result=result, inference_seconds=elapsed))
        if retry:
            log.warning("Triton unavailable for %d jobs; retrying", len(retry))
        return retry

    def report(self, outcomes: list[jc.JobOutcome]) -> None:
        if outcomes:
            call_orchestrator(self.control.ReportResults, jc.ReportResultsRequest(outcomes=outcomes))

    def fail(self, jobs: list[dict], reason: str) -> None:
        self.report([jc.JobOutcome(job_id=j["job_id"], error=reason) for j in jobs])

    def close(self) -> None:
        self.triton.close()
        self.channel.close()
