"""What a fine-tuning run is given, as plain data: its settings and its examples (no torch).

The evaluate stage's config and its task readers hold these; keeping torch out of this module keeps it out
of every command that only loads or checks a config (model/finetune.py, the loop, imports torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class FinetuneSettings(BaseModel):
    """How one fine-tuning run trains (the learning rate is one point of the evaluate stage's grid)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    learning_rate: float = Field(default=3e-4, gt=0.0, lt=1.0)
    """Peak AdamW learning rate, reached after warmup."""
    epochs: float = Field(default=3.0, gt=0.0, le=1000.0)
    """Passes over the training examples (fractions allowed); ignored when max_steps is set."""
    max_steps: int | None = Field(default=None, ge=1)
    """Optimizer steps to train for; overrides epochs when set."""
    batch_size: int = Field(default=32, ge=1, le=65536)
    """Training examples per optimizer step."""
    eval_batch_size: int = Field(default=128, ge=1, le=65536)
    """Examples per forward pass when evaluating."""
    warmup_ratio: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Fraction of the steps over which the learning rate rises linearly from 0."""
    weight_decay: float = Field(default=0.01, ge=0.0, le=1.0)
    """AdamW decoupled weight decay (not applied to biases and LayerNorm weights)."""
    max_grad_norm: float | None = Field(default=1.0, gt=0.0)
    """Clip the global gradient norm to this value; None disables clipping."""
    device: str = Field(default="auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    """Where to train: auto picks cuda when available, else cpu."""


@dataclass(frozen=True)
class LabelledExamples:
    """Examples: unpadded token ids ([CLS] A [SEP] or [CLS] A [SEP] B [SEP]) and class ids or real values.

    token_type_ids: per row 0 for [CLS] A [SEP] and 1 for B [SEP]; None means single sentences (all 0).
    """

    input_ids: Sequence[Sequence[int]]
    labels: Sequence[int] | Sequence[float]
    token_type_ids: Sequence[Sequence[int]] | None = None

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError(f"{len(self.input_ids)} input_ids rows but {len(self.labels)} labels")
        if self.token_type_ids is not None and len(self.token_type_ids) != len(self.input_ids):
            raise ValueError(f"{len(self.input_ids)} input_ids rows but {len(self.token_type_ids)} token_type_ids rows")

    def rows(self, index: Sequence[int]) -> tuple[list[Sequence[int]], list[Sequence[int]] | None]:
        """The input_ids and token_type_ids rows at index."""
        types = None if self.token_type_ids is None else [self.token_type_ids[i] for i in index]
        return [self.input_ids[i] for i in index], types

    def __len__(self) -> int:
        return len(self.labels)
