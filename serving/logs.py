"""Structured logs: one JSON object per line, with the job id (and chunk) when there is one."""
from __future__ import annotations

import json
import logging
import sys


_FIELDS = ("job_id", "chunk", "stream_id", "principal")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
                 "msg": record.getMessage()}
        for name in _FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)  # the whole traceback, in one JSON line
        return json.dumps(entry)


def setup_logging(level: str = "INFO") -> None:
    """Idempotent: every replica process calls it once from its constructor."""
    root = logging.getLogger("vfx")
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def job_logger(job_id: str) -> logging.LoggerAdapter:
    setup_logging()
    return _MergingAdapter(logging.getLogger("vfx.serving.jobs"), {"job_id": job_id})


class _MergingAdapter(logging.LoggerAdapter):
    """Keeps the adapter's job id and adds a call's own ``extra`` (Python 3.11 replaces it)."""

    def process(self, msg, kwargs):
        kwargs["extra"] = {**self.extra, **kwargs.get("extra", {})}
        return msg, kwargs


