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
        if deployment["name"] == "sweep":
            continue  # its parameter is a sweep, below
        # as the Prefect server checks a deployment's parameters: JSON types, no lax coercion ('1e-3' is text)
        jsonschema.validate(deployment["parameters"]["config"], PipelineConfig.model_json_schema())
        config = PipelineConfig.model_validate(deployment["parameters"]["config"])
        # the form's values are the demo preset's, every stage of it: a run after `make demo` is a cache hit
        assert config == demo, deployment["name"]
    assert {"pipeline", "corpus", "tokenize", "instances", "pretrain", "evaluate", "corpus-refresh", "sweep"} <= set(names)
    refresh = next(d for d in spec["deployments"] if d["name"] == "corpus-refresh")
    assert refresh["parameters"]["refresh"] is True and refresh["schedules"][0]["cron"]


def test_form_descriptions_have_no_angle_brackets() -> None:
    """The Prefect form drops any <...> from a field's description as if it were an HTML tag."""
    descriptions = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("description"), str):
                descriptions.append(node["description"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(PipelineConfig.model_json_schema())
    assert len(descriptions) > 100  # every field has its docstring as description
    assert [d for d in descriptions if "<" in d] == []


def test_sweep_deployment_is_the_shipped_example_and_every_variant_validates() -> None:
    from tasks.sweep.plan import SweepConfig, plan_sweep, read_sweep_yaml, validate_sweep

    spec = yaml.safe_load(DEPLOYMENTS.read_text())
    sweep = next(d for d in spec["deployments"] if d["name"] == "sweep")["parameters"]["sweep"]
    jsonschema.validate(sweep, SweepConfig.model_json_schema())
    example = read_sweep_yaml(DEPLOYMENTS.parents[1] / "configs" / "sweeps" / "masking.yaml")
    assert validate_sweep(sweep) == validate_sweep(example)
    assert len(plan_sweep(validate_sweep(sweep)).variants) == 8
