"""What `pretrainflow config` and `pretrainflow --help` import: the libraries a command does not use stay unloaded.

Every command's first step is loading a config, and every shard worker re-imports the entry point, so a
library imported there is paid by all of them (torch and transformers: ~5 CPU-s and 650 MB). Checked in a
fresh interpreter by the modules it holds at exit, not by timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Run main() as the console script does, then print the top-level names of every loaded module.
SCRIPT = """\
import json, sys
from flows.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:  # --help
    code = stop.code
print(json.dumps({"code": code, "modules": sorted({name.split(".")[0] for name in sys.modules})}))
"""
# Libraries that only training, tracking, orchestration, a corpus source or a cleaning step uses.
# numpy, pyarrow, tokenizers and blingfire are not listed yet: tasks/tokens/shards.py (TokenizeConfig) and
# tasks/instances/generate.py (InstancesConfig) import them at the top, so loading a config still loads them.
UNUSED_BY_CONFIG = ("torch", "transformers", "prefect", "mlflow", "datasets", "numba", "matplotlib", "trafilatura",
                    "py3langid", "lxml", "ftfy", "httpx", "fsspec", "regex", "xxhash", "warcio", "charset_normalizer")
# --help builds the parser only: no config class, so not even pydantic
UNUSED_BY_HELP = (*UNUSED_BY_CONFIG, "numpy", "pyarrow", "tokenizers", "blingfire", "pydantic")


def loaded_modules(*args: str, cwd: str) -> list[str]:
    env = {**os.environ, "DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["code"] == 0, done.stderr
    return result["modules"]


@pytest.mark.parametrize("preset", ["tiny", "demo"])
def test_config_loads_no_library_that_only_a_stage_uses(preset, tmp_path):
    modules = loaded_modules("config", "--config", preset, cwd=str(tmp_path))
    assert "pydantic" in modules and "tasks" in modules  # the config was loaded
    assert [name for name in UNUSED_BY_CONFIG if name in modules] == []


def test_help_loads_no_config_class_and_no_stage_library(tmp_path):
    modules = loaded_modules("--help", cwd=str(tmp_path))
    assert [name for name in UNUSED_BY_HELP if name in modules] == []
