"""analysis_svc: runs jobs on Triton (Celery worker) and serves AnalysisService."""
