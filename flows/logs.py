"""The project's own log lines in the Prefect UI: records of tasks/, model/ and flows/ loggers go to the run.

Prefect sends only its own loggers' records to its API, and PREFECT_LOGGING_EXTRA_LOGGERS is read once,
when prefect is imported: in a worker's flow process that is before any of our code loads. So every flow
calls `send_project_logs()` first. It attaches one handler to the project's loggers (idempotent) that
sends a record made inside a flow or task run (its thread, or a shard worker relayed by tasks.parallel)
to that run's Logs tab, and drops records made outside any run instead of Prefect's warning per line.
It also keeps the traceback out of Prefect's line for a task run that failed on bad input (a failure
tasks.errors.user_message explains): the line's message says it all; bugs keep their tracebacks, and
PRETRAINFLOW_DEBUG=1 (`pretrainflow --debug`) keeps every traceback.
"""

from __future__ import annotations

import logging
import os

from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging.handlers import APILogHandler

from tasks.errors import user_message

PROJECT_LOGGERS = ("tasks", "model", "flows")
PREFECT_RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs")  # where the engines log a run's failure
DEBUG_ENV = "PRETRAINFLOW_DEBUG"


class RunLogHandler(APILogHandler):
    """Prefect's API handler, for records made inside a run; others (a library's own thread) are skipped."""

    def emit(self, record: logging.LogRecord) -> None:
        inside_run = getattr(record, "flow_run_id", None) or FlowRunContext.get() or TaskRunContext.get()
        if inside_run:
            super().emit(record)


class NoTracebackForUserErrors(logging.Filter):
    """Drop the traceback from a record whose exception is a user's error (bad input, a full disk)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and user_message(record.exc_info[1]) is not None:
            record.exc_info, record.exc_text = None, None
        return True


def send_project_logs(level: int = logging.INFO) -> None:
    """Attach RunLogHandler to the project's loggers, at `level` where no level was set, and the traceback
    filter to Prefect's run loggers (once per process)."""
    if os.environ.get(DEBUG_ENV) != "1":
        for name in PREFECT_RUN_LOGGERS:
            logger = logging.getLogger(name)
            if not any(isinstance(f, NoTracebackForUserErrors) for f in logger.filters):
                logger.addFilter(NoTracebackForUserErrors())
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(level)  # a worker's root logger is at WARNING: INFO lines would never reach a handler
        if not any(isinstance(handler, RunLogHandler) for handler in logger.handlers):
            logger.addHandler(RunLogHandler())
