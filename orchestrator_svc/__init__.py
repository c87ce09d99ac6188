"""orchestrator_svc: the sole owner of job state (OrchestratorService + internal JobControlService)."""
