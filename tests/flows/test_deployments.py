"""deployments/prefect.yaml: every deployment's parameters validate, and its demo config matches the demo preset."""

from pathlib import Path

import jsonschema
import yaml

from tasks.config import PipelineConfig, load_config

DEPLOYMENTS = Path(__file__).resolve().parents[2] / "deployments" / "prefect.yaml"


def test_deployment_parameters_are_valid_pipeline_configs() -> None:
    spec = yaml.safe_load(DEPLOYMENTS.read_text())
    demo = load_config("demo")
    names = []
    for deployment in spec["deployments"]:
        names.append(deployment["name"])
        # as the Prefect server checks a deployment's parameters: JSON types, no lax coercion ('1e-3' is text)
        jsonschema.validate(deployment["parameters"]["config"], PipelineConfig.model_json_schema())
        config = PipelineConfig.model_validate(deployment["parameters"]["config"])
        # the form's values are the demo preset's, every stage of it: a run after `make demo` is a cache hit
        assert config == demo, deployment["name"]
    assert {"pipeline", "corpus", "tokenize", "instances", "pretrain", "evaluate", "corpus-refresh"} <= set(names)
    refresh = next(d for d in spec["deployments"] if d["name"] == "corpus-refresh")
    assert refresh["parameters"]["refresh"] is True and refresh["schedules"][0]["cron"]
