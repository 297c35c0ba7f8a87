"""Which process a run belongs to, and whether that process is gone (killed, or the machine restarted).

A Prefect flow run or an MLflow run left Running by a process that died cannot say so itself. Runs are
labelled with `this_process()` (host, pid, process start time) when they start; `is_gone` reads such a
label later. The start time tells a pid reused by another process apart from the one that ran.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import psutil

HOST, PID, STARTED = "pretrainflow.host", "pretrainflow.pid", "pretrainflow.process_started"


def this_process() -> dict[str, str]:
    """The label of the current process: host name, pid, start time (whole seconds since the epoch)."""
    return {HOST: socket.gethostname(), PID: str(os.getpid()), STARTED: str(int(psutil.Process().create_time()))}


def on_this_host(label: Mapping[str, str]) -> bool:
    """Whether a label names a process of this machine (only those can be checked)."""
    return label.get(HOST) == socket.gethostname()


def is_gone(label: Mapping[str, str]) -> bool:
    """Whether the labelled process (of this host) has ended; a live process with its pid that started at
    another time is another process."""
    try:
        process = psutil.Process(int(label[PID]))
        return int(process.create_time()) != int(label[STARTED])
    except (psutil.NoSuchProcess, ValueError, KeyError):
        return True


def describe(label: Mapping[str, str]) -> str:
    """'pid 1234 on host' for messages."""
    return f"pid {label.get(PID, '?')} on {label.get(HOST, '?')}"
