"""Plain fine-tuning loop for sequence classification and regression: AdamW, linear warmup/decay, per-batch padding.

A model with config.num_labels == 1 is a regressor (mean squared error on float labels, as GLUE's STS-B);
otherwise a classifier (cross-entropy on class ids). Which metrics a task reports is the caller's business:
`finetune` and `evaluate` take a `score(predictions, labels) -> {name: value}` function.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from model.cpu_allocator import return_freed_memory
from model.finetune_data import FinetuneSettings, LabelledExamples

logger = logging.getLogger(__name__)

Score = Callable[[np.ndarray, np.ndarray], dict[str, float]]  # (predictions, labels) -> metrics


def resolve_device(device: str) -> torch.device:
    """Turn a settings device string into a torch.device ('auto' = cuda if available, else cpu)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _pad_batch(
    rows: Sequence[Sequence[int]], types: Sequence[Sequence[int]] | None, pad_token_id: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest row; returns input_ids/attention_mask/token_type_ids (batch, seq_len)."""
    seq_len = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), seq_len), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), seq_len), dtype=torch.long)
    token_type_ids = torch.zeros((len(rows), seq_len), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
        if types is not None:
            token_type_ids[i, : len(row)] = torch.as_tensor(types[i], dtype=torch.long)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": attention_mask.to(device),
        "token_type_ids": token_type_ids.to(device),
    }


def is_regression(model: nn.Module) -> bool:
    """One output: a regressor trained with mean squared error."""
    return model.config.num_labels == 1


def _loss(logits: torch.Tensor, labels: Sequence[int] | Sequence[float], regression: bool,
          reduction: str = "mean") -> torch.Tensor:
    """MSE on the single output for regression, cross-entropy otherwise; logits (batch, num_labels)."""
    device = logits.device
    if regression:
        target = torch.as_tensor(labels, dtype=torch.float32, device=device)
        return nn.functional.mse_loss(logits.float()[:, 0], target, reduction=reduction)
    target = torch.as_tensor(labels, dtype=torch.long, device=device)
    return nn.functional.cross_entropy(logits.float(), target, reduction=reduction)


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
def predict(
    model: nn.Module, examples: LabelledExamples, batch_size: int, device: torch.device | None = None
) -> tuple[np.ndarray, float]:
    """(predictions, mean loss): class ids (argmax) for a classifier, the single output for a regressor."""
    device = device or next(model.parameters()).device
    pad_token_id = model.config.pad_token_id or 0
    regression = is_regression(model)
    was_training = model.training
    model.eval()
    # sort by length so each batch pads little; predictions go back to their original index
    order = sorted(range(len(examples)), key=lambda i: len(examples.input_ids[i]))
    predictions = np.empty(len(examples), dtype=np.float64 if regression else np.int64)
    loss_sum = 0.0
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        batch = _pad_batch(*examples.rows(index), pad_token_id, device)
        logits = model(**batch).logits  # (batch, num_labels)
        loss_sum += _loss(logits, [examples.labels[i] for i in index], regression, "sum").item()
        predictions[index] = (logits.float()[:, 0] if regression else logits.argmax(dim=-1)).cpu().numpy()
    model.train(was_training)
    return predictions, loss_sum / max(len(examples), 1)


def _accuracy(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"accuracy": float(np.mean(predictions == labels)) if len(labels) else 0.0}


def evaluate(
    model: nn.Module, examples: LabelledExamples, batch_size: int, device: torch.device | None = None,
    score: Score | None = None,
) -> dict[str, float]:
    """Mean loss plus score(predictions, labels) (default: accuracy for a classifier, nothing for a regressor)."""
    predictions, loss = predict(model, examples, batch_size, device)
    labels = np.asarray(examples.labels, dtype=predictions.dtype)
    if score is None:
        score = (lambda p, y: {}) if is_regression(model) else _accuracy
    return {**score(predictions, labels), "loss": loss}


def finetune(
    model: nn.Module,
    train: LabelledExamples,
    eval_sets: Mapping[str, LabelledExamples],
    settings: FinetuneSettings,
    seed: int,
    score: Score | None = None,
) -> dict[str, float]:
    """Fine-tune a sequence classifier or regressor in place on train, then evaluate it on each named eval set.

    Returns flat metrics: train_loss (mean over the last 10% of steps), steps, train_seconds and
    `<name>_loss` plus `<name>_<metric>` for each metric of score per eval set. Deterministic given the seed
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
    regression = is_regression(model)

    def batches():
        while True:  # endless epochs; each a fresh permutation
            permutation = torch.randperm(len(train), generator=shuffler).tolist()
            for start in range(0, len(permutation), settings.batch_size):
                yield permutation[start : start + settings.batch_size]

    tail_losses: list[float] = []  # losses of the last ~10% of steps: the converged training loss
    tail_from = num_steps - max(1, num_steps // 10)
    started = time.perf_counter()
    for step, index in zip(range(num_steps), batches()):
        batch = _pad_batch(*train.rows(index), pad_token_id, device)
        logits = model(**batch).logits  # (batch, num_labels)
        loss = _loss(logits, [train.labels[i] for i in index], regression)
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
    return_freed_memory()  # an evaluation fine-tunes many models in turn, some in other threads

    metrics: dict[str, float] = {
        "train_loss": float(np.mean(tail_losses)),
        "steps": float(num_steps),
        "train_seconds": train_seconds,
    }
    for name, examples in eval_sets.items():
        for key, value in evaluate(model, examples, settings.eval_batch_size, device, score).items():
            metrics[f"{name}_{key}"] = value
    logger.info(
        "fine-tuned %d steps (lr %.1e, seed %d) in %.1fs: %s",
        num_steps,
        settings.learning_rate,
        seed,
        train_seconds,
        ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if not k.startswith("train")),
    )
    return metrics
