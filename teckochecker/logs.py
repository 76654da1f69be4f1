"""Logging for every role: human-readable by default, JSON lines with LOG_FORMAT=json, to LOG_FILE when set.

Each line carries the job id, batch id and task id of the work it belongs to (from `log_context`), so
one job's story can be followed across workers. Secret values are never logged by TeckoChecker.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path

from teckochecker.config import Settings
from teckochecker.files import private_file

CONTEXT_FIELDS = ("job_id", "batch_id", "task_id")
_context: ContextVar[dict[str, object] | None] = ContextVar("teckochecker_log_context", default=None)
TEXT_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s%(context)s"


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Attach fields (job_id, batch_id, task_id) to every log line written inside the block."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get() or {}
        for name in CONTEXT_FIELDS:
            setattr(record, name, context.get(name))
        present = " ".join(f"{name}={context[name]}" for name in CONTEXT_FIELDS if context.get(name) is not None)
        record.context = f" [{present}]" if present else ""
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
            **{name: getattr(record, name, None) for name in CONTEXT_FIELDS},
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def formatter_for(settings: Settings) -> logging.Formatter:
    return JsonFormatter() if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT)


def style_handlers(logger: logging.Logger, settings: Settings) -> None:
    """Give a logger's handlers our format and context, and add LOG_FILE (used on Celery's loggers)."""
    if settings.log_file and not any(getattr(h, "teckochecker_file", False) for h in logger.handlers):
        file_handler = logging.FileHandler(private_file(Path(settings.log_file)), encoding="utf-8")
        file_handler.teckochecker_file = True  # type: ignore[attr-defined]
        logger.addHandler(file_handler)
    for handler in logger.handlers:
        handler.setFormatter(formatter_for(settings))
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())


def configure_logging(settings: Settings) -> None:
    """Set up the root logger for a process that does not bring its own logging (the API, the supervisor)."""
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    style_handlers(root, settings)
