"""The Celery worker: ``app`` (the task), ``runner`` (a message's jobs on Triton), ``triton_stream``."""
