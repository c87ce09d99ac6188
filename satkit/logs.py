"""Structured logs: one JSON object a line (LOG_FORMAT=json)
or readable text (LOG_FORMAT=text, the default). The job id in ``job_id_var`` rides on every record."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

from satkit.settings import LOG_FORMAT, LOG_LEVEL

job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": _service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None) or job_id_var.get()
        if job_id:
            entry["job_id"] = job_id
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD and k != "job_id"})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {record.levelname[0]} {_service}: "
        line += record.getMessage()
        job_id = getattr(record, "job_id", None) or job_id_var.get()
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and k != "job_id"}
        if job_id:
            extra = {"job_id": job_id, **extra}
        if extra:
            line += " " + " ".join(f"{k}={v}" for k, v in extra.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


_service = "satlas"


def setup(service: str, level: str | None = None) -> None:
    """Configure the root logger once per process."""
    global _service
    _service = service
    handler = logging.StreamHandler(sys.stderr)
    fmt = LOG_FORMAT.read()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or LOG_LEVEL.read()).upper())
