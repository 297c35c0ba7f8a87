"""Plain fine-tuning loop for sequence classification: AdamW, linear warmup/decay, per-batch padding."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from transformers import get_linear_schedule_with_warmup

logger = logging.getLogger(__name__)


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
    """Classification examples: unpadded token ids (with [CLS]/[SEP]) and integer labels."""

    input_ids: Sequence[Sequence[int]]
    labels: Sequence[int]

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError(f"{len(self.input_ids)} input_ids rows but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)


def resolve_device(device: str) -> torch.device:
    """Turn a settings device string into a torch.device ('auto' = cuda if available, else cpu)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def macro_f1(predictions: np.ndarray, labels: np.ndarray, num_labels: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in labels or predictions."""
    predictions = np.asarray(predictions, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    # confusion[i, j] = examples of true class i predicted as j
    confusion = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    true_positives = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    denominator = support + predicted  # 2*TP + FP + FN
    present = denominator > 0
    # a class absent from both labels and predictions says nothing about the model: leave it out
    f1 = np.where(present, 2.0 * true_positives / np.maximum(denominator, 1), 0.0)
    return float(f1[present].mean()) if present.any() else 0.0


def _pad_batch(rows: Sequence[Sequence[int]], pad_token_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest row; returns input_ids/attention_mask/token_type_ids (batch, seq_len)."""
    seq_len = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), seq_len), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), seq_len), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": attention_mask.to(device),
        "token_type_ids": torch.zeros_like(input_ids).to(device),  # single segment
    }


def _optimizer(model: nn.Module, settings: FinetuneSettings) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (biases and LayerNorm weights are exempt, as in BERT)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or "LayerNorm" in name else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=settings.learning_rate)


def total_steps(num_examples: int, settings: FinetuneSettings) -> int:
    """Optimizer steps a run takes: max_steps if set, else ceil(epochs * batches per epoch)."""
    if settings.max_steps is not None:
        return settings.max_steps
    return max(1, math.ceil(settings.epochs * math.ceil(num_examples / settings.batch_size)))


@torch.no_grad()
def evaluate(
    model: nn.Module, examples: LabelledExamples, batch_size: int, device: torch.device | None = None
) -> dict[str, float]:
    """Accuracy, macro-F1 and mean cross-entropy of a sequence classifier on examples."""
    device = device or next(model.parameters()).device
    pad_token_id = model.config.pad_token_id or 0
    num_labels = model.config.num_labels
    was_training = model.training
    model.eval()
    # sort by length so each batch pads little; predictions go back to their original index
    order = sorted(range(len(examples)), key=lambda i: len(examples.input_ids[i]))
    predictions = np.empty(len(examples), dtype=np.int64)
    loss_sum = 0.0
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        batch = _pad_batch([examples.input_ids[i] for i in index], pad_token_id, device)
        labels = torch.as_tensor([examples.labels[i] for i in index], dtype=torch.long, device=device)
        logits = model(**batch).logits  # (batch, num_labels)
        loss_sum += nn.functional.cross_entropy(logits.float(), labels, reduction="sum").item()
        predictions[index] = logits.argmax(dim=-1).cpu().numpy()
    model.train(was_training)
    labels = np.asarray(examples.labels, dtype=np.int64)
    return {
        "accuracy": float((predictions == labels).mean()) if len(labels) else 0.0,
        "macro_f1": macro_f1(predictions, labels, num_labels),
        "loss": loss_sum / max(len(labels), 1),
    }


def finetune(
    model: nn.Module,
    train: LabelledExamples,
    eval_sets: Mapping[str, LabelledExamples],
    settings: FinetuneSettings,
    seed: int,
) -> dict[str, float]:
    """Fine-tune a sequence classifier in place on train, then evaluate it on each named eval set.

    Returns flat metrics: train_loss (mean over the last 10% of steps), steps, train_seconds and
    `<name>_accuracy`, `<name>_macro_f1`, `<name>_loss` per eval set. Deterministic given the seed
    (batch order and dropout); initialise the model under the same seed for a fully seeded run.
    """
    if len(train) == 0:
        raise ValueError("finetune needs at least one training example")
    device = resolve_device(settings.device)
    model.to(device)
    model.train()
    torch.manual_seed(seed)  # dropout masks
    shuffler = torch.Generator().manual_seed(seed)  # batch order, independent of the global RNG
    num_steps = total_steps(len(train), settings)
    optimizer = _optimizer(model, settings)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(settings.warmup_ratio * num_steps), num_steps)
    pad_token_id = model.config.pad_token_id or 0

    def batches():
        while True:  # endless epochs; each a fresh permutation
            permutation = torch.randperm(len(train), generator=shuffler).tolist()
            for start in range(0, len(permutation), settings.batch_size):
                yield permutation[start : start + settings.batch_size]

    tail_losses: list[float] = []  # losses of the last ~10% of steps: the converged training loss
    tail_from = num_steps - max(1, num_steps // 10)
    started = time.perf_counter()
    for step, index in zip(range(num_steps), batches()):
        batch = _pad_batch([train.input_ids[i] for i in index], pad_token_id, device)
        labels = torch.as_tensor([train.labels[i] for i in index], dtype=torch.long, device=device)
        logits = model(**batch).logits  # (batch, num_labels)
        loss = nn.functional.cross_entropy(logits.float(), labels)
        loss.backward()
        if settings.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= tail_from:
            tail_losses.append(loss.item())
        if (step + 1) % 50 == 0:
            logger.debug("step %d/%d loss %.4f lr %.2e", step + 1, num_steps, loss.item(), scheduler.get_last_lr()[0])
    train_seconds = time.perf_counter() - started

    metrics: dict[str, float] = {
        "train_loss": float(np.mean(tail_losses)),
        "steps": float(num_steps),
        "train_seconds": train_seconds,
    }
    for name, examples in eval_sets.items():
        for key, value in evaluate(model, examples, settings.eval_batch_size, device).items():
            metrics[f"{name}_{key}"] = value
    logger.info(
        "fine-tuned %d steps (lr %.1e, seed %d) in %.1fs: %s",
        num_steps,
        settings.learning_rate,
        seed,
        train_seconds,
        ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.endswith(("accuracy", "macro_f1"))),
    )
    return metrics
