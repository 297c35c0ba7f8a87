"""Start-up time, memory and a clean stop of `pretrainflow serve`, as a user types it; prints, asserts nothing.

Every repetition runs the installed console script, `pretrainflow serve --prefect-port 0 --mlflow-port 0`,
as a fresh process in a scratch folder (its MLflow store and data land there) with its own PREFECT_HOME:
the first repetition finds an empty Prefect database (a new machine), the others the database the
first one left (every later start). It waits for the "pretrainflow is served" line, with --trigger runs a
pipeline deployment with that preset (`pretrainflow trigger pipeline --config PRESET --wait`: the tiny
pipeline takes about a minute), keeps sampling the process tree for --settle seconds, sends Ctrl-C (SIGINT)
and waits for every process to end.

Per repetition: start-up wall seconds (launch to the served line), CPU seconds of the process tree up to
that line (user+sys of every live process and of the children it reaped), the process count, the summed
resident memory (RSS) and proportional memory (PSS: shared pages counted once) of the tree at its peak,
the stop's wall seconds, and the lines in its terminal that say Traceback or "database is locked". The
memory peak is serve's own processes': a triggered run's flow process (a child of the worker) is counted
apart, as the run's peak.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

SERVED_LINE = "pretrainflow is served"
BIN = Path(sys.executable).parent


@dataclass
class Sample:
    start_wall_s: float
    start_cpu_s: float
    processes: int
    peak_rss_mib: float
    peak_pss_mib: float
    stop_wall_s: float
    tracebacks: int
    locked: int
    run_wall_s: float = float("nan")  # the triggered pipeline, trigger to its end
    run_peak_rss_mib: float = 0.0


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _split_runs(tree: list[psutil.Process]) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """(serve's own processes, flow-run processes the worker started, with their children)."""
    runs: set[int] = set()
    for process in tree:
        try:
            if "prefect worker" in " ".join(process.cmdline()):
                runs.update(child.pid for child in process.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    return [p for p in tree if p.pid not in runs], [p for p in tree if p.pid in runs]


def _cpu_s(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def _memory_mib(processes: list[psutil.Process]) -> tuple[float, float]:
    rss = pss = 0
    for process in processes:
        try:
            info = process.memory_full_info()
            rss += info.rss
            pss += info.pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return rss / 2**20, pss / 2**20


def run_once(prefect_home: Path, workdir: Path, settle_s: float, timeout_s: float, trigger: str | None) -> Sample:
    log_path = workdir / f"serve-{time.time_ns()}.log"
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "DO_NOT_TRACK": "true",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    started = time.monotonic()
    with log_path.open("w") as log:
        # Ctrl-C's SIGINT must reach it even when this benchmark runs in the background (where SIGINT is ignored)
        child = subprocess.Popen([str(BIN / "pretrainflow"), "serve", "--prefect-port", "0", "--mlflow-port", "0"],
                                 cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    root = psutil.Process(child.pid)
    peak_rss = peak_pss = run_peak = 0.0
    count = 0
    start_wall = start_cpu = float("nan")
    run_wall: float | None = None
    settle_until = None
    triggered: subprocess.Popen | None = None
    while child.poll() is None:
        own, runs = _split_runs(_tree(root))
        rss, pss = _memory_mib(own)
        peak_rss, peak_pss, count = max(peak_rss, rss), max(peak_pss, pss), max(count, len(own))
        run_peak = max(run_peak, _memory_mib(runs)[0])
        if settle_until is None and SERVED_LINE in log_path.read_text():
            start_wall, start_cpu = time.monotonic() - started, _cpu_s(own)
            settle_until = time.monotonic() + settle_s
            if trigger:
                api = next(line.split("(API ")[1].split(",")[0] for line in log_path.read_text().splitlines()
                           if "(API " in line)
                triggered_at = time.monotonic()
                triggered = subprocess.Popen([str(BIN / "pretrainflow"), "trigger", "pipeline", "--config", trigger,
                                              "--wait"], cwd=workdir, env={**env, "PREFECT_API_URL": api},
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if triggered is not None and run_wall is None and triggered.poll() is not None:
            run_wall = time.monotonic() - triggered_at
            if triggered.returncode != 0:
                print(f"  the triggered run did not complete (exit {triggered.returncode})")
            settle_until = time.monotonic() + settle_s
        waiting_for_run = triggered is not None and run_wall is None
        if settle_until is not None and time.monotonic() > settle_until and not waiting_for_run:
            break
        if time.monotonic() - started > timeout_s:
            print(f"  not served after {timeout_s:.0f} s; see {log_path}")
            break
        time.sleep(0.25)
    stopping = time.monotonic()
    child.send_signal(signal.SIGINT)
    child.wait(timeout=120)
    stop_wall = time.monotonic() - stopping
    leftovers = [p for p in _tree(root) if p.is_running()]
    if leftovers:
        print(f"  {len(leftovers)} processes outlived the stop: {[p.pid for p in leftovers]}")
    text = log_path.read_text()
    if "Traceback" in text or "database is locked" in text:
        print(f"  its terminal ({log_path}) says:\n" + "\n".join("    " + line for line in text.splitlines()[-40:]))
    return Sample(start_wall, start_cpu, count, peak_rss, peak_pss, stop_wall, text.count("Traceback"),
                  text.count("database is locked"), float("nan") if run_wall is None else run_wall, run_peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="starts in all: the first on an empty Prefect database")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to keep sampling after the served line")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (terminal logs, stores)")
    parser.add_argument("--trigger", metavar="PRESET", default=None,
                        help="run the pipeline deployment with this preset (e.g. tiny) in every start, and wait for it")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    try:
        samples = []
        for i in range(args.repeat):
            sample = run_once(scratch / "prefect-home", scratch, args.settle, args.timeout, args.trigger)
            samples.append(sample)
            kind = "empty database" if i == 0 else "existing database"
            print(f"run {i + 1} ({kind}): start-up {sample.start_wall_s:.1f} s wall, {sample.start_cpu_s:.1f} CPU-s; "
                  f"{sample.processes} processes, peak RSS {sample.peak_rss_mib:,.0f} MiB, "
                  f"peak PSS {sample.peak_pss_mib:,.0f} MiB; stop {sample.stop_wall_s:.1f} s; "
                  + (f"run {sample.run_wall_s:.0f} s, run peak RSS {sample.run_peak_rss_mib:,.0f} MiB; "
                     if args.trigger else "")
                  + f"tracebacks {sample.tracebacks}, 'database is locked' {sample.locked}", flush=True)
        warm = samples[1:] or samples
        for name, unit in (("start_cpu_s", "CPU-s"), ("start_wall_s", "s wall"), ("peak_pss_mib", "MiB PSS"),
                           ("peak_rss_mib", "MiB RSS")):
            values = [getattr(s, name) for s in warm]
            print(f"start-up on an existing database, {name}: median {statistics.median(values):,.1f} {unit} "
                  f"(min {min(values):,.1f}, max {max(values):,.1f}, n={len(values)})")
    finally:
        if args.keep:
            print(f"scratch folder kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
