"""analysis_svc: the models' side of Satlas, in two processes that share this package.

- the gRPC server, ``python -m analysis_svc`` (``__main__``, ``service``): AnalysisService's
  ``Analyze`` (one series, answered at once) and ``ListModels``, straight from Triton;
- the Celery worker, ``celery -A analysis_svc.worker.app:app worker -Q satlas.jobs``
  (``worker/``): takes the orchestrator's RunJobsTask messages, runs their jobs on Triton in
  batches (``worker.runner``, over one stream per process: ``worker.triton_stream``) and reports
  them back with JobControlService.ReportResults.

Both read ``settings``, describe the models with ``catalogue`` (from Triton's metadata and
config) and turn series into Triton tensors and back with ``tensors``.
"""
