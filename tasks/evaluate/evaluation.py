"""Evaluate stage: does pretraining pay off? Fine-tune each pretrained model and a from-scratch twin per task.

For every task (the offline url-section task, GLUE, local files) and every model (the pipeline's
pretrained model, any models to compare, and the same architecture at random), a small learning-rate
grid runs on the first seed and the best on dev is kept per model, so neither side is handicapped by
one shared rate; every seed then runs at that rate and the test metrics are reported as mean and std.
Each fine-tuning run is saved to runs/ as it finishes, so an interrupted evaluation resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from model.finetune_data import FinetuneSettings
from tasks.evaluate.file_tasks import FileTask, build_file_task
from tasks.evaluate.fortunes import FortunesTask, build_fortunes_task
from tasks.evaluate.glue import GlueTask, build_glue_task
from tasks.evaluate.intrinsic import IntrinsicConfig, intrinsic_evaluation
from tasks.evaluate.results import plot_results, render_results
from tasks.evaluate.task_data import SPLITS, TaskData
from tasks.evaluate.url_section import UrlSectionTask, build_url_task
from tasks.parallel import StepRunner, run_inline

if TYPE_CHECKING:
    import torch

# torch and transformers are imported where a model is built or read, not here: loading or checking a config
# (every pretrainflow command, serve's deploy) must not pay their ~5 CPU-s and ~650 MB; nor numpy (task_metrics)

logger = logging.getLogger(__name__)

SCRATCH = "scratch"  # the baseline: the pipeline model's architecture, randomly initialised
PRETRAINED = "pretrained"  # the pipeline's own pretrained model
TaskConfig = Annotated[UrlSectionTask | GlueTask | FileTask | FortunesTask, Field(discriminator="type")]


class EvaluateConfig(BaseModel):
    """Evaluate stage: downstream tasks, models compared, learning-rate grid, seeds and fine-tuning schedule."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    tasks: list[TaskConfig] = Field(default_factory=lambda: [UrlSectionTask()], min_length=1)
    """Downstream tasks: {type: url-section} (offline, from the snapshot), {type: glue, task: rte}, {type: files, ...},
    {type: fortunes} (out of domain: Debian's English fortunes by category)."""
    compare_models: list[Path] = Field(default=[])
    """Further pretrained model folders (Hugging Face format, e.g. data/pretrain/ID/model) to fine-tune too."""
    max_seq_length: int = Field(default=128, ge=8, le=8192)
    """Tokens per example including [CLS] and [SEP]; must not exceed the model's position embeddings."""
    learning_rates: list[float] = Field(default=[1e-4, 3e-4, 1e-3], min_length=1)
    """Grid searched on the dev split (first seed), separately for each model and task."""
    max_grid_extensions: int = Field(default=2, ge=0, le=10)
    """When the best learning rate is the grid's smallest or largest (of two or more), try up to this many
    more beyond it, each one grid step further (the ratio of the two nearest rates), while dev improves."""
    seeds: list[int] = Field(default=[0, 1], min_length=1)
    """Fine-tuning seeds run at the chosen learning rate; the first also runs the grid search."""
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)
    """Schedule of each fine-tuning run (its learning_rate comes from learning_rates)."""
    intrinsic: IntrinsicConfig = Field(default_factory=IntrinsicConfig)
    """Held-out MLM accuracy, perplexity and fill-mask examples of each pretrained model."""

    @field_validator("learning_rates")
    @classmethod
    def _learning_rates_valid(cls, rates: list[float]) -> list[float]:
        bad = [r for r in rates if not 0.0 < r < 1.0]
        if bad:
            raise ValueError(f"learning_rates {bad} out of range; each must be in (0, 1)")
        if len(set(rates)) != len(rates):
            raise ValueError(f"learning_rates {rates} has duplicates")
        return rates

    @field_validator("seeds")
    @classmethod
    def _seeds_valid(cls, seeds: list[int]) -> list[int]:
        bad = [s for s in seeds if not 0 <= s < 2**32]
        if bad:
            raise ValueError(f"seeds {bad} out of range; each must be in [0, 2**32)")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds {seeds} has duplicates")
        return seeds

    @field_validator("compare_models")
    @classmethod
    def _model_folders(cls, folders: list[Path]) -> list[Path]:
        bad = [str(f) for f in folders if not (Path(f) / "config.json").is_file()]
        if bad:
            raise ValueError(f"compare_models {bad} hold no config.json; give Hugging Face model folders "
                             f"such as data/pretrain/<id>/model")
        return folders

    @model_validator(mode="after")
    def _consistent(self) -> EvaluateConfig:
        problems = []
        # a full model_dump() round trip (a deployment's parameters) carries the default: only another value is wrong
        default_rate = FinetuneSettings.model_fields["learning_rate"].default
        if "learning_rate" in self.finetune.model_fields_set and self.finetune.learning_rate != default_rate:
            problems.append(f"finetune.learning_rate={self.finetune.learning_rate} is not used here: the evaluate "
                            "stage picks it from learning_rates; set learning_rates instead")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            problems.append(f"task names {names} repeat; give each task a distinct name")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def model_names(model_dir: Path, compare_models: list[Path]) -> dict[str, Path]:
    """Name -> folder of every pretrained model: 'pretrained' for the pipeline's, the artifact id for others."""
    models = {PRETRAINED: Path(model_dir)}
    for folder in compare_models:
        folder = Path(folder).resolve()
        name = folder.parent.name if folder.name == "model" else folder.name  # data/pretrain/<id>/model -> <id>
        while name in models:
            name += "'"
        models[name] = folder
    return models


def build_task(task: TaskConfig, tokenizer: Any, max_seq_length: int, snapshot_dir: Path,
               task_files_dir: Path) -> TaskData:
    """Read, check and encode one task with one tokenizer (a task made from a package writes its files under
    task_files_dir)."""
    if isinstance(task, UrlSectionTask):
        return build_url_task(task, tokenizer, max_seq_length, snapshot_dir)
    if isinstance(task, GlueTask):
        return build_glue_task(task, tokenizer, max_seq_length)
    if isinstance(task, FortunesTask):
        return build_fortunes_task(task, tokenizer, max_seq_length, task_files_dir)
    return build_file_task(task, tokenizer, max_seq_length)


def build_classifier(init_from: Path | None, config_dir: Path, num_labels: int, seed: int) -> torch.nn.Module:
    """A sequence classifier/regressor from init_from's weights, or (None) config_dir's architecture at random."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    torch.manual_seed(seed)  # the new head (and, from scratch, every weight) is drawn from here
    if init_from is not None:
        # the pretraining heads (MLM, NSP) are dropped; the encoder and pooler are loaded
        return AutoModelForSequenceClassification.from_pretrained(init_from, num_labels=num_labels)
    return AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(config_dir, num_labels=num_labels))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _check_models(cfg: EvaluateConfig, models: dict[str, Path]) -> None:
    from transformers import AutoConfig

    problems = []
    for name, folder in models.items():
        if not (folder / "config.json").is_file():
            problems.append(f"model {name} at {folder} has no config.json (expected a Hugging Face model folder)")
            continue
        max_positions = AutoConfig.from_pretrained(folder).max_position_embeddings
        if cfg.max_seq_length > max_positions:
            problems.append(f"max_seq_length={cfg.max_seq_length} exceeds model {name}'s {max_positions} positions")
    if problems:
        raise ValueError("; ".join(problems))


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class _Runner:
    """Runs (or reuses from runs/) the fine-tuning runs of one evaluation."""

    cfg: EvaluateConfig
    runs_dir: Path
    log_metrics: Callable[[dict[str, float], int], None] | None
    scratch_cache: Path | None = None  # from-scratch runs shared between evaluations, keyed by their inputs
    index: int = 0

    def run(self, data: TaskData, model: str, init_from: Path | None, config_dir: Path, learning_rate: float,
            seed: int) -> dict[str, Any]:
        path = self.runs_dir / f"{data.name}-{model}-lr{learning_rate:g}-seed{seed}.json"
        shared = None
        if model == SCRATCH and self.scratch_cache is not None:
            shared = self.scratch_cache / f"{scratch_run_key(data, config_dir, self.cfg, learning_rate, seed)}.json"
        if path.is_file():
            record = json.loads(path.read_text(encoding="utf-8"))
            logger.info("reusing finished run %s", path.name)
        elif shared is not None and shared.is_file():
            record = json.loads(shared.read_text(encoding="utf-8"))
            _write_atomic(path, json.dumps(record, indent=1))
            logger.info("reusing the from-scratch run %s of another evaluation (same task data, architecture, "
                        "settings and seed)", shared.stem[:16])
        else:
            from model.finetune import finetune
            from tasks.evaluate.task_metrics import score

            classifier = build_classifier(init_from, config_dir, data.num_labels, seed)
            settings = self.cfg.finetune.model_copy(update={"learning_rate": learning_rate})
            eval_sets = {"dev": data.splits["dev"], "test": data.splits["test"]}
            metrics = finetune(classifier, data.splits["train"], eval_sets, settings, seed,
                               score=lambda p, y: score(data.metrics, p, y))
            record = {"task": data.name, "model": model, "learning_rate": learning_rate, "seed": seed, **metrics}
            _write_atomic(path, json.dumps(record, indent=1))
            if shared is not None:
                shared.parent.mkdir(parents=True, exist_ok=True)
                _write_atomic(shared, json.dumps(record, indent=1))
        if self.log_metrics is not None:
            headline = f"dev_{data.metrics[0]}"
            self.log_metrics({f"{data.name}_{model}_{headline}": float(record[headline])}, self.index)
        self.index += 1
        return record

    def mark(self, record: dict[str, Any], **fields: Any) -> dict[str, Any]:
        """Add phase/chosen to a run's saved record (its MLflow child run shows them)."""
        record.update(fields)
        path = self.runs_dir / f"{record['task']}-{record['model']}-lr{record['learning_rate']:g}-seed{record['seed']}.json"
        _write_atomic(path, json.dumps(record, indent=1))
        return record


def scratch_run_key(data: TaskData, config_dir: Path, cfg: EvaluateConfig, learning_rate: float, seed: int) -> str:
    """sha256 of everything a from-scratch fine-tuning run depends on: the encoded examples and labels, the
    architecture (config.json), the fine-tuning settings, learning rate and seed, and the library versions.

    Variants of a sweep that differ only in pretraining (masking, seed, steps) share their scratch runs."""
    import torch
    import transformers

    architecture = json.loads((config_dir / "config.json").read_text(encoding="utf-8"))
    architecture.pop("_name_or_path", None)
    digest = hashlib.sha256(json.dumps({
        "architecture": architecture, "finetune": cfg.finetune.model_dump(mode="json"),
        "learning_rate": learning_rate, "seed": seed, "kind": data.kind, "labels": data.label_names,
        "metrics": list(data.metrics), "torch": torch.__version__, "transformers": transformers.__version__,
    }, sort_keys=True).encode())
    for split in SPLITS:
        examples = data.splits[split]
        for rows in (examples.input_ids, examples.token_type_ids or []):
            for row in rows:
                digest.update(b"%d:" % len(row) + ",".join(map(str, row)).encode())
        digest.update(json.dumps(list(examples.labels)).encode())
    return digest.hexdigest()


def _beyond_the_edge(grid: list[float], best: float, extensions: int) -> list[float]:
    """Learning rates past the grid's edge when the best is at it: each one grid step further (the ratio of
    the two rates nearest that edge), kept inside (0, 1); none for a one-rate grid or a best inside it."""
    if len(grid) < 2 or extensions == 0 or best not in (grid[0], grid[-1]):
        return []
    ratio = grid[-1] / grid[-2] if best == grid[-1] else grid[0] / grid[1]
    rates = [best * ratio ** (i + 1) for i in range(extensions)]
    return [float(f"{r:.3g}") for r in rates if 0.0 < r < 1.0]


def evaluate_model_on_task(runner: _Runner, data: TaskData, model: str, init_from: Path | None,
                           config_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Grid on the first seed, best on dev, then every seed: (summary row, run records)."""
    cfg = runner.cfg
    headline = f"dev_{data.metrics[0]}"
    search = [runner.run(data, model, init_from, config_dir, lr, cfg.seeds[0]) for lr in cfg.learning_rates]
    best = max(search, key=lambda r: r[headline])  # ties: first in the grid
    extended = []
    for rate in _beyond_the_edge(sorted(cfg.learning_rates), best["learning_rate"], cfg.max_grid_extensions):
        record = runner.run(data, model, init_from, config_dir, rate, cfg.seeds[0])
        extended.append(record)
        search.append(record)
        if record[headline] <= best[headline]:
            break
        best = record
    if extended:
        logger.info("%s %s: the best learning rate was at the edge of the grid; tried %s beyond it, chose %g",
                    data.name, model, ", ".join(f"{r['learning_rate']:g}" for r in extended), best["learning_rate"])
    for record in search:
        runner.mark(record, phase="lr_search", chosen=record is best)
    final = [best] + [runner.mark(runner.run(data, model, init_from, config_dir, best["learning_rate"], s),
                                  phase="seed", chosen=True) for s in cfg.seeds[1:]]
    row: dict[str, Any] = {"learning_rate": best["learning_rate"], "dev": best[headline], "seeds": len(final),
                           "grid_extended": [r["learning_rate"] for r in extended]}
    for metric in data.metrics:
        row[f"{metric}_mean"], row[f"{metric}_std"] = _mean_std([r[f"test_{metric}"] for r in final])
    return row, search + final[1:]


def run_evaluation(
    cfg: EvaluateConfig,
    model_dir: Path,
    snapshot_dir: Path,
    out_dir: Path,
    log_metrics: Callable[[dict[str, float], int], None] | None = None,
    instances_dir: Path | None = None,
    run_step: StepRunner = run_inline,
    shared_dir: Path | None = None,
) -> dict[str, int | float]:
    """Every task x (pretrained models + scratch); write results.json/.md/.png and runs/*.json.

    shared_dir: a folder evaluations share: from-scratch runs (scratch-runs/) are kept there for other
    evaluations with the same inputs, and task files made from packages (task-files/); None: neither is shared.

    run_step runs the steps: read tasks, one fine-tuning step per task and model (its learning-rate grid
    and seeds), one intrinsic step per pretrained model, and the report.
    """
    started = time.perf_counter()
    model_dir, snapshot_dir, out_dir = Path(model_dir), Path(snapshot_dir), Path(out_dir)
    models = model_names(model_dir, cfg.compare_models)
    _check_models(cfg, models)
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)

    # every task is read, checked and encoded (with each model's tokenizer) before any training
    task_files = (shared_dir or out_dir) / "task-files"
    data = run_step("read tasks", lambda: _read_tasks(cfg, models, snapshot_dir, task_files))

    runner = _Runner(cfg, runs_dir, log_metrics, shared_dir / "scratch-runs" if shared_dir else None)
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    runs: list[dict[str, Any]] = []
    for task in cfg.tasks:
        summary[task.name] = {}
        for name in [*models, SCRATCH]:
            init_from = None if name == SCRATCH else models[name]
            row, records = run_step(f"fine-tune {task.name} {name}", partial(
                evaluate_model_on_task, runner, data[task.name, name], name, init_from, model_dir))
            summary[task.name][name] = row
            runs += records
    intrinsic = {name: run_step(f"intrinsic {name}", partial(intrinsic_evaluation, folder, instances_dir,
                                                                   cfg.intrinsic))
                 for name, folder in models.items()}
    return run_step("report", lambda: _report(cfg, data, summary, runs, intrinsic, models, out_dir, runner.index,
                                              time.perf_counter() - started))


def _read_tasks(cfg: EvaluateConfig, models: dict[str, Path], snapshot_dir: Path,
                task_files_dir: Path) -> dict[tuple[str, str], TaskData]:
    """Every task read, checked and encoded with each model's tokenizer, keyed (task, model)."""
    from transformers import AutoTokenizer

    tokenizers = {name: AutoTokenizer.from_pretrained(folder) for name, folder in models.items()}
    tokenizers[SCRATCH] = tokenizers[PRETRAINED]
    return {(task.name, name): build_task(task, tokenizer, cfg.max_seq_length, snapshot_dir, task_files_dir)
            for task in cfg.tasks for name, tokenizer in tokenizers.items()}


def _report(cfg: EvaluateConfig, data: dict[tuple[str, str], TaskData], summary: dict[str, dict[str, dict[str, Any]]],
            runs: list[dict[str, Any]], intrinsic: dict[str, Any], models: dict[str, Path], out_dir: Path,
            run_count: int, seconds: float) -> dict[str, int | float]:
    """results.json, results.md, results.png and splits.json; returns the stage statistics."""
    tasks_info = {}
    for task in cfg.tasks:
        task_data = data[task.name, PRETRAINED]
        tasks_info[task.name] = {"kind": task_data.kind, "metrics": list(task_data.metrics),
                                 "labels": task_data.label_names, "majority_rate": task_data.majority_rate(),
                                 **task_data.info}
    results = {
        "models": {name: str(folder) for name, folder in models.items()},
        "tasks": tasks_info,
        "summary": summary,
        "gain": {task: {name: {m: row[f"{m}_mean"] - summary[task][SCRATCH][f"{m}_mean"]
                               for m in tasks_info[task]["metrics"]}
                        for name, row in rows.items() if name != SCRATCH}
                 for task, rows in summary.items()},
        "intrinsic": intrinsic,
        "runs": runs,
        "config": cfg.model_dump(mode="json"),
    }
    results["warnings"] = behind_scratch_warnings(results)
    for warning in results["warnings"]:
        logger.warning(warning)
    _write_atomic(out_dir / "results.json", json.dumps(results, indent=1, default=_json_number))
    _write_atomic(out_dir / "results.md", render_results(results))
    plot_results(results, out_dir / "results.png")
    if data and (split_ids := data[cfg.tasks[0].name, PRETRAINED].split_ids):
        _write_atomic(out_dir / "splits.json", json.dumps(split_ids, indent=1))
    return _stats(results, run_count, seconds)


def behind_scratch_warnings(results: dict[str, Any]) -> list[str]:
    """One line per (task, pretrained model) behind the from-scratch model by more than the seed noise: twice
    the standard error of the difference of the two means over the fine-tuning seeds (needs 2+ seeds)."""
    warnings = []
    for task, rows in results["summary"].items():
        metric = results["tasks"][task]["metrics"][0]
        scratch = rows[SCRATCH]
        for model, row in rows.items():
            if model == SCRATCH or min(row["seeds"], scratch["seeds"]) < 2:
                continue
            gain = row[f"{metric}_mean"] - scratch[f"{metric}_mean"]
            noise = 2 * math.sqrt(row[f"{metric}_std"] ** 2 / row["seeds"] + scratch[f"{metric}_std"] ** 2
                                  / scratch["seeds"])
            if gain >= -noise:
                continue
            mlm = results.get("intrinsic", {}).get(model, {}).get("mlm_accuracy")
            mlm_text = f" (held-out MLM accuracy {mlm:.3f})" if isinstance(mlm, float) else ""
            warnings.append(
                f"{task}: the {model} model is behind the same model trained from scratch by {-gain:.4f} {metric} "
                f"(seed noise ±{noise:.4f}): its pretraining hurts. Likely cause: pretraining too short to "
                f"help{mlm_text}, which can leave the weights worse for fine-tuning than a random start. Pretrain "
                f"longer (pretrain.max_steps), on more text, or with a higher learning rate (pretrain.learning_rate)")
    return warnings


def _json_number(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _stats(results: dict[str, Any], runs: int, seconds: float) -> dict[str, int | float]:
    """Flat, stable metric names for MLflow: <task>_<model>_test_<metric>[_std], <task>_<model>_gain_<metric>."""
    stats: dict[str, int | float] = {"runs": runs, "seconds": seconds}
    for task, rows in results["summary"].items():
        metrics = results["tasks"][task]["metrics"]
        stats[f"{task}_train_examples"] = results["tasks"][task]["split_examples"]["train"]
        for model, row in rows.items():
            stats[f"{task}_{model}_learning_rate"] = row["learning_rate"]
            for metric in metrics:
                stats[f"{task}_{model}_test_{metric}"] = row[f"{metric}_mean"]
                stats[f"{task}_{model}_test_{metric}_std"] = row[f"{metric}_std"]
        for model, gains in results["gain"][task].items():
            for metric, gain in gains.items():
                stats[f"{task}_{model}_gain_{metric}"] = gain
    for model, values in results["intrinsic"].items():
        for key in ("mlm_accuracy", "perplexity", "nsp_accuracy"):
            if isinstance(values.get(key), float):
                stats[f"{model}_{key}"] = values[key]
    return stats
