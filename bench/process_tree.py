"""Measure one command run as a fresh process: wall time, CPU time of its whole process tree, peak memory.

    measured = measure([".venv/bin/pretrainflow", "task", ...], log=Path("run.log"), env=os.environ.copy())
    measured.cpu_seconds, measured.wall_seconds, measured.peak_rss_mb, measured.stdout

- CPU seconds: user + system time of the command and every process it started, interpreter start and
  imports included. This process makes itself a child subreaper (Linux prctl PR_SET_CHILD_SUBREAPER), so
  a descendant that outlives its parent (a multiprocessing fork server and its workers, which the
  command never waits for) is re-parented to this process instead of to init. After the command exits,
  those orphans are waited for too, and the CPU time of everything reaped is the difference of
  getrusage(RUSAGE_CHILDREN) before and after. On a shared machine this is the figure that other load
  changes least.
- Wall seconds: from the start of the command until it and its orphans have exited.
- Peak RSS: the largest sum of resident memory over the command's process tree (orphans included),
  sampled every 50 ms with psutil. Pages shared between processes (a fork server's copy-on-write
  pages) are counted once per process, as RSS counts them.

Linux only (prctl). stderr goes to the log file; stdout comes back as text.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
SAMPLE_SECONDS = 0.05  # RSS sampling period
ORPHAN_WAIT_SECONDS = 120  # how long descendants may outlive the command before it counts as a failure
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


@dataclass
class Measured:
    """One run of a command: what it printed, its wall seconds, CPU seconds and peak tree RSS."""

    stdout: str
    wall_seconds: float
    cpu_seconds: float  # user + system of the command and all its descendants, start-up included
    peak_rss_mb: float  # largest sum of RSS over the process tree, MiB

    @property
    def result(self) -> dict:
        """The last line of stdout read as JSON (the convention of the bench's child scripts)."""
        lines = self.stdout.strip().splitlines()
        if not lines:
            raise ValueError("the command printed nothing on stdout; a JSON line was expected")
        return json.loads(lines[-1])


def become_subreaper() -> None:
    """Make orphaned descendants of this process its children (so their CPU time can be collected)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed: the benchmarks need Linux")


def _tree(roots: list[psutil.Process]) -> list[psutil.Process]:
    """roots and all their descendants (those still there)."""
    processes = []
    for root in roots:
        try:
            processes += [root, *root.children(recursive=True)]
        except psutil.Error:  # ended since it was listed
            pass
    return processes


def _rss_bytes(processes: list[psutil.Process]) -> int:
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:  # ended, or a zombie, since it was listed
            pass
    return total


def _new_children(known: set[int]) -> list[psutil.Process]:
    """This process's children that were not there before the command: the command and its orphans."""
    return [child for child in psutil.Process().children() if child.pid not in known]


def _reap_orphans(known: set[int], command: list[str]) -> None:
    """Wait for every descendant that outlived the command (re-parented here); it is killed after
    ORPHAN_WAIT_SECONDS and the measurement fails."""
    deadline = time.monotonic() + ORPHAN_WAIT_SECONDS
    while orphans := _new_children(known):
        for orphan in orphans:
            try:
                reaped, _ = os.waitpid(orphan.pid, os.WNOHANG)
            except ChildProcessError:  # already reaped
                continue
            if reaped == 0 and time.monotonic() > deadline:
                names = [" ".join(p.cmdline()[:3]) for p in _tree(orphans) if p.is_running()]
                for process in _tree(orphans):
                    process.kill()
                for process in orphans:
                    os.waitpid(process.pid, 0)
                raise RuntimeError(f"{' '.join(command)}: processes outlived it by {ORPHAN_WAIT_SECONDS} s "
                                   f"and were killed: {names}")
        time.sleep(0.01)


def measure(command: list[str], log: Path, env: dict[str, str], cwd: Path = REPO) -> Measured:
    """Run command as a fresh process tree and measure it (see the module docstring); stderr goes to log.

    Raises RuntimeError with the end of the log when the command fails.
    """
    become_subreaper()
    known = {child.pid for child in psutil.Process().children()}
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with log.open("w") as err:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True, cwd=cwd, env=env)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(SAMPLE_SECONDS):
            peak = max(peak, _rss_bytes(_tree(_new_children(known))))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, _ = child.communicate()
        _reap_orphans(known, command)
    finally:
        done.set()
        sampler.join()
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime - usage_before.ru_utime - usage_before.ru_stime
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {child.returncode}); see {log}:\n"
                           + "\n".join(log.read_text().splitlines()[-15:]))
    return Measured(stdout, wall, cpu, peak / 2**20)
