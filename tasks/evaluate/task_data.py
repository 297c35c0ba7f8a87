"""What every downstream task hands the evaluate stage: encoded train/dev/test examples and its metrics."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from model.finetune_data import LabelledExamples

SPLITS = ("train", "dev", "test")
TaskKind = Literal["classification", "regression"]


@dataclass(frozen=True)
class TaskData:
    """One downstream task, ready to fine-tune on."""

    name: str
    kind: TaskKind
    label_names: list[str] | None  # class names in label-id order; None for regression
    splits: dict[str, LabelledExamples]  # "train", "dev", "test"
    # tasks.evaluate.task_metrics names; the first picks the learning rate on dev and heads the table
    metrics: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)  # sizes, sources, dropped rows: goes to results.json
    split_ids: dict[str, list[str]] | None = None  # document ids per split, where examples come from documents

    @property
    def num_labels(self) -> int:
        """Outputs of the model head: 1 for regression, else the number of classes."""
        return 1 if self.kind == "regression" or not self.label_names else len(self.label_names)

    def majority_rate(self) -> float | None:
        """Test accuracy of always answering the most common test class (None for regression)."""
        if self.kind == "regression" or not len(self.splits["test"]):
            return None
        counts = Counter(self.splits["test"].labels)
        return max(counts.values()) / len(self.splits["test"])
