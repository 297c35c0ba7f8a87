"""GLUE tasks from the local Hugging Face cache or a folder of their files (never downloaded at run time).

GLUE's test labels are hidden, so a GLUE task reports on its validation split and picks learning rates
on a slice of its training split (hashed, stable). Rows go through tasks/evaluate/file_tasks.py's readers and checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.evaluate.file_tasks import DATA_FILE_SUFFIXES, Rows, cap_rows, carve_dev, finish_task, read_rows
from tasks.evaluate.task_data import TaskData, TaskKind

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class GlueSpec:
    """One GLUE task: its columns, kind and official metrics (the first heads the table)."""

    text_column: str
    pair_column: str | None
    kind: TaskKind
    metrics: tuple[str, ...]


GLUE_TASKS: dict[str, GlueSpec] = {
    "sst2": GlueSpec("sentence", None, "classification", ("accuracy",)),
    "cola": GlueSpec("sentence", None, "classification", ("matthews",)),
    "mrpc": GlueSpec("sentence1", "sentence2", "classification", ("f1", "accuracy")),
    "qnli": GlueSpec("question", "sentence", "classification", ("accuracy",)),
    "rte": GlueSpec("sentence1", "sentence2", "classification", ("accuracy",)),
    "stsb": GlueSpec("sentence1", "sentence2", "regression", ("pearson", "spearman")),
}
GLUE_HUB_ID = "nyu-mll/glue"


class GlueTask(BaseModel):
    """A GLUE task from the local Hugging Face cache or a folder of its files (never downloaded at run time)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    type: Literal["glue"] = "glue"
    """Task kind: GLUE."""
    task: Literal["sst2", "cola", "mrpc", "qnli", "rte", "stsb"]
    """Which GLUE task (official metrics: SST-2/QNLI/RTE accuracy, CoLA Matthews, MRPC F1, STS-B Pearson)."""
    data_dir: Path | None = None
    """Folder with train.* and validation.* (csv/tsv/jsonl/parquet) in GLUE's columns; None = HF cache."""
    dev_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    """Share of GLUE train used as dev (GLUE's validation split is the test split here)."""
    max_train_examples: int | None = Field(default=None, ge=1)
    """Use at most this many training rows (a stable hashed subset); None = all."""
    max_test_examples: int | None = Field(default=None, ge=1)
    """Use at most this many validation rows as test; None = all."""

    @field_validator("data_dir")
    @classmethod
    def _folder(cls, folder: Path | None) -> Path | None:
        if folder is not None and not Path(folder).is_dir():
            raise ValueError(f"data_dir {str(folder)!r} is not a folder; give one holding train.* and validation.*")
        return folder

    @model_validator(mode="after")
    def _in_cache(self) -> GlueTask:
        if self.data_dir is None:  # refused with the config, not in the evaluate stage after pretraining
            load_glue_from_cache(self.task)
        return self

    @property
    def name(self) -> str:
        return self.task


def _glue_files(folder: Path, split: str) -> list[Path]:
    return sorted(p for p in Path(folder).glob(f"{split}.*") if p.suffix.lower() in DATA_FILE_SUFFIXES)


def load_glue_from_cache(task: str) -> Any:
    """GLUE `task`'s DatasetDict from the local Hugging Face cache, offline; a ValueError saying how to get it
    when it is not there (checked when the config is validated, and again when the stage reads it)."""
    from tasks.corpus.hf_datasets import offline_datasets  # the one place that sets Hugging Face's offline switches

    spec = GLUE_TASKS[task]
    datasets = offline_datasets()
    if not datasets.config.HF_HUB_OFFLINE:  # never download at run time, whoever imported datasets first
        raise ValueError(f"GLUE {task!r}: datasets was imported before offline mode could be set; set "
                         f"HF_HUB_OFFLINE=1 to read it from the local cache, or set data_dir to local files")
    try:
        return datasets.load_dataset(GLUE_HUB_ID, task)
    except Exception as exc:  # datasets raises many types for a missing cache entry
        raise ValueError(
            f"GLUE {task!r} is not in the local Hugging Face cache and nothing is downloaded at run time "
            f"({type(exc).__name__}: {str(exc)[:200]}). Either run `python -c \"import datasets; "
            f"datasets.load_dataset('{GLUE_HUB_ID}', '{task}')\"` on a connected machine and copy its "
            f"~/.cache/huggingface here, or set data_dir to a folder with train.* and validation.* files "
            f"(csv, tsv, jsonl or parquet) with columns {[c for c in (spec.text_column, spec.pair_column) if c]} "
            f"and 'label'"
        ) from exc


def _glue_from_cache(task: GlueTask, spec: GlueSpec) -> tuple[dict[str, Rows], list[str] | None]:
    """GLUE train and validation from the Hugging Face cache, offline, as rows."""
    loaded = load_glue_from_cache(task.task)
    features = loaded["train"].features.get("label")
    names = list(getattr(features, "names", []) or []) or None
    splits = {}
    for split in ("train", "validation"):
        table = loaded[split].data.table if hasattr(loaded[split].data, "table") else loaded[split].data
        rows = Rows([], [] if spec.pair_column else None, [], [])
        texts = table[spec.text_column].to_pylist()
        pairs = table[spec.pair_column].to_pylist() if spec.pair_column else None
        for i, (text, label) in enumerate(zip(texts, table["label"].to_pylist())):
            rows.texts.append(text or "")
            if rows.pairs is not None:
                rows.pairs.append(pairs[i] or "")
            rows.labels.append(names[label] if names and label is not None and label >= 0 else label)
            rows.origins.append((f"{GLUE_HUB_ID}/{task.task}/{split}", i))
        splits[split] = rows
    return splits, names


def build_glue_task(task: GlueTask, tokenizer: PreTrainedTokenizerBase, max_seq_length: int) -> TaskData:
    """GLUE train (minus a dev slice) for fine-tuning, GLUE validation as the reported test split."""
    spec = GLUE_TASKS[task.task]
    problems: list[str] = []
    names = None
    if task.data_dir is not None:
        columns = (spec.text_column, spec.pair_column, "label")
        found = {split: _glue_files(task.data_dir, split) for split in ("train", "validation")}
        for split, files in found.items():
            if not files:
                problems.append(f"{task.data_dir}: no {split}.* file (valid suffixes: {', '.join(DATA_FILE_SUFFIXES)})")
        raw = {split: read_rows(files, *columns, problems) for split, files in found.items()}
        source = str(task.data_dir)
    else:
        raw, names = _glue_from_cache(task, spec)
        source = f"{GLUE_HUB_ID} (local cache)"
        if names:  # GLUE's label names in id order, so label ids match the dataset's
            names = [str(n) for n in names]
    train, dev = carve_dev(cap_rows(raw["train"], task.max_train_examples), task.dev_fraction)
    test = cap_rows(raw["validation"], task.max_test_examples)
    return finish_task(task.task, spec.kind, spec.metrics, {"train": train, "dev": dev, "test": test}, "label",
                       tokenizer, max_seq_length, problems, {"source": source, "glue": task.task}, names)
