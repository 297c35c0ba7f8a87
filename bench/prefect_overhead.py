"""What `pretrainflow run STAGE` (a Prefect flow, tracked in MLflow) costs over the same stage's plain work
(`pretrainflow task STAGE`), as a user types the commands; prints, asserts nothing.

Per stage (tokenize, instances of the demo preset) it runs, as fresh processes, alternating, --reps times:

  floor      `pretrainflow config --config demo`: Python, the CLI and the config classes, no stage at all
  task       `pretrainflow task STAGE --output DIR`: the stage's work, no Prefect, no MLflow (it always builds)
  run-cached `pretrainflow run STAGE`: the flow finds the artifact and returns (a short MLflow run says so)
  run-built  `pretrainflow run STAGE` on a fresh data root holding only its inputs: the flow builds it

Everything runs in a scratch folder: its own data root (the corpus, tokenize and instances artifacts of
--data-root copied in), MLflow store (./mlflow.db) and PREFECT_HOME. One unmeasured `run` of each stage
first creates both stores and builds whatever artifact the code's ids name that --data-root lacks, so
every measured command finds what a user's next command would.

Figures per command (bench/process_tree.py): CPU seconds of the whole process tree (user+sys of the command
and every descendant, Prefect's temporary API server included; the bench is a child subreaper and reads
RUSAGE_CHILDREN after reaping them all), wall seconds, and the peak of the tree's summed RSS (50 ms samples).
Printed as median (min-max), then differences of the medians.

--served runs the `run` commands against one `prefect server start` (as `pretrainflow serve` runs it)
instead of the temporary server each command starts by default. The server is not part of a command's
tree, so the CPU seconds it spends during each command are added to that command's figure (psutil) and
shown apart; its start-up, paid once, is printed but not added.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

if __package__ in (None, ""):  # run as a file (python bench/prefect_overhead.py): make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.process_tree import measure

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
COMMANDS = ("floor", "task", "run-cached", "run-built")
STAGES = ("corpus", "tokenize", "instances")  # the artifacts copied into the scratch data root
INPUTS = {"tokenize": ("corpus",), "instances": ("corpus", "tokenize")}  # what a fresh data root for a build needs
ENV = {"DO_NOT_TRACK": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
       "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}


@dataclass
class Figures:
    """One command's cost; server_cpu_s is the part a served Prefect spent (0 for the temporary server)."""

    cpu_s: float
    wall_s: float
    peak_rss_mib: float
    server_cpu_s: float = 0.0


def copy_artifacts(source: Path, root: Path, stages: tuple[str, ...]) -> Path:
    """Copy every artifact folder of `stages` under source into the data root `root`."""
    for stage in stages:
        for artifact in sorted((source / stage).glob("*")) if (source / stage).is_dir() else []:
            if artifact.is_dir() and not artifact.name.startswith("."):  # not a staging folder
                shutil.copytree(artifact, root / stage / artifact.name)
    return root


def tree_cpu_s(process: psutil.Process) -> float:
    """User+sys seconds so far of a process and its descendants."""
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def start_prefect_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str, float]:
    """`prefect server start` on a free loopback port; (process, API URL, seconds until healthy)."""
    port = _free_port()
    started = time.monotonic()
    with log.open("w") as out:
        server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port),
                                   "--analytics-off"], env=env, stdout=out, stderr=subprocess.STDOUT)
    api_url = f"http://127.0.0.1:{port}/api"
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"prefect server exited with {server.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return server, api_url, time.monotonic() - started
        except OSError:
            time.sleep(0.5)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every command")
    parser.add_argument("--stages", nargs="+", default=["tokenize", "instances"], choices=sorted(INPUTS))
    parser.add_argument("--config", default="demo", help="preset to run")
    parser.add_argument("--data-root", type=Path, default=REPO / "data",
                        help="artifacts to copy into the scratch data root (read only)")
    parser.add_argument("--commands", nargs="+", default=list(COMMANDS), choices=COMMANDS)
    parser.add_argument("--served", action="store_true",
                        help="`run` against one `prefect server start` instead of a temporary server per command")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs, stores, data roots)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="prefect-overhead-"))
    (scratch / "logs").mkdir()
    data = copy_artifacts(args.data_root, scratch / "data", STAGES)
    env = {**os.environ, **ENV, "PREFECT_HOME": str(scratch / "prefect-home")}
    env.pop("PREFECT_API_URL", None)  # no server: each `run` starts Prefect's temporary one
    env.pop("MLFLOW_TRACKING_URI", None)  # ./mlflow.db of the scratch folder
    print(f"scratch folder {scratch} (each command's stderr in logs/)", flush=True)
    server = None
    if args.served:
        server, api_url, up_s = start_prefect_server(env, scratch / "logs" / "prefect-server.log")
        env["PREFECT_API_URL"] = api_url
        print(f"prefect server start: healthy after {up_s:.1f} s, {tree_cpu_s(psutil.Process(server.pid)):.1f} CPU-s "
              "(once; not in the figures)", flush=True)
    cli = str(BIN / "pretrainflow")

    def command(kind: str, stage: str, rep: int) -> list[str]:
        preset = ["--config", args.config]
        if kind == "floor":
            return [cli, "config", *preset]
        if kind == "task":
            return [cli, "task", stage, *preset, "--set", f"data_root={data}",
                    "--output", str(scratch / f"task-{stage}-{rep}")]
        root = data if kind == "run-cached" else copy_artifacts(data, scratch / f"data-{stage}-{rep}", INPUTS[stage])
        return [cli, "run", stage, *preset, "--set", f"data_root={root}"]

    def run(kind: str, stage: str, rep: int) -> Figures:
        served = psutil.Process(server.pid) if server and kind.startswith("run") else None
        before = tree_cpu_s(served) if served else 0.0
        m = measure(command(kind, stage, rep), scratch / "logs" / f"{stage}-{kind}-{rep}.log", env, cwd=scratch)
        server_cpu = tree_cpu_s(served) - before if served else 0.0
        return Figures(m.cpu_seconds + server_cpu, m.wall_seconds, m.peak_rss_mb, server_cpu)

    try:
        for stage in args.stages:  # creates both stores; builds what the code's ids name and --data-root lacks
            warm = run("run-cached", stage, -1)
            print(f"unmeasured first `run {stage}`: {warm.cpu_s:.1f} CPU-s, {warm.wall_s:.1f} s", flush=True)
        results: dict[tuple[str, str], list[Figures]] = {}
        for stage in args.stages:
            for rep in range(args.reps):
                for kind in args.commands:
                    if kind == "floor" and stage != args.stages[0]:
                        continue  # the same command for every stage: measured once
                    figures = run(kind, stage, rep)
                    key = ("-" if kind == "floor" else stage, kind)
                    results.setdefault(key, []).append(figures)
                    served = f" (server {figures.server_cpu_s:.2f})" if figures.server_cpu_s else ""
                    print(f"  {key[0]:<9} {kind:<10} rep {rep}: {figures.cpu_s:6.2f} CPU-s{served} "
                          f"{figures.wall_s:6.2f} s {figures.peak_rss_mib:6.0f} MiB", flush=True)
    finally:
        if server:
            server.terminate()
            server.wait(60)

    api = ("one `prefect server start` (its CPU during each command added)" if args.served
           else "a temporary server per run")
    print(f"\n{args.reps} repetitions each, median (min-max); Prefect API: {api}; {os.cpu_count()} CPUs, "
          f"1-min load at the end {os.getloadavg()[0]:.1f}")
    print(f"{'stage':<9} {'command':<10} {'CPU-s':>20} {'wall s':>20} {'peak RSS MiB':>22}")
    for (stage, kind), runs in results.items():
        print(f"{stage:<9} {kind:<10} {_summary([f.cpu_s for f in runs]):>20} "
              f"{_summary([f.wall_s for f in runs]):>20} {_summary([f.peak_rss_mib for f in runs]):>22}")

    def median(stage: str, kind: str, attribute: str) -> float | None:
        runs = results.get(("-" if kind == "floor" else stage, kind))
        return statistics.median(getattr(f, attribute) for f in runs) if runs else None

    print("\ndifferences of the medians: CPU-s, wall s")
    for stage in args.stages:
        for a, b in (("run-built", "task"), ("run-cached", "floor"), ("run-cached", "task")):
            cpu = (median(stage, a, "cpu_s"), median(stage, b, "cpu_s"))
            wall = (median(stage, a, "wall_s"), median(stage, b, "wall_s"))
            if None not in (*cpu, *wall):
                print(f"{stage:<9} {a} - {b:<6} {cpu[0] - cpu[1]:+6.2f} {wall[0] - wall[1]:+6.2f}")
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
