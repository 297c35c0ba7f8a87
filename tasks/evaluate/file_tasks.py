"""Sentence and sentence-pair tasks from local files: read, check, encode into TaskData.

Everything is read and checked before any fine-tuning starts: a missing column, a label the training
files never use, a non-numeric regression label or an empty split fails with one message naming the
file, the column and the value. GLUE tasks (tasks/evaluate/glue.py) go through the same readers.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from model.finetune_data import LabelledExamples
from tasks.errors import InputError
from tasks.evaluate.task_data import SPLITS, TaskData, TaskKind

if TYPE_CHECKING:  # pyarrow and numpy (task_metrics) are imported where files are read and scored, not with a config
    import pyarrow as pa
    from transformers import PreTrainedTokenizerBase

DATA_FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {"classification": ("accuracy", "macro_f1"),
                                               "regression": ("pearson", "spearman")}


def _check_files(files: list[Path]) -> list[Path]:
    problems = [f"{f} does not exist" for f in files if not Path(f).is_file()]
    problems += [f"{f} has suffix {Path(f).suffix!r}; valid: {', '.join(DATA_FILE_SUFFIXES)}"
                 for f in files if Path(f).suffix.lower() not in DATA_FILE_SUFFIXES]
    if problems:
        raise InputError("; ".join(problems))
    return files


class FileTask(BaseModel):
    """A labelled task from local CSV, TSV, JSONL or Parquet files, one example per row."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    type: Literal["files"] = "files"
    """Task kind: local files."""
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """Name of the task in the results table and metric names."""
    train: list[Path] = Field(min_length=1)
    """Training files."""
    dev: list[Path] = Field(default=[])
    """Files for choosing the learning rate; empty = a stable dev_fraction slice of train."""
    test: list[Path] = Field(min_length=1)
    """Files the reported metrics come from."""
    text_column: str = Field(default="text", min_length=1)
    """Column holding the (first) sentence."""
    pair_column: str | None = None
    """Column holding the second sentence of a pair task; None = single sentences."""
    label_column: str = Field(default="label", min_length=1)
    """Column holding the label: any value for classification (compared as text), a number for regression."""
    kind: TaskKind = "classification"
    """classification (cross-entropy over the training labels) or regression (MSE on one output)."""
    metrics: list[str] | None = None
    """tasks.evaluate.task_metrics names to report, the first choosing the learning rate; None = the kind's defaults."""
    dev_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    """Share of train moved to dev when no dev files are given."""
    max_train_examples: int | None = Field(default=None, ge=1)
    """Use at most this many training rows (a stable hashed subset); None = all."""

    @field_validator("train", "dev", "test")
    @classmethod
    def _files_exist(cls, files: list[Path]) -> list[Path]:
        return _check_files(files)

    @model_validator(mode="after")
    def _metrics_fit_kind(self) -> FileTask:
        from tasks.evaluate.task_metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS

        valid = CLASSIFICATION_METRICS if self.kind == "classification" else REGRESSION_METRICS
        bad = [m for m in self.metrics or () if m not in valid]
        if bad:
            raise InputError(f"metrics {bad} do not apply to a {self.kind} task; valid: {list(valid)}")
        return self


def read_table(path: Path) -> pa.Table:
    """One data file as an Arrow table (.tsv is tab-separated CSV; .json/.jsonl one object per line)."""
    import pyarrow.csv as pa_csv
    import pyarrow.json as pa_json
    import pyarrow.parquet as pq

    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        return pq.read_table(path)
    if suffix == ".tsv":  # GLUE's TSVs hold bare quotes inside sentences: no quoting
        return pa_csv.read_csv(path, parse_options=pa_csv.ParseOptions(delimiter="\t", quote_char=False))
    if suffix == ".csv":
        return pa_csv.read_csv(path)
    return pa_json.read_json(path)


@dataclass
class Rows:
    """Raw rows of one split: texts, optional pairs, labels, and where each came from (file, row)."""

    texts: list[str]
    pairs: list[str] | None
    labels: list[Any]
    origins: list[tuple[str, int]]


def _stable_fraction(key: str) -> float:
    """A number in [0, 1) fixed by the key: stable subsets and dev slices, independent of file order."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:12], 16) / 16**12


def read_rows(files: list[Path], text_column: str, pair_column: str | None, label_column: str,
              problems: list[str]) -> Rows:
    """Rows of the files; a missing column is added to problems (every file is checked)."""
    rows = Rows([], [] if pair_column else None, [], [])
    for path in files:
        table = read_table(path)
        needed = [c for c in (text_column, pair_column, label_column) if c]
        missing = [c for c in needed if c not in table.column_names]
        if missing:
            problems.append(f"{path}: no column {missing[0]!r}" + (f" (nor {missing[1:]})" if missing[1:] else "")
                            + f"; its columns are {table.column_names}")
            continue
        columns = {c: table[c].to_pylist() for c in needed}
        for i, text in enumerate(columns[text_column]):
            rows.texts.append(text or "")
            if rows.pairs is not None:
                rows.pairs.append(columns[pair_column][i] or "")
            rows.labels.append(columns[label_column][i])
            rows.origins.append((str(path), i))
    return rows


def _subset(rows: Rows, keep: list[int]) -> Rows:
    return Rows([rows.texts[i] for i in keep], None if rows.pairs is None else [rows.pairs[i] for i in keep],
                [rows.labels[i] for i in keep], [rows.origins[i] for i in keep])


def _row_key(rows: Rows, i: int) -> str:
    return rows.texts[i] + "\x00" + (rows.pairs[i] if rows.pairs is not None else "")


def carve_dev(train: Rows, fraction: float) -> tuple[Rows, Rows]:
    """(train, dev): rows whose hashed text falls under fraction go to dev."""
    to_dev = [_stable_fraction("dev:" + _row_key(train, i)) < fraction for i in range(len(train.texts))]
    return (_subset(train, [i for i, d in enumerate(to_dev) if not d]),
            _subset(train, [i for i, d in enumerate(to_dev) if d]))


def cap_rows(rows: Rows, limit: int | None) -> Rows:
    """At most limit rows, chosen by hash (a stable subset that keeps the label mix), in original order."""
    if limit is None or len(rows.texts) <= limit:
        return rows
    ranked = sorted(range(len(rows.texts)), key=lambda i: _stable_fraction("cap:" + _row_key(rows, i)))
    return _subset(rows, sorted(ranked[:limit]))


def label_ids(splits: dict[str, Rows], kind: TaskKind, label_column: str, problems: list[str],
              label_names: list[str] | None = None) -> tuple[dict[str, list[Any]], list[str] | None]:
    """Numeric labels per split and the class names; unseen, missing or non-numeric labels go to problems."""
    out: dict[str, list[Any]] = {}
    if kind == "regression":
        for split, rows in splits.items():
            values = []
            for value, (path, row) in zip(rows.labels, rows.origins):
                number = _number(value)
                if number is None:
                    problems.append(f"{path}: column {label_column!r} row {row} holds {value!r}, not a number; "
                                    f"a regression task needs numeric labels")
                values.append(number)
            out[split] = values
        return out, None
    if label_names is None:
        seen = {str(v) for v in splits["train"].labels if v is not None}
        label_names = sorted(seen, key=lambda v: (_number(v) is None, _number(v) or 0.0, v))
    index = {name: i for i, name in enumerate(label_names)}
    for split, rows in splits.items():
        ids = []
        for value, (path, row) in zip(rows.labels, rows.origins):
            if value is None or str(value) not in index:
                what = "has no label" if value is None else f"holds label {value!r}, which the training files never use"
                problems.append(f"{path}: column {label_column!r} row {row} {what}; training labels: {label_names}")
                ids.append(0)
            else:
                ids.append(index[str(value)])
        out[split] = ids
    return out, label_names


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def encode(rows: Rows, labels: list[Any], tokenizer: PreTrainedTokenizerBase, max_seq_length: int) -> LabelledExamples:
    """[CLS] A [SEP] (B [SEP]) token ids, truncated to max_seq_length (longest segment first)."""
    if not rows.texts:
        return LabelledExamples([], [], [] if rows.pairs is not None else None)
    encoded = tokenizer(rows.texts, rows.pairs, truncation=True, max_length=max_seq_length, verbose=False)
    types = encoded["token_type_ids"] if rows.pairs is not None else None
    return LabelledExamples(encoded["input_ids"], labels, types)


def finish_task(name: str, kind: TaskKind, metrics: tuple[str, ...], splits: dict[str, Rows], label_column: str,
                tokenizer: PreTrainedTokenizerBase, max_seq_length: int, problems: list[str], info: dict[str, Any],
                label_names: list[str] | None = None) -> TaskData:
    """Check labels and split sizes, raise every problem at once, then encode."""
    for split in SPLITS:
        if not splits[split].texts:
            problems.append(f"task {name!r}: the {split} split is empty")
    labels, names = label_ids(splits, kind, label_column, problems, label_names)
    if problems:
        raise InputError(f"task {name!r} cannot be used:\n  - " + "\n  - ".join(problems))
    encoded = {split: encode(splits[split], labels[split], tokenizer, max_seq_length) for split in SPLITS}
    sizes = {split: len(splits[split].texts) for split in SPLITS}
    return TaskData(name, kind, names, encoded, metrics, {**info, "split_examples": sizes})


def build_file_task(task: FileTask, tokenizer: PreTrainedTokenizerBase, max_seq_length: int) -> TaskData:
    """Read, check and encode a local-files task."""
    problems: list[str] = []
    columns = (task.text_column, task.pair_column, task.label_column)
    train = cap_rows(read_rows(task.train, *columns, problems), task.max_train_examples)
    if task.dev:
        dev = read_rows(task.dev, *columns, problems)
    else:
        train, dev = carve_dev(train, task.dev_fraction)
    test = read_rows(task.test, *columns, problems)
    metrics = tuple(task.metrics or DEFAULT_METRICS[task.kind])
    info = {"source": "files", "files": {s: [str(f) for f in getattr(task, s)] for s in SPLITS}}
    return finish_task(task.name, task.kind, metrics, {"train": train, "dev": dev, "test": test}, task.label_column,
                       tokenizer, max_seq_length, problems, info)
