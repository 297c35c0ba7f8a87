"""Evaluate stage: fine-tune the pretrained model and a from-scratch twin on a downstream task.

The default task is built from the corpus snapshot itself: each document's label is a regex group
on its URL (for the Python docs, the site section: library, c-api, howto, tutorial, ...), documents
are cut into `max_seq_length`-token chunks, and train/dev/test are split by document.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase

from model.finetune import FinetuneSettings, LabelledExamples, finetune

logger = logging.getLogger(__name__)

INITS = ("pretrained", "scratch")
"""The two initialisations compared: the model dir's weights, and the same architecture at random."""
SPLITS = ("train", "dev", "test")
DATA_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


class DownstreamTaskConfig(BaseModel):
    """Where the labelled examples come from and how documents become examples and splits."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    task_name: str = Field(default="url-section", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """Name of the task in the results table."""
    data_files: list[Path] | None = None
    """Labelled jsonl/csv/parquet files (one document per row); None derives labels from the snapshot URLs."""
    text_column: str = Field(default="text", min_length=1)
    """Column of data_files holding the document text."""
    label_column: str = Field(default="label", min_length=1)
    """Column of data_files holding the label (any type; compared as text)."""
    label_from_url: str = r"^[a-z]+://[^/]+/([^/]+)/"
    """Regex searched in each snapshot URL; group 1 is the label (default: the first path segment)."""
    min_documents_per_class: int = Field(default=10, ge=3)
    """Classes with fewer usable documents are dropped (3 is the least that fills train, dev and test)."""
    max_classes: int = Field(default=8, ge=2)
    """Keep at most this many classes, the ones with the most documents."""
    max_examples_per_class: int = Field(default=400, ge=3)
    """Cap on the chunks of one class over all splits, taken round-robin across its documents."""
    chunks_per_document: int = Field(default=4, ge=1)
    """At most this many chunks per document, spread evenly through it."""
    min_chunk_tokens: int = Field(default=16, ge=1)
    """A document's trailing partial chunk is kept only if it has at least this many tokens."""
    dev_fraction: float = Field(default=0.15, gt=0.0, lt=0.5)
    """Fraction of each class's documents in the dev split (learning-rate selection)."""
    test_fraction: float = Field(default=0.2, gt=0.0, lt=0.5)
    """Fraction of each class's documents in the test split (reported metrics)."""

    @field_validator("data_files")
    @classmethod
    def _data_files_exist(cls, files: list[Path] | None) -> list[Path] | None:
        if files is None:
            return None
        if not files:
            raise ValueError("data_files is empty: give at least one file, or None to derive labels from the snapshot")
        problems = [f"{f} does not exist" for f in files if not f.is_file()]
        problems += [
            f"{f} has suffix {f.suffix!r}; valid: {', '.join(DATA_FILE_SUFFIXES)}"
            for f in files
            if f.suffix.lower() not in DATA_FILE_SUFFIXES
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return files

    @field_validator("label_from_url")
    @classmethod
    def _regex_has_group(cls, pattern: str) -> str:
        try:
            compiled = re.compile(pattern)
        except re.error as error:
            raise ValueError(f"label_from_url {pattern!r} is not a valid regex: {error}") from None
        if compiled.groups < 1:
            raise ValueError(f"label_from_url {pattern!r} has no capture group; wrap the label part in (...)")
        return pattern

    @model_validator(mode="after")
    def _consistent(self) -> DownstreamTaskConfig:
        if self.max_examples_per_class < self.min_documents_per_class:
            raise ValueError(
                f"max_examples_per_class={self.max_examples_per_class} is below min_documents_per_class="
                f"{self.min_documents_per_class}; it must be at least that so every kept document gives a chunk"
            )
        return self


class EvaluateConfig(BaseModel):
    """Evaluate stage: downstream task, learning-rate grid, seeds and fine-tuning schedule."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    task: DownstreamTaskConfig = Field(default_factory=DownstreamTaskConfig)
    """The downstream classification task."""
    max_seq_length: int = Field(default=128, ge=8, le=8192)
    """Tokens per example including [CLS] and [SEP]; must not exceed the model's position embeddings."""
    learning_rates: list[float] = Field(default=[1e-4, 3e-4, 1e-3], min_length=1)
    """Grid searched on the dev split (first seed), separately for each initialisation."""
    seeds: list[int] = Field(default=[0, 1], min_length=1)
    """Fine-tuning seeds run at the chosen learning rate; the first also runs the grid search."""
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)
    """Schedule of each fine-tuning run (its learning_rate comes from learning_rates)."""

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

    @model_validator(mode="after")
    def _learning_rate_from_grid(self) -> EvaluateConfig:
        if "learning_rate" in self.finetune.model_fields_set:
            raise ValueError(
                f"finetune.learning_rate={self.finetune.learning_rate} is not used here: "
                "the evaluate stage picks it from learning_rates; set learning_rates instead"
            )
        return self


@dataclass(frozen=True)
class Document:
    """One labelled document."""

    doc_id: str
    text: str
    label: str


@dataclass(frozen=True)
class TaskDataset:
    """The examples of a downstream task, split by document."""

    class_names: list[str]
    splits: dict[str, LabelledExamples]
    split_doc_ids: dict[str, list[str]]
    class_documents: dict[str, int]  # usable documents per class before the example cap
    class_examples: dict[str, dict[str, int]]  # split -> class -> examples
    dropped: dict[str, int]  # reason -> documents


def _doc_hash(doc_id: str) -> str:
    """Stable order of documents for capping and splitting, independent of file order."""
    return hashlib.sha256(doc_id.encode("utf-8")).hexdigest()


def load_documents(task: DownstreamTaskConfig, snapshot_dir: Path) -> tuple[list[Document], dict[str, int]]:
    """Labelled documents from data_files, or from the snapshot with labels taken from the URL regex."""
    dropped: Counter[str] = Counter()
    documents: dict[str, Document] = {}
    if task.data_files is not None:
        for path in task.data_files:
            table = _read_table(path)
            missing = [c for c in (task.text_column, task.label_column) if c not in table.column_names]
            if missing:
                raise ValueError(f"{path} lacks column(s) {missing}; it has {table.column_names}")
            for text, label in zip(table[task.text_column].to_pylist(), table[task.label_column].to_pylist()):
                if not text or label is None:
                    dropped["missing_text_or_label"] += 1
                    continue
                doc_id = hashlib.sha256(text.encode("utf-8")).hexdigest()
                _add_unique(documents, Document(doc_id, text, str(label)), dropped)
        return list(documents.values()), dict(dropped)

    shards = sorted(snapshot_dir.glob("documents-*.parquet"))
    if not shards:
        raise FileNotFoundError(f"no documents-*.parquet in snapshot dir {snapshot_dir}")
    pattern = re.compile(task.label_from_url)
    for shard in shards:
        table = pq.read_table(shard, columns=["id", "url", "text"])
        for doc_id, url, text in zip(*(table[c].to_pylist() for c in ("id", "url", "text"))):
            match = pattern.search(url or "")
            if match is None or not match.group(1):
                dropped["url_without_label"] += 1
                continue
            if not text:
                dropped["empty_text"] += 1
                continue
            _add_unique(documents, Document(doc_id, text, match.group(1)), dropped)
    return list(documents.values()), dict(dropped)


def _add_unique(documents: dict[str, Document], document: Document, dropped: Counter[str]) -> None:
    if document.doc_id in documents:
        dropped["duplicate_document"] += 1
    else:
        documents[document.doc_id] = document


def _read_table(path: Path) -> pa.Table:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pq.read_table(path)
    if suffix == ".csv":
        return pa_csv.read_csv(path)
    return pa_json.read_json(path)  # .jsonl / .json: one JSON object per line


def chunk_token_ids(token_ids: list[int], window: int, max_chunks: int, min_chunk_tokens: int) -> list[list[int]]:
    """Up to max_chunks non-overlapping windows of the document, spread evenly from start to end."""
    starts = list(range(0, len(token_ids), window))
    if starts and len(token_ids) - starts[-1] < min(min_chunk_tokens, window):
        starts.pop()  # a short tail carries too little text to classify
    if len(starts) > max_chunks:
        picks = np.linspace(0, len(starts) - 1, max_chunks).round().astype(int)
        starts = [starts[i] for i in picks]
    return [token_ids[s : s + window] for s in starts]


def _split_sizes(n: int, dev_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(dev, test) document counts for a class of n >= 3 documents, each >= 1, leaving >= 1 for train."""
    n_dev = max(1, round(n * dev_fraction))
    n_test = max(1, round(n * test_fraction))
    while n_dev + n_test > n - 1:
        if n_test >= n_dev and n_test > 1:
            n_test -= 1
        else:
            n_dev -= 1
    return n_dev, n_test


def build_task_dataset(
    task: DownstreamTaskConfig, tokenizer: PreTrainedTokenizerBase, max_seq_length: int, snapshot_dir: Path
) -> TaskDataset:
    """Label, chunk, cap and split (by document, stratified by class) the task's examples."""
    documents, dropped = load_documents(task, snapshot_dir)
    by_class: dict[str, list[Document]] = {}
    for document in documents:
        by_class.setdefault(document.label, []).append(document)
    candidates = {label: docs for label, docs in by_class.items() if len(docs) >= task.min_documents_per_class}

    # tokenize only documents of classes that can still qualify
    window = max_seq_length - 2  # room for [CLS] and [SEP]
    chunks: dict[str, list[list[int]]] = {}
    texts = [d for docs in candidates.values() for d in docs]
    if texts:
        encoded = tokenizer([d.text for d in texts], add_special_tokens=False, verbose=False)["input_ids"]
        for document, token_ids in zip(texts, encoded):
            doc_chunks = chunk_token_ids(token_ids, window, task.chunks_per_document, task.min_chunk_tokens)
            if doc_chunks:
                chunks[document.doc_id] = doc_chunks
    usable = {
        label: sorted((d for d in docs if d.doc_id in chunks), key=lambda d: _doc_hash(d.doc_id))
        for label, docs in candidates.items()
    }
    ranked = sorted(
        (label for label, docs in usable.items() if len(docs) >= task.min_documents_per_class),
        key=lambda label: (-len(usable[label]), label),
    )
    class_names = sorted(ranked[: task.max_classes])
    if len(class_names) < 2:
        counts = dict(Counter(d.label for d in documents).most_common(20))
        raise ValueError(
            f"task {task.task_name!r} needs at least 2 classes with >= {task.min_documents_per_class} usable "
            f"documents; documents per label found: {counts}"
        )
    dropped["class_not_kept"] = sum(len(docs) for label, docs in by_class.items() if label not in class_names)
    dropped["too_short"] = sum(len(by_class[label]) - len(usable[label]) for label in class_names)

    rows: dict[str, tuple[list[list[int]], list[int]]] = {split: ([], []) for split in SPLITS}
    split_doc_ids: dict[str, list[str]] = {split: [] for split in SPLITS}
    class_examples = {split: dict.fromkeys(class_names, 0) for split in SPLITS}
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    for label_id, label in enumerate(class_names):
        docs = usable[label]  # in split order
        # round-robin over documents (first chunk of each, then second, ...) so the cap keeps many documents;
        # the round order is a second hash, or the documents that get extra chunks would all land in test
        round_robin = sorted(docs, key=lambda d: _doc_hash("cap:" + d.doc_id))
        taken: dict[str, list[list[int]]] = {}
        budget = task.max_examples_per_class
        for round_index in range(task.chunks_per_document):
            for document in round_robin:
                if budget and round_index < len(chunks[document.doc_id]):
                    taken.setdefault(document.doc_id, []).append(chunks[document.doc_id][round_index])
                    budget -= 1
        kept = [d for d in docs if d.doc_id in taken]  # still in hash order
        n_dev, n_test = _split_sizes(len(kept), task.dev_fraction, task.test_fraction)
        assignment = ["test"] * n_test + ["dev"] * n_dev + ["train"] * (len(kept) - n_dev - n_test)
        for document, split in zip(kept, assignment):
            split_doc_ids[split].append(document.doc_id)
            for chunk in taken[document.doc_id]:
                rows[split][0].append([cls_id, *chunk, sep_id])
                rows[split][1].append(label_id)
                class_examples[split][label] += 1

    return TaskDataset(
        class_names=class_names,
        splits={split: LabelledExamples(*rows[split]) for split in SPLITS},
        split_doc_ids=split_doc_ids,
        class_documents={label: len(usable[label]) for label in class_names},
        class_examples=class_examples,
        dropped=dropped,
    )


def build_classifier(init: str, model_dir: Path, num_labels: int, seed: int) -> torch.nn.Module:
    """A sequence classifier from model_dir's weights ('pretrained') or its config at random ('scratch')."""
    torch.manual_seed(seed)  # the new classifier head (and, for scratch, every weight) is drawn from here
    if init == "pretrained":
        # the pretraining heads (MLM, NSP) are dropped; the encoder and pooler are loaded
        return AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels)
    if init == "scratch":
        config = AutoConfig.from_pretrained(model_dir, num_labels=num_labels)
        return AutoModelForSequenceClassification.from_config(config)
    raise ValueError(f"init {init!r} unknown; valid: {INITS}")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _check_inputs(cfg: EvaluateConfig, model_dir: Path) -> None:
    problems = []
    if not (model_dir / "config.json").is_file():
        problems.append(f"model_dir {model_dir} has no config.json (expected a Hugging Face model folder)")
    else:
        max_positions = AutoConfig.from_pretrained(model_dir).max_position_embeddings
        if cfg.max_seq_length > max_positions:
            problems.append(f"max_seq_length={cfg.max_seq_length} exceeds the model's {max_positions} positions")
    if problems:
        raise ValueError("; ".join(problems))


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def run_evaluation(
    cfg: EvaluateConfig,
    model_dir: Path,
    snapshot_dir: Path,
    out_dir: Path,
    log_metrics: Callable[[dict[str, float], int], None] | None = None,
) -> dict[str, int | float]:
    """Fine-tune pretrained vs scratch (lr chosen on dev, then every seed); write results.json/.md."""
    started = time.perf_counter()
    model_dir, snapshot_dir, out_dir = Path(model_dir), Path(snapshot_dir), Path(out_dir)
    _check_inputs(cfg, model_dir)
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dataset = build_task_dataset(cfg.task, tokenizer, cfg.max_seq_length, snapshot_dir)
    _write_atomic(out_dir / "splits.json", json.dumps(dataset.split_doc_ids, indent=1))
    logger.info(
        "task %s: %d classes %s; examples train/dev/test %s",
        cfg.task.task_name,
        len(dataset.class_names),
        dataset.class_names,
        [len(dataset.splits[s]) for s in SPLITS],
    )

    run_index = 0

    def run(init: str, learning_rate: float, seed: int, phase: str) -> dict[str, Any]:
        """One fine-tuning run, reused from runs/ if an earlier attempt finished it."""
        nonlocal run_index
        path = runs_dir / f"{init}-lr{learning_rate:g}-seed{seed}.json"
        if path.is_file():
            record = json.loads(path.read_text(encoding="utf-8"))
            logger.info("reusing finished run %s", path.name)
        else:
            model = build_classifier(init, model_dir, len(dataset.class_names), seed)
            settings = cfg.finetune.model_copy(update={"learning_rate": learning_rate})
            eval_sets = {"dev": dataset.splits["dev"], "test": dataset.splits["test"]}
            metrics = finetune(model, dataset.splits["train"], eval_sets, settings, seed)
            record = {"init": init, "learning_rate": learning_rate, "seed": seed, **metrics}
            _write_atomic(path, json.dumps(record, indent=1))
        record = {**record, "phase": phase}
        if log_metrics is not None:
            logged = {"learning_rate": learning_rate, "seed": float(seed)}
            logged |= {k: v for k, v in record.items() if k.startswith(("dev_", "test_", "train_"))}
            log_metrics({f"{init}_{k}": float(v) for k, v in logged.items()}, run_index)
        run_index += 1
        return record

    runs: list[dict[str, Any]] = []
    chosen: dict[str, float] = {}
    summary: dict[str, dict[str, float]] = {}
    for init in INITS:
        search = [run(init, lr, cfg.seeds[0], "lr_search") for lr in cfg.learning_rates]
        best = max(search, key=lambda r: (r["dev_accuracy"], r["dev_macro_f1"]))  # ties: first in grid
        chosen[init] = best["learning_rate"]
        for record in search:
            record["chosen"] = record is best
        final = [{**best, "phase": "seed"}] + [run(init, chosen[init], s, "seed") for s in cfg.seeds[1:]]
        runs += search + final[1:]
        acc_mean, acc_std = _mean_std([r["test_accuracy"] for r in final])
        f1_mean, f1_std = _mean_std([r["test_macro_f1"] for r in final])
        summary[init] = {
            "test_accuracy_mean": acc_mean,
            "test_accuracy_std": acc_std,
            "test_macro_f1_mean": f1_mean,
            "test_macro_f1_std": f1_std,
            "dev_accuracy": best["dev_accuracy"],
            "seeds": len(final),
        }

    results = {
        "task": cfg.task.task_name,
        "source": "data_files" if cfg.task.data_files is not None else "snapshot_urls",
        "model_dir": str(model_dir),
        "classes": dataset.class_names,
        "class_documents": dataset.class_documents,
        "class_examples": dataset.class_examples,
        "split_documents": {s: len(ids) for s, ids in dataset.split_doc_ids.items()},
        "split_examples": {s: len(dataset.splits[s]) for s in SPLITS},
        "dropped_documents": dataset.dropped,
        "learning_rates": cfg.learning_rates,
        "seeds": cfg.seeds,
        "chosen_learning_rate": chosen,
        "summary": summary,
        "gain": {
            "accuracy": summary["pretrained"]["test_accuracy_mean"] - summary["scratch"]["test_accuracy_mean"],
            "macro_f1": summary["pretrained"]["test_macro_f1_mean"] - summary["scratch"]["test_macro_f1_mean"],
        },
        "runs": runs,
        "config": cfg.model_dump(mode="json"),
    }
    _write_atomic(out_dir / "results.json", json.dumps(results, indent=1))
    _write_atomic(out_dir / "results.md", render_results_table(results))

    stats: dict[str, int | float] = {
        "classes": len(dataset.class_names),
        **{f"{s}_examples": len(dataset.splits[s]) for s in SPLITS},
        **{f"{s}_documents": len(ids) for s, ids in dataset.split_doc_ids.items()},
        "runs": run_index,
        "gain_accuracy": results["gain"]["accuracy"],
        "gain_macro_f1": results["gain"]["macro_f1"],
        "seconds": time.perf_counter() - started,
    }
    for init in INITS:
        stats[f"{init}_learning_rate"] = chosen[init]
        stats[f"{init}_test_accuracy"] = summary[init]["test_accuracy_mean"]
        stats[f"{init}_test_accuracy_std"] = summary[init]["test_accuracy_std"]
        stats[f"{init}_test_macro_f1"] = summary[init]["test_macro_f1_mean"]
        stats[f"{init}_test_macro_f1_std"] = summary[init]["test_macro_f1_std"]
    return stats


def render_results_table(results: dict[str, Any]) -> str:
    """Markdown table of a results.json dict (one row per initialisation) plus the pretraining gain."""
    lines = [
        "| task | init | chosen lr | test accuracy (mean ± std) | macro-F1 (mean ± std) | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for init, row in results["summary"].items():
        lines.append(
            f"| {results['task']} | {init} | {results['chosen_learning_rate'][init]:g} "
            f"| {row['test_accuracy_mean']:.4f} ± {row['test_accuracy_std']:.4f} "
            f"| {row['test_macro_f1_mean']:.4f} ± {row['test_macro_f1_std']:.4f} | {int(row['seeds'])} |"
        )
    gain = results["gain"]
    sizes = results["split_examples"]
    lines += [
        "",
        f"Pretraining gain (pretrained − scratch, test mean): {100 * gain['accuracy']:+.2f} accuracy points, "
        f"{100 * gain['macro_f1']:+.2f} macro-F1 points.",
        f"{len(results['classes'])} classes ({', '.join(results['classes'])}); examples train/dev/test "
        f"{sizes['train']}/{sizes['dev']}/{sizes['test']}; chance accuracy ≤ "
        f"{_majority_rate(results):.4f} (majority class of test).",
    ]
    return "\n".join(lines) + "\n"


def _majority_rate(results: dict[str, Any]) -> float:
    test = results["class_examples"]["test"]
    total = sum(test.values())
    return max(test.values()) / total if total else math.nan
