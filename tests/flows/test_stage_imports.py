"""What `pretrainflow run STAGE` imports to get its flow: that stage's flow module, not the other flows, and
not Dask unless the config names a cluster. Each is paid by every run, cached or not (bench/prefect_overhead.py).
Checked in a fresh interpreter by the modules it holds, not by timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = """\
import json, sys
from flows.stage import stage_flow
flow = stage_flow(sys.argv[1])
print(json.dumps({"flow": flow.name, "modules": sorted(sys.modules)}))
"""


def flow_and_modules(stage: str, cwd: str) -> tuple[str, set[str]]:
    env = {**os.environ, "DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, stage], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    return result["flow"], set(result["modules"])


@pytest.mark.parametrize("stage, module", [("tokenize", "flows.tokens"), ("instances", "flows.instances")])
def test_a_stage_run_imports_its_own_flow_only_and_no_dask(stage, module, tmp_path):
    flow, modules = flow_and_modules(stage, cwd=str(tmp_path))
    assert flow == stage and module in modules
    others = {"flows.corpus", "flows.tokens", "flows.instances", "flows.pretrain", "flows.evaluate", "flows.pipeline"}
    assert sorted(modules & (others - {module})) == []
    assert sorted(modules & {"prefect_dask", "distributed", "dask"}) == []  # needed only with a dask_address


def test_the_pipeline_runs_every_stage_flow_in_order():
    from flows.pipeline import STAGE_FLOWS
    from tasks.stages import STAGES

    assert [(name, flow.name) for name, flow in STAGE_FLOWS.items()] == [(name, name) for name in STAGES]
