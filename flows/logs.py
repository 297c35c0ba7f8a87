"""The project's own log lines in the Prefect UI: records of tasks/, model/ and flows/ loggers go to the run.

Prefect sends only its own loggers' records to its API, and PREFECT_LOGGING_EXTRA_LOGGERS is read once,
when prefect is imported: in a worker's flow process that is before any of our code loads. So every flow
calls `send_project_logs()` first. It attaches one handler to the project's loggers (idempotent) that
sends a record made inside a flow or task run (its thread, or a shard worker relayed by tasks.parallel)
to that run's Logs tab, and drops records made outside any run instead of Prefect's warning per line.
"""

from __future__ import annotations

import logging

from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging.handlers import APILogHandler

PROJECT_LOGGERS = ("tasks", "model", "flows")


class RunLogHandler(APILogHandler):
    """Prefect's API handler, for records made inside a run; others (a library's own thread) are skipped."""

    def emit(self, record: logging.LogRecord) -> None:
        inside_run = getattr(record, "flow_run_id", None) or FlowRunContext.get() or TaskRunContext.get()
        if inside_run:
            super().emit(record)


def send_project_logs(level: int = logging.INFO) -> None:
    """Attach RunLogHandler to the project's loggers, at `level` where no level was set (once per process)."""
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(level)  # a worker's root logger is at WARNING: INFO lines would never reach a handler
        if not any(isinstance(handler, RunLogHandler) for handler in logger.handlers):
            logger.addHandler(RunLogHandler())
