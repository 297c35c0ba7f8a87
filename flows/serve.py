"""`pretrainflow serve`: a Prefect server, a worker for the pool and an MLflow server on 127.0.0.1.

They use the same local stores as the embedded mode (Prefect's database under $PREFECT_HOME, MLflow's
sqlite:///mlflow.db and ./mlruns in the working folder), so runs made before or without the servers
show up in both UIs. The deployments in deployments/prefect.yaml are registered with this serve's homes
as their form's values: the data root (./data here, or --data-root) and the MLflow server, so a run
started from the UI writes where `serve` runs, not into the checkout the worker runs flows from.

At start, runs this host's dead processes left Running are marked Crashed. On Ctrl-C or SIGTERM the
pool's unfinished flow runs are cancelled through Prefect (the worker stops their processes), then
exactly the processes started here are stopped, each by its own process group (a server's workers die
with it).
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tasks.tracking import ML_LAYOUT, resolve_tracking_uri

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFECT_FILE = REPO_ROOT / "deployments" / "prefect.yaml"
BIN = Path(sys.executable).parent  # prefect and mlflow console scripts of this environment
# offline hygiene for every process started here
QUIET_ENV = {"DO_NOT_TRACK": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
# MLflow 3's server starts a job runner and 7 huey consumer processes (~1.9 GB resident, ~25 CPU-s at start)
# for GenAI jobs (trace rollups, prompt optimisation, scorers) that model training never submits
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@dataclass(frozen=True)
class ServeOptions:
    """What to start and where."""

    host: str = "127.0.0.1"
    prefect_port: int = 4200  # 0 = any free port
    mlflow_port: int = 5000  # 0 = any free port
    pool: str = "pretrainflow"
    prefect_file: Path = PREFECT_FILE
    tracking_uri: str = field(default_factory=resolve_tracking_uri)  # the embedded mode's store
    artifact_root: Path = field(default_factory=lambda: Path.cwd() / "mlruns")  # MLflow's default next to it
    data_root: str = field(default_factory=lambda: str(Path.cwd() / "data"))  # where deployment runs write
    deploy: bool = True
    startup_timeout_s: float = 120.0


@dataclass(frozen=True)
class Served:
    """Addresses of the running services."""

    prefect_api_url: str
    prefect_ui_url: str
    mlflow_url: str
    pids: dict[str, int]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@contextmanager
def serve(options: ServeOptions, env: Mapping[str, str] | None = None) -> Iterator[Served]:
    """Start MLflow server, Prefect server, work pool + worker, deploy; on exit cancel the pool's unfinished
    runs and stop all of them. The deploy overlaps MLflow's start: it needs only the Prefect server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.runs import cancel_unfinished_runs, reap_dead_runs
    from tasks.tracking import Tracker

    base_env = {**os.environ, **QUIET_ENV, **(env or {})}
    prefect_port = options.prefect_port or free_port(options.host)
    mlflow_port = options.mlflow_port or free_port(options.host)
    api_url = f"http://{options.host}:{prefect_port}/api"
    mlflow_url = f"http://{options.host}:{mlflow_port}"
    client_env = {**base_env, "PREFECT_API_URL": api_url, "MLFLOW_TRACKING_URI": mlflow_url}
    pids: dict[str, int] = {}
    began = time.monotonic()

    def done(what: str) -> None:
        print(f"serve: {what} ({time.monotonic() - began:.1f} s)", flush=True)

    with ExitStack() as started:
        mlflow = started.enter_context(_process("mlflow server", [
            str(BIN / "mlflow"), "server", "--host", options.host, "--port", str(mlflow_port),
            "--backend-store-uri", options.tracking_uri, "--default-artifact-root", str(options.artifact_root),
            "--workers", "1",  # one UI user on loopback; the default 4 cost seconds and memory at start
        ], {**base_env, **MLFLOW_SERVER_ENV}))
        prefect = started.enter_context(_process("prefect server", [
            str(BIN / "prefect"), "server", "start", "--host", options.host, "--port", str(prefect_port),
            "--analytics-off",
        ], {**base_env, "PREFECT_UI_API_URL": api_url}))  # else the UI calls port 4200 whatever --port says
        pids.update({"mlflow server": mlflow.pid, "prefect server": prefect.pid})
        _wait_healthy({"prefect server": (f"{api_url}/health", prefect)}, options.startup_timeout_s)
        done("Prefect server up")
        started.enter_context(temporary_settings({PREFECT_API_URL: api_url}))
        reap_dead_runs("pretrainflow serve")
        _create_pool(options.pool)
        done(f"work pool {options.pool!r} ready")
        if options.deploy:  # before the worker starts: the two processes' memory never adds up
            with tempfile.TemporaryDirectory(prefix="pretrainflow-deploy-") as scratch:
                prefect_file = Path(scratch) / "prefect.yaml"
                prefect_file.write_text(deployments_for(options.prefect_file, options.data_root, mlflow_url))
                # entrypoints are relative to the checkout, and the pull step's {{ $PWD }} is read from the env
                _run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)],
                     {**client_env, "PWD": str(REPO_ROOT)}, cwd=REPO_ROOT)
            done("deployments registered")
        worker = started.enter_context(_process("prefect worker", [
            str(BIN / "prefect"), "worker", "start", "--pool", options.pool, "--type", "process",
        ], client_env, cwd=REPO_ROOT))
        pids["prefect worker"] = worker.pid
        _wait_healthy({"mlflow server": (f"{mlflow_url}/health", mlflow)}, options.startup_timeout_s)
        done("MLflow server up")
        for name in Tracker(options.tracking_uri, create=False).reap_dead_runs("pretrainflow serve"):
            log.warning("MLflow run %s was left RUNNING by a process that is gone: marked FAILED", name)
        try:
            yield Served(api_url, f"http://{options.host}:{prefect_port}", mlflow_url, pids)
        finally:
            left = cancel_unfinished_runs(options.pool)
            if left:
                log.warning("still unfinished when serve stopped: %s", ", ".join(r.name for r in left))


def deployments_for(prefect_file: Path, data_root: str, tracking_uri: str) -> str:
    """deployments/prefect.yaml with this serve's data root and MLflow server in every deployment's config."""
    spec = yaml.safe_load(prefect_file.read_text())
    for deployment in spec["deployments"]:
        if sweep := deployment.get("parameters", {}).get("sweep"):  # its variants are the base plus overrides
            sweep["overrides"] = [*sweep.get("overrides", []), f"data_root={data_root}",
                                  f"tracking.tracking_uri={tracking_uri}"]
        config = copy.deepcopy(deployment.get("parameters", {}).get("config"))
        if config is None:
            continue
        config["data_root"] = data_root
        config.setdefault("tracking", {})["tracking_uri"] = tracking_uri
        deployment["parameters"]["config"] = config
    spec.pop("definitions", None)  # anchors already resolved into each deployment
    return yaml.safe_dump(spec, sort_keys=False)


def _create_pool(name: str) -> None:
    """The process work pool (replaced if it exists), with the process worker's default job template."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template), overwrite=True)


@contextmanager
def _process(name: str, command: list[str], env: Mapping[str, str], cwd: Path | None = None
             ) -> Iterator[subprocess.Popen]:
    """A child in its own process group, stopped with SIGTERM (then SIGKILL) to that group on exit."""
    child = subprocess.Popen(command, env=dict(env), cwd=cwd, start_new_session=True)
    try:
        yield child
    finally:
        _stop(name, child)


def _stop(name: str, child: subprocess.Popen, grace_s: float = 20.0) -> None:
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGTERM)  # its own group: the id it was started with, nothing else
        try:
            child.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    print(f"stopped {name} (pid {child.pid})", flush=True)


def _run(command: list[str], env: Mapping[str, str], cwd: Path | None = None) -> None:
    done = subprocess.run(command, env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(command[:4])} ...` failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def _wait_healthy(checks: dict[str, tuple[str, subprocess.Popen]], timeout_s: float) -> None:
    """Poll each health URL until it answers 200; fail fast if a server exits first."""
    deadline = time.monotonic() + timeout_s
    pending = dict(checks)
    while pending:
        for name, (url, child) in list(pending.items()):
            if child.poll() is not None:
                raise RuntimeError(f"{name} exited with code {child.returncode} before it was healthy")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # loopback readiness probe
                    if response.status == 200:
                        del pending[name]
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"not healthy after {timeout_s:.0f} s: {', '.join(pending)}")
        if pending:
            time.sleep(0.5)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM takes the same way out as Ctrl-C, so every started process is stopped on the way."""
    raise KeyboardInterrupt


def run_until_stopped(options: ServeOptions) -> int:
    """Serve until Ctrl-C or SIGTERM, then stop what was started."""
    signal.signal(signal.SIGTERM, _interrupt)
    # started in the background (`serve &`), SIGINT is ignored here and in every child, which inherits that:
    # Ctrl-C, and the worker's own way to stop a flow run, would do nothing
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with serve(options) as served:
            print("\npretrainflow is served:", flush=True)
            print(f"  Prefect UI:  {served.prefect_ui_url}   (API {served.prefect_api_url}, pool {options.pool!r})")
            print(f"  MLflow UI:   {served.mlflow_url}/#/experiments?{ML_LAYOUT}   (store {options.tracking_uri})")
            print(f"  runs started from the UI write to {options.data_root} and log to the MLflow server above")
            print(f"  run a deployment:  PREFECT_API_URL={served.prefect_api_url} "
                  f"{BIN / 'prefect'} deployment run 'pipeline/pipeline'")
            print("Ctrl-C stops everything started here.", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    return 0
