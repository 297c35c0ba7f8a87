"""A sweep's plan: every variant's validated config, its name and artifact ids, and what is already built.

A variant is the base config with one value of every axis (the full grid), or one named variant's
overrides, at one seed. Its config is loaded exactly as `--config BASE --set ...` loads one
(tasks.config.load_config), so presets, YAML files and size overrides behave the same. Every variant is
validated before anything runs and every problem is reported at once, with the variants it occurs in.
"""

from __future__ import annotations

import difflib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasks.artifacts import ArtifactStore
from tasks.config import PipelineConfig, load_config, yaml_problem
from tasks.errors import ConfigError
from tasks.stages import STAGES, resolve_ids

SeedField = Literal["pretrain.seed", "instances.seed"]
VARIANT_AXIS = "variant"  # the one axis of a sweep of named variants: its values are their names
BASE_LABEL = "base"  # the label of a sweep without axes or variants (seeds only)


class NamedVariant(BaseModel):
    """One hand-written variant: a name and the fields it changes in the base config."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")
    """What runs and report rows call it (letters, digits, _ . = + -), e.g. no-near-dedup."""
    overrides: dict[str, Any] = Field(default={})
    """Dotted field path -> value, e.g. {corpus.near_dedup.enabled: false}; empty = the base config itself."""


class SweepConfig(BaseModel):
    """An ablation sweep: a base config, what varies (axes or named variants), seeds, and how many train at once."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str | None = Field(default=None, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """A short name for the sweep (its parent run is named after it)."""
    config: str | None = None
    """Base config: a preset name or a path to a YAML file, as `--config` takes it (a relative path is read
    from the working folder); none = the defaults."""
    overrides: list[str] = Field(default=[])
    """`section.field=value` overrides of the base for every variant, as `--set` takes them."""
    axes: dict[str, list[Any]] = Field(default={})
    """Dotted field path -> the values to try, e.g. {instances.objective: [nsp, sop, mlm]}; every
    combination of the axes' values is a variant (the full grid). A mapping value sets the fields it names."""
    variants: list[NamedVariant] = Field(default=[])
    """Named variants, instead of a grid."""
    seeds: list[int] = Field(default=[])
    """Every variant runs once per seed, written into seed_fields; empty = once, with the config's own seeds."""
    seed_fields: list[SeedField] = Field(default=["pretrain.seed"], min_length=1)
    """Fields a seed sets. pretrain.seed (weight init, dropout, data order, dynamic masks) lets the seeds share
    the data artifacts; instances.seed also redraws static masks and sentence pairs, one instances artifact
    per seed."""
    max_parallel: int | None = Field(default=None, ge=1)
    """Variants pretraining at the same time, each in its own lane of builds (one GPU per lane while there are
    enough); None = one per GPU torch sees on this node, 1 on CPU."""

    @field_validator("axes")
    @classmethod
    def _axes_valid(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        problems = [p for path in axes if (p := _path_problem(path, "axis"))]
        for path, values in axes.items():
            texts = [value_text(v) for v in values]
            if not values:
                problems.append(f"axis {path} has no values; give two or more")
            elif len(set(texts)) != len(texts):
                problems.append(f"axis {path} repeats a value: {texts}")
        if problems:
            raise ValueError("\n".join(problems))  # one line each: see _describe
        return axes

    @field_validator("variants")
    @classmethod
    def _variants_valid(cls, variants: list[NamedVariant]) -> list[NamedVariant]:
        names = [v.name for v in variants]
        repeated = sorted({n for n in names if names.count(n) > 1})
        problems = [f"variant names {repeated} repeat; give each a distinct name"] if repeated else []
        problems += [f"variant {v.name}: {p}" for v in variants for path in v.overrides
                     if (p := _path_problem(path, "override"))]
        if problems:
            raise ValueError("\n".join(problems))  # one line each: see _describe
        return variants

    @field_validator("seeds")
    @classmethod
    def _seeds_valid(cls, seeds: list[int]) -> list[int]:
        if bad := [s for s in seeds if s < 0]:
            raise ValueError(f"seeds {bad} are negative; a seed is a non-negative integer")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds {seeds} has duplicates")
        return seeds

    @model_validator(mode="after")
    def _consistent(self) -> SweepConfig:
        problems = []
        if self.axes and self.variants:
            problems.append("give axes (a full grid) or named variants, not both")
        varied = {*self.axes, *(path for v in self.variants for path in v.overrides)}
        if self.seeds and (clash := sorted(varied & set(self.seed_fields))):
            problems.append(f"{', '.join(clash)} is set by seeds {self.seeds}: vary it with seeds, or take it out of "
                            f"seed_fields {self.seed_fields}")
        if problems:
            raise ValueError("\n".join(problems))  # one line each: see _describe
        return self


def _path_problem(path: str, what: str) -> str | None:
    """Why a dotted path cannot be an axis or a variant's override, or None if it can (the field itself is
    checked when the variants' configs are validated)."""
    parts = path.split(".")
    if parts[0] in STAGES and all(parts):  # a bare section takes a mapping of its fields
        return None
    return (f"{what} {path!r} is not a stage's field: give section.field with a section of {', '.join(STAGES)} "
            f"(data_root, tracking and parallel are the same for every variant: set them in the base config)")


def value_text(value: Any) -> str:
    """A value as YAML writes it on one line (false, sop, 16000, [a, b], '3'): how names show it."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**9).removesuffix("...\n").strip()


def parse_values(text: str) -> list[Any]:
    """Comma-separated values from the command line, each read as a YAML scalar as `--set` reads it:
    'true,false' -> [True, False], 'nsp,sop' -> ['nsp', 'sop'], '16000,30000' -> [16000, 30000]."""
    try:
        values = yaml.safe_load(f"[{text}]")
    except yaml.YAMLError as err:
        raise ValueError(f"{text!r} is not a comma-separated list of YAML values: {yaml_problem(err)}") from None
    return values


def parse_axes(texts: list[str] | tuple[str, ...]) -> dict[str, list[Any]]:
    """`--axis PATH=V1,V2,...` arguments -> axes; raises ConfigError naming every malformed one."""
    axes: dict[str, list[Any]] = {}
    problems = []
    for text in texts:
        path, sep, raw = text.partition("=")
        path = path.strip()
        if not sep or not path or not raw.strip():
            problems.append(f"--axis {text!r} is not of the form section.field=value1,value2")
            continue
        if path in axes:
            problems.append(f"--axis {path} is given twice; list all its values in one --axis")
            continue
        try:
            axes[path] = parse_values(raw)
        except ValueError as err:
            problems.append(f"--axis {path}: {err}")
    if problems:
        raise ConfigError("--axis", problems)
    return axes


def read_sweep_yaml(path: str | Path) -> dict[str, Any]:
    """A sweep file's mapping (config, overrides, axes or variants, seeds, ...); raises ConfigError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), [f"sweep file {path} does not exist"])
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(str(path), [f"{path} is not UTF-8 text; save it as UTF-8"]) from None
    except yaml.YAMLError as err:
        raise ConfigError(str(path), [f"{path} is not valid YAML: {yaml_problem(err)}"]) from None
    if not isinstance(loaded, dict):
        raise ConfigError(str(path), [f"top level must be a mapping of sweep fields, got {type(loaded).__name__}"])
    return loaded


def validate_sweep(data: dict[str, Any], source: str = "sweep") -> SweepConfig:
    """A SweepConfig from a mapping, every problem in one ConfigError naming the field and what is valid."""
    try:
        return SweepConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(source, [line for e in err.errors() for line in _describe(e)]) from None


def _describe(error: dict[str, Any]) -> list[str]:
    """One pydantic error as problem lines, 'field: what is wrong; what is valid'."""
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        model = NamedVariant if "variants" in error["loc"] else SweepConfig
        valid = sorted(model.model_fields)
        hint = difflib.get_close_matches(str(error["loc"][-1]), valid, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        return [f"{where}: unknown field{suggestion}; valid fields here: {', '.join(valid)}"]
    if error["type"] == "value_error":  # our validators name the bad values, one problem a line
        return [f"{where}: {line}" for line in error["msg"].removeprefix("Value error, ").splitlines()]
    return [f"{where}: {error['msg']} (got {error.get('input')!r})"]


@dataclass(frozen=True)
class Variant:
    """One variant at one seed: its full pipeline config and the artifacts it reads and writes."""

    name: str  # its settings and seed, e.g. "near_dedup.enabled=false,objective=sop,seed=1": its run's name
    label: str  # the same without the seed: the report row its seeds are averaged in
    settings: dict[str, str]  # axis label -> value as text; {"variant": name} for a named variant
    seed: int | None  # None: a sweep without seeds (the config's own)
    overrides: tuple[str, ...]  # the `--set` arguments that make its config from the base, the sweep-wide ones first
    config: PipelineConfig
    ids: dict[str, str]  # stage -> artifact id, pipeline order


@dataclass(frozen=True)
class SweepPlan:
    """Every variant of a sweep with its artifacts, and the distinct artifacts per stage."""

    sweep: SweepConfig
    variants: tuple[Variant, ...]
    artifacts: dict[str, tuple[str, ...]]  # stage -> its distinct artifact ids, in the order variants need them
    cached: dict[str, frozenset[str]]  # stage -> those already finished in the store when planned

    @property
    def axes(self) -> dict[str, list[str]]:
        """Axis label -> its values as text, in the sweep's order ({} for a sweep of seeds only)."""
        axes: dict[str, list[str]] = {}
        for variant in self.variants:
            for axis, value in variant.settings.items():
                if value not in axes.setdefault(axis, []):
                    axes[axis].append(value)
        return axes

    @property
    def data_root(self) -> str:
        """The one data root every variant reads and writes."""
        return self.variants[0].config.data_root

    def summary(self) -> str:
        """One line: '4 variants (2 settings x 2 seeds): 1 corpus, ..., 4 evaluate artifacts; 2 cached'."""
        labels = len({v.label for v in self.variants})
        seeds = len(self.sweep.seeds) or 1
        counts = ", ".join(f"{len(ids)} {stage}" for stage, ids in self.artifacts.items())
        cached = sum(len(ids) for ids in self.cached.values())
        return (f"{len(self.variants)} variants ({labels} settings x {seeds} seeds): {counts} artifacts; "
                f"{cached} cached")


def plan_sweep(sweep: SweepConfig) -> SweepPlan:
    """Validate every variant's config (one ConfigError with every problem), resolve its artifact ids and
    count the distinct artifacts per stage and those already in the store."""
    variants: list[Variant] = []
    problems: dict[str, list[str]] = {}  # problem -> names of the variants it occurs in
    all_names = []
    for settings, overrides in _settings(sweep):
        for seed in sweep.seeds or [None]:
            parts = [f"{axis}={value}" for axis, value in settings.items()]
            label = ",".join(parts) or BASE_LABEL
            name = label if seed is None else ",".join([*parts, f"seed={seed}"])
            all_names.append(name)
            arguments = (*sweep.overrides, *overrides, *(f"{field}={seed}" for field in sweep.seed_fields
                                                          if seed is not None))
            try:
                config = load_config(sweep.config, list(arguments))
            except ConfigError as err:
                for problem in err.problems:  # a whole section echoed back differs per seed: the names show it
                    problems.setdefault(re.sub(r" \(got \{.*\}\)$", "", problem), []).append(name)
                continue
            variants.append(Variant(name, label, settings, seed, arguments, config, resolve_ids(config)))
    source = f"sweep of {sweep.config or 'defaults'}"
    if problems:
        raise ConfigError(source, [f"{problem} [{_which(names, all_names)}]" for problem, names in problems.items()])
    if same := _same_artifacts(variants):
        raise ConfigError(source, same)
    store = ArtifactStore(variants[0].config.data_root)
    artifacts = {stage: tuple(dict.fromkeys(v.ids[stage] for v in variants)) for stage in STAGES}
    cached = {stage: frozenset(i for i in ids if store.exists(stage, i)) for stage, ids in artifacts.items()}
    return SweepPlan(sweep, tuple(variants), artifacts, cached)


def _settings(sweep: SweepConfig) -> list[tuple[dict[str, str], list[str]]]:
    """(axis label -> value text, the `--set` arguments) of every setting, without seeds, in grid order."""
    if sweep.variants:
        return [({VARIANT_AXIS: v.name}, _set_arguments(v.overrides)) for v in sweep.variants]
    labels = axis_labels(list(sweep.axes))
    settings = []
    for values in itertools.product(*sweep.axes.values()):
        chosen = dict(zip(sweep.axes, values))
        settings.append(({labels[path]: value_text(v) for path, v in chosen.items()}, _set_arguments(chosen)))
    return settings


def axis_labels(paths: list[str]) -> dict[str, str]:
    """Path -> how names show it: without its stage (near_dedup.enabled) unless two axes would then look alike."""
    short = {path: path.split(".", 1)[-1] for path in paths}
    return {path: label if list(short.values()).count(label) == 1 else path for path, label in short.items()}


def _set_arguments(overrides: dict[str, Any]) -> list[str]:
    """Dotted path -> value as `--set` arguments; a mapping value sets the fields it names, keeping the others."""
    arguments = []
    for path, value in overrides.items():
        if isinstance(value, dict) and value:
            arguments += _set_arguments({f"{path}.{key}": inner for key, inner in value.items()})
        else:
            arguments.append(f"{path}={value_text(value)}")
    return arguments


def _which(names: list[str], all_names: list[str]) -> str:
    """'every variant', or the variants named (the first three and how many more)."""
    if len(names) == len(all_names):
        return "every variant"
    shown = "; ".join(names[:3]) + (f"; and {len(names) - 3} more" if len(names) > 3 else "")
    return f"variant{'s' if len(names) > 1 else ''} {shown}"


def _same_artifacts(variants: list[Variant]) -> list[str]:
    """Problems for variants that would build exactly the same artifacts (they would count twice in the report)."""
    by_ids: dict[tuple[str, ...], list[str]] = {}
    for v in variants:
        by_ids.setdefault(tuple(v.ids.values()), []).append(v.name)
    return [f"variants {'; '.join(names)} build the same artifacts (evaluate/{ids[-1]}): what tells them apart is "
            f"not part of any artifact id (an execution-only field such as pretrain.num_workers, or a value equal "
            f"to another's after validation); drop one" for ids, names in by_ids.items() if len(names) > 1]
