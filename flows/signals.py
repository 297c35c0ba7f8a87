"""A stop signal that cannot be lost: SIGTERM is delivered again when its exception was swallowed.

SIGTERM ends a run by raising in the main thread (our CLI raises SystemExit(143); inside a flow run,
Prefect's handler raises TerminationSignal), so the runs end FAILED and Crashed instead of staying
RUNNING. But Python runs signal handlers wherever the main thread happens to be, and when that is a
garbage-collection callback (a weakref finalizer of SQLAlchemy, under MLflow), the exception is printed
as "Exception ignored in ..." and dropped: the run carries on as if never stopped. The hook below sees
that drop (sys.unraisablehook) and sends SIGTERM again a moment later, from a thread, so it lands
somewhere it can end the run.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

_REDELIVERY_DELAY_S = 0.05
_installed = False


def _is_stop(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    if type(exc).__name__ == "TerminationSignal":  # Prefect's (not imported here: the CLI stays light)
        return True
    return isinstance(exc, SystemExit) and exc.code == 128 + signal.SIGTERM


def redeliver_swallowed_sigterm() -> None:
    """Install the hook once per process: a swallowed stop is sent again (its "Exception ignored" traceback is
    not printed: nothing went wrong); other unraisable exceptions go to the hook that was there."""
    global _installed
    if _installed:
        return
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if not _is_stop(unraisable.exc_value):
            previous(unraisable)
            return
        timer = threading.Timer(_REDELIVERY_DELAY_S, os.kill, (os.getpid(), signal.SIGTERM))
        timer.daemon = True  # the stop, not this thread, decides when the process ends
        timer.start()

    sys.unraisablehook = hook
    _installed = True
