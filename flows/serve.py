"""`pretrainflow serve`: a Prefect server, a worker for the pool and an MLflow server on 127.0.0.1.

They use the same local stores as the embedded mode (Prefect's database under $PREFECT_HOME, MLflow's
sqlite:///mlflow.db and ./mlruns in the working folder), so runs made before or without the servers
show up in both UIs. The deployments in deployments/prefect.yaml are registered, the two UI addresses
printed, and on Ctrl-C or SIGTERM exactly the processes started here are stopped, each by its own
process group (a server's workers die with it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tasks.tracking import resolve_tracking_uri

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFECT_FILE = REPO_ROOT / "deployments" / "prefect.yaml"
BIN = Path(sys.executable).parent  # prefect and mlflow console scripts of this environment
# offline hygiene for every process started here
QUIET_ENV = {"DO_NOT_TRACK": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}


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
    """Start MLflow server, Prefect server, work pool + worker, deploy; stop all of them on exit."""
    base_env = {**os.environ, **QUIET_ENV, **(env or {})}
    prefect_port = options.prefect_port or free_port(options.host)
    mlflow_port = options.mlflow_port or free_port(options.host)
    api_url = f"http://{options.host}:{prefect_port}/api"
    mlflow_url = f"http://{options.host}:{mlflow_port}"
    client_env = {**base_env, "PREFECT_API_URL": api_url, "MLFLOW_TRACKING_URI": mlflow_url}
    pids: dict[str, int] = {}
    with ExitStack() as started:
        mlflow = started.enter_context(_process("mlflow server", [
            str(BIN / "mlflow"), "server", "--host", options.host, "--port", str(mlflow_port),
            "--backend-store-uri", options.tracking_uri, "--default-artifact-root", str(options.artifact_root),
            "--workers", "1",  # one UI user on loopback; the default 4 cost seconds and memory at start
        ], base_env))
        prefect = started.enter_context(_process("prefect server", [
            str(BIN / "prefect"), "server", "start", "--host", options.host, "--port", str(prefect_port),
            "--analytics-off",
        ], base_env))
        pids.update({"mlflow server": mlflow.pid, "prefect server": prefect.pid})
        _wait_healthy({"prefect server": (f"{api_url}/health", prefect), "mlflow server": (f"{mlflow_url}/health", mlflow)},
                      options.startup_timeout_s)
        _run([str(BIN / "prefect"), "work-pool", "create", options.pool, "--type", "process", "--overwrite"], client_env)
        worker = started.enter_context(_process("prefect worker", [
            str(BIN / "prefect"), "worker", "start", "--pool", options.pool, "--type", "process",
        ], client_env, cwd=REPO_ROOT))
        pids["prefect worker"] = worker.pid
        if options.deploy:
            # entrypoints are relative to the checkout, and the pull step's {{ $PWD }} is read from the env
            _run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", str(options.prefect_file)],
                 {**client_env, "PWD": str(REPO_ROOT)}, cwd=REPO_ROOT)
        yield Served(api_url, f"http://{options.host}:{prefect_port}", mlflow_url, pids)


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
    try:
        with serve(options) as served:
            print("\npretrainflow is served:", flush=True)
            print(f"  Prefect UI:  {served.prefect_ui_url}   (API {served.prefect_api_url}, pool {options.pool!r})")
            print(f"  MLflow UI:   {served.mlflow_url}   (store {options.tracking_uri})")
            print(f"  run a deployment:  PREFECT_API_URL={served.prefect_api_url} "
                  f"{BIN / 'prefect'} deployment run 'pipeline/pipeline'")
            print("Ctrl-C stops everything started here.", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    return 0
