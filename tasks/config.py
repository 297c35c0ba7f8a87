"""The pipeline config: the five stage configs composed, loaded from a YAML preset plus overrides.

Defaults live only in the stage config classes; a preset in configs/ names only what differs, and
`--set stage.field=value` overrides one leaf. Everything is validated before any work starts and every
problem is reported at once, naming the field, the bad value and what would be valid.
"""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path, PurePath
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from model.config import PretrainConfig, override_size
from tasks.artifacts import missing_backend
from tasks.corpus.config import CorpusConfig
from tasks.errors import ConfigError
from tasks.evaluate.evaluation import EvaluateConfig
from tasks.instances.generate import InstancesConfig
from tasks.parallel import ParallelConfig
from tasks.presets import PRESETS_DIR, preset_names
from tasks.tokens.shards import TokenizeConfig


class TrackingConfig(BaseModel):
    """Where runs are recorded."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    experiment: str = Field(default="pretrainflow", min_length=1)
    """MLflow experiment that holds the pipeline and stage runs."""
    tracking_uri: str | None = None
    """MLflow tracking URI; unset means $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here."""
    registered_model: str | None = Field(default="pretrainflow-bert", min_length=1)
    """Model-registry name each newly pretrained model is registered under; null to only log it."""
    system_metrics_interval_s: float | None = Field(default=10.0, gt=0)
    """Seconds between MLflow system-metrics samples (CPU, memory, disk, network, GPU) while a stage
    builds; null turns them off."""


class PipelineConfig(BaseModel):
    """Everything one pipeline run needs: a data root, tracking and one config per stage."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str | None = Field(default=None, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """A short name for this config (letters, digits, _ . -): Prefect flow runs are named after it, e.g.
    pipeline-demo-1a2b3c4d. Never part of an artifact id."""
    data_root: Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, PurePath) else v)] = "data"
    """Where every stage's artifacts live, as STAGE/ID/: a local folder or an fsspec URL (s3://bucket/prefix)."""
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    """MLflow experiment and store."""
    parallel: ParallelConfig = Field(default_factory=ParallelConfig)
    """Where sharded stage work runs (local processes or Dask); never part of an artifact id."""
    corpus: CorpusConfig
    """Sources, extraction, cleaning and deduplication (required: there is no default source)."""
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig)
    """WordPiece tokenizer and token shards."""
    instances: InstancesConfig = Field(default_factory=InstancesConfig)
    """MLM/NSP training instance generation."""
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    """Model size and training schedule."""
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    """Downstream fine-tuning, pretrained vs from scratch."""

    @field_validator("data_root")
    @classmethod
    def _data_root_usable(cls, root: str) -> str:
        problem = missing_backend(root)
        if problem:
            raise ValueError(problem)
        return root


def resolve_preset(name_or_path: str | Path) -> Path:
    """A preset name ('demo') or a path to a YAML file -> the file.

    A bare name is always a preset, whatever the working folder holds; a path is a Path, or ends in .yaml or
    .yml, or contains a folder separator (./tiny reads a file named tiny here).
    """
    text = str(name_or_path)
    separators = [sep for sep in (os.sep, os.altsep) if sep]
    if isinstance(name_or_path, PurePath) or text.endswith((".yaml", ".yml")) or any(s in text for s in separators):
        path = Path(name_or_path)
        if path.is_dir():
            raise ConfigError(text, [f"config file {text} is a directory; give a YAML file or a preset name "
                                     f"({', '.join(preset_names())})"])
        if not path.is_file():
            raise ConfigError(text, [f"config file {text} does not exist"])
        return path
    candidate = PRESETS_DIR / f"{text}.yaml"
    if not PRESETS_DIR.is_dir():  # a non-editable install: the presets live in the repository, not the wheel
        raise ConfigError(text, [f"no presets at {PRESETS_DIR}: they are read from the repository's configs/ "
                                 f"folder, so install pretrainflow from a checkout (pip install -e <repo>, as "
                                 f"`make` does), or pass a path to a .yaml file"])
    if not candidate.is_file():
        here = f"; to read the file {text!r} in this folder, pass ./{text}" if Path(text).is_file() else ""
        raise ConfigError(text, [f"no preset named {text!r}; presets: {', '.join(preset_names())} "
                                 f"(or a path to a .yaml file){here}"])
    return candidate


def load_config(preset: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                base: tuple[str, dict[str, Any]] | None = None) -> PipelineConfig:
    """Load a preset (name or path, or none for pure defaults), apply `a.b=value` overrides, validate.

    base: (where it comes from, a mapping) to start from instead of a preset, e.g. a deployment's form values.
    """
    source = "defaults"
    tree: dict[str, Any] = {}
    problems: list[str] = []
    if base is not None:
        source, tree = base[0], copy.deepcopy(base[1])
    elif preset is not None:
        path = resolve_preset(preset)
        source = str(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as err:
            line = err.object.count(b"\n", 0, err.start) + 1
            raise ConfigError(source, [f"{path} is not UTF-8 text (byte {err.object[err.start]:#04x} on line {line}); "
                                       f"save it as UTF-8"]) from None
        except yaml.YAMLError as err:
            raise ConfigError(source, [f"{path} is not valid YAML: {yaml_problem(err)}"]) from None
        if not isinstance(loaded, dict):
            raise ConfigError(source, [f"top level must be a mapping of stage names, got {type(loaded).__name__}"])
        tree = loaded
    overridden: set[str] = set()  # pretrain fields given by --set
    typed: dict[tuple[str, ...], str] = {}  # --set values YAML read as a non-string -> the same value quoted
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key.strip():
            problems.append(f"override {override!r} is not of the form section.field=value")
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError as err:
            problems.append(f"override {override!r}: value {raw!r} is not valid YAML: {yaml_problem(err)}; give a "
                            f"YAML value such as 3, true or [a, b], or quote text: --set '{key.strip()}=\"...\"'")
            continue
        keys = key.strip().split(".")
        _set_path(tree, keys, value, problems)
        if not isinstance(value, str):
            typed[tuple(keys)] = f"--set '{key.strip()}=\"{raw.strip()}\"'"
        if len(keys) == 2 and keys[0] == "pretrain":
            overridden.add(keys[1])
    if isinstance(tree.get("pretrain"), dict):
        tree["pretrain"] = override_size(tree["pretrain"], overridden)
    if overrides:
        source += " with --set " + " ".join(overrides)
    if problems:
        raise ConfigError(source, problems)
    return validate_config(tree, source, typed)


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML parse error on one line: what is wrong, where (line, column), and inside what."""
    if not isinstance(err, yaml.MarkedYAMLError) or err.problem is None:
        return " ".join(str(err).split())
    message = err.problem
    if err.problem_mark is not None:
        message += f" at line {err.problem_mark.line + 1}, column {err.problem_mark.column + 1}"
    if err.context and err.context_mark is not None:
        message += f" ({err.context} started at line {err.context_mark.line + 1}, column {err.context_mark.column + 1})"
    return message


def validate_config(tree: dict[str, Any], source: str = "input",
                    quoted: dict[tuple[str, ...], str] | None = None) -> PipelineConfig:
    """Validate a nested mapping, turning pydantic's errors into one readable ConfigError.

    quoted: field path -> the --set that passes its value as text, for values YAML read as a number, bool,
    null or date; a string field given one gets that hint.
    """
    try:
        return PipelineConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(source, [describe_error(e, quoted or {}) for e in err.errors()]) from None


def describe_error(error: dict[str, Any], quoted: dict[tuple[str, ...], str] | None = None) -> str:
    """One pydantic error as 'field: what is wrong (got value); what is valid'."""
    loc = [str(part) for part in error["loc"]]
    where = ".".join(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        valid = _fields_at(loc[:-1])
        hint = difflib.get_close_matches(loc[-1], valid, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        return f"{where}: unknown field{suggestion}; valid fields here: {', '.join(valid)}"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"{where}: required field is missing"
    hint = ""
    if error["type"] == "string_type":  # loc may go on past the field (the str member of a union)
        hint = next((f"; to pass it as text, quote it: {text}" for path, text in (quoted or {}).items()
                     if tuple(loc[: len(path)]) == path), "")
    return f"{where}: {message} (got {error.get('input')!r}){hint}"


def _fields_at(loc: list[str]) -> list[str]:
    """Field names of the config model reached by following loc from PipelineConfig."""
    model: Any = PipelineConfig
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return sorted(getattr(model, "model_fields", {}))


def _set_path(tree: dict[str, Any], keys: list[str], value: Any, problems: list[str]) -> None:
    node = tree
    for depth, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            problems.append(f"cannot set {'.'.join(keys)}: {'.'.join(keys[: depth + 1])} is a value, not a section")
            return
        node = child
    node[keys[-1]] = value
