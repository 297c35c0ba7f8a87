"""Failures users cause and can fix, told apart from bugs.

An `InputError` is raised for what a user's input or machine did wrong: a damaged or mislabelled source
file, a missing column, a corrupt archive or artifact, an empty or degenerate result, a missing upstream
artifact. Its message names the file (and row or record where there is one) and says what to do. The
command line prints it as one `error:` block with exit code 2 and keeps the traceback for `--debug` and
the error log; a Prefect flow run fails with the same message as its state message, and its task runs
log it without a traceback. Every other exception is a bug and keeps its traceback everywhere.
"""

from __future__ import annotations

import errno
import os
import traceback
from datetime import datetime, timezone
from pathlib import Path

from model.errors import ModelInputError

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
ERROR_LOG_ENV = "PRETRAINFLOW_ERROR_LOG"
_LOG_BYTES = 10 * 2**20


class InputError(ValueError):
    """A failure caused by the user's input or machine, with a message naming the file and the remedy.

    A ValueError, so code that caught the ValueError a source reader raised before keeps working."""

    # whether the command line points at the traceback: not for a refusal before any work (a bad config, a
    # missing upstream artifact), whose traceback shows only where it was checked
    traceback_helps = True


def user_message(err: BaseException | None) -> str | None:
    """What to tell the user about `err` if a user can cause and fix it, else None (a bug: keep the traceback).

    InputError and model/'s ModelInputError, with their subclasses; a full disk (ENOSPC, EDQUOT), named
    with the file being written.
    """
    if err is None:
        return None
    if isinstance(err, (InputError, ModelInputError)):
        return str(err)
    if isinstance(err, OSError) and err.errno in _DISK_FULL:
        where = f" writing {err.filename}" if err.filename else ""
        return (f"no space left on the device{where}: free disk space (or point data_root at a bigger disk) and "
                f"rerun: finished pieces are kept and the stage resumes where it stopped")
    return None


def error_log() -> Path:
    """Where tracebacks of users' errors go: $PRETRAINFLOW_ERROR_LOG, else ~/.cache/pretrainflow/errors.log."""
    return Path(os.environ.get(ERROR_LOG_ENV) or Path.home() / ".cache" / "pretrainflow" / "errors.log")


def record_traceback(err: BaseException, context: str = "") -> Path | None:
    """Append err's traceback to the error log (kept under ~10 MB: the older half is renamed .1); its path,
    or None when it cannot be written (a full disk must not hide the error being reported)."""
    path = error_log()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file() and path.stat().st_size > _LOG_BYTES:
            os.replace(path, path.with_name(path.name + ".1"))
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with path.open("a") as log:
            log.write(f"--- {stamp} pid {os.getpid()} {context}\n{''.join(traceback.format_exception(err))}\n")
    except OSError:
        return None
    return path


class ConfigError(InputError):
    """One message listing every problem found in a config (tasks/config.py finds them)."""

    traceback_helps = False

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in config {source}:\n{lines}")
