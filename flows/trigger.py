"""`pretrainflow trigger DEPLOYMENT`: a deployment run with its form's config plus --set overrides.

The config a run gets is the deployment's own (its form's values, which `serve` fills with its data root
and MLflow server), or a preset with --config, plus `--set section.field=value` overrides. It is checked
here, with the same messages as `pretrainflow run`, before any run exists; only then is the run created,
and --wait follows it to its end.
"""

from __future__ import annotations

import time
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun

from tasks.config import ConfigError, load_config


def find_deployment(client: Any, name: str) -> Any:
    """'pipeline', 'corpus-refresh' or 'flow/deployment' -> the deployment; a ConfigError lists the valid names."""
    deployments = client.read_deployments()
    flows = {flow.id: flow.name for flow in client.read_flows()}
    full = {f"{flows.get(d.flow_id, '?')}/{d.name}": d for d in deployments}
    if name in full:
        return full[name]
    matches = [d for key, d in full.items() if key.split("/", 1)[1] == name]
    if len(matches) == 1:
        return matches[0]
    valid = ", ".join(sorted(full)) or "none: run `pretrainflow serve` (it registers them)"
    raise ConfigError(name, [f"no single deployment named {name!r}; deployments on this server: {valid}"])


def trigger(name: str, preset: str | None, overrides: list[str]) -> FlowRun:
    """Create a run of deployment `name` with its config (or `preset`'s) plus overrides, checked first."""
    with get_client(sync_client=True) as client:
        deployment = find_deployment(client, name)
        parameters = dict(deployment.parameters or {})
        form = parameters.get("config")
        if not isinstance(form, dict):
            form = {}
            if preset is None:
                raise ConfigError(name, [f"deployment {name!r} has no config parameter to start from; give --config"])
        if preset is None:
            config = load_config(overrides=overrides, base=(f"of deployment {name}", form))
        else:  # the preset, in this serve's homes unless it names its own
            tree = load_config(preset).model_dump(mode="json", exclude_unset=True)
            if "data_root" in form:
                tree.setdefault("data_root", form["data_root"])
            if form.get("tracking", {}).get("tracking_uri"):
                tree.setdefault("tracking", {}).setdefault("tracking_uri", form["tracking"]["tracking_uri"])
            config = load_config(overrides=overrides, base=(f"{preset} in deployment {name}'s homes", tree))
        parameters["config"] = config.model_dump(mode="json", exclude_unset=True)
        return client.create_flow_run_from_deployment(deployment.id, parameters=parameters)


def wait_for(flow_run_id: Any, poll_s: float = 2.0) -> FlowRun:
    """Poll the run until it reaches a final state."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        while not run.state.is_final():
            time.sleep(poll_s)
            run = client.read_flow_run(flow_run_id)
        return run
