"""The offline built-in task: which section of a site a passage comes from, labelled by its URL.

Each snapshot document's label is a regex group on its URL (for the Python docs, the site section:
library, c-api, howto, tutorial, ...); documents are cut into `max_seq_length`-token chunks, and
train/dev/test are split by document, stratified by class, so no document leaks across splits.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from model.finetune_data import LabelledExamples
from tasks.evaluate.task_data import SPLITS, TaskData

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class UrlSectionTask(BaseModel):
    """Classify passages of the corpus snapshot by a label taken from their URL (works offline)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    type: Literal["url-section"] = "url-section"
    """Task kind: labels from snapshot URLs."""
    name: str = Field(default="url-section", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """Name of the task in the results table and metric names."""
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
    def _consistent(self) -> UrlSectionTask:
        if self.max_examples_per_class < self.min_documents_per_class:
            raise ValueError(
                f"max_examples_per_class={self.max_examples_per_class} is below min_documents_per_class="
                f"{self.min_documents_per_class}; it must be at least that so every kept document gives a chunk"
            )
        return self


@dataclass(frozen=True)
class Document:
    """One labelled document."""

    doc_id: str
    text: str
    label: str


def _doc_hash(doc_id: str) -> str:
    """Stable order of documents for capping and splitting, independent of file order."""
    return hashlib.sha256(doc_id.encode("utf-8")).hexdigest()


def load_documents(task: UrlSectionTask, snapshot_dir: Path) -> tuple[list[Document], dict[str, int]]:
    """Labelled documents of the snapshot, with labels taken from the URL regex."""
    import pyarrow.parquet as pq  # here, not at the top: UrlSectionTask is part of every config load

    dropped: Counter[str] = Counter()
    documents: dict[str, Document] = {}
    shards = sorted(Path(snapshot_dir).glob("documents-*.parquet"))
    if not shards:
        raise FileNotFoundError(f"no documents-*.parquet in snapshot dir {snapshot_dir}")
    pattern = re.compile(task.label_from_url)
    for shard in shards:
        table = pq.read_table(shard, columns=["id", "url", "text"])
        for doc_id, url, text in zip(*(table[c].to_pylist() for c in ("id", "url", "text"))):
            match = pattern.search(url or "")
            if match is None or not match.group(1):
                dropped["url_without_label"] += 1
            elif not text:
                dropped["empty_text"] += 1
            elif doc_id in documents:
                dropped["duplicate_document"] += 1
            else:
                documents[doc_id] = Document(doc_id, text, match.group(1))
    return list(documents.values()), dict(dropped)


def chunk_token_ids(token_ids: list[int], window: int, max_chunks: int, min_chunk_tokens: int) -> list[list[int]]:
    """Up to max_chunks non-overlapping windows of the document, spread evenly from start to end."""
    starts = list(range(0, len(token_ids), window))
    if starts and len(token_ids) - starts[-1] < min(min_chunk_tokens, window):
        starts.pop()  # a short tail carries too little text to classify
    if len(starts) > max_chunks:
        import numpy as np

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


def _chunk_documents(task: UrlSectionTask, tokenizer: PreTrainedTokenizerBase, window: int,
                     documents: list[Document]) -> dict[str, list[list[int]]]:
    """doc_id -> its chunks of token ids (documents too short for one chunk are absent)."""
    chunks: dict[str, list[list[int]]] = {}
    if documents:
        encoded = tokenizer([d.text for d in documents], add_special_tokens=False, verbose=False)["input_ids"]
        for document, token_ids in zip(documents, encoded):
            doc_chunks = chunk_token_ids(token_ids, window, task.chunks_per_document, task.min_chunk_tokens)
            if doc_chunks:
                chunks[document.doc_id] = doc_chunks
    return chunks


def build_url_task(
    task: UrlSectionTask, tokenizer: PreTrainedTokenizerBase, max_seq_length: int, snapshot_dir: Path
) -> TaskData:
    """Label, chunk, cap and split (by document, stratified by class) the task's examples."""
    documents, dropped = load_documents(task, snapshot_dir)
    by_class: dict[str, list[Document]] = {}
    for document in documents:
        by_class.setdefault(document.label, []).append(document)
    candidates = {label: docs for label, docs in by_class.items() if len(docs) >= task.min_documents_per_class}
    # tokenize only documents of classes that can still qualify
    chunks = _chunk_documents(task, tokenizer, max_seq_length - 2, [d for docs in candidates.values() for d in docs])
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
            f"task {task.name!r} needs at least 2 classes with >= {task.min_documents_per_class} usable "
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

    return TaskData(
        name=task.name,
        kind="classification",
        label_names=class_names,
        splits={split: LabelledExamples(*rows[split]) for split in SPLITS},
        metrics=("accuracy", "macro_f1"),
        info={
            "source": "snapshot_urls",
            "class_documents": {label: len(usable[label]) for label in class_names},
            "class_examples": class_examples,
            "split_documents": {split: len(ids) for split, ids in split_doc_ids.items()},
            "split_examples": {split: len(rows[split][1]) for split in SPLITS},
            "dropped_documents": dict(dropped),
        },
        split_ids=split_doc_ids,
    )
