"""ingest_svc: IngestService — validate, admit, batch into the orchestrator, return job ids."""
