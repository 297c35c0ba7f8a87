"""The pretrain stage: train BERT (MLM + NSP) on instance shards, checkpoint, evaluate, export."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from model.bert import BertForSparsePreTraining, PretrainingOutput, build_model, count_parameters
from model.checkpoint import latest_checkpoint, load_checkpoint, read_trainer_state, save_checkpoint
from model.config import PretrainConfig
from model.data import InfiniteBatchSampler, InstanceDataset, PretrainingCollator, ordered_batches
from model.export import export_pretrained
from model.optim import build_optimizer, build_scheduler

logger = logging.getLogger(__name__)

LogMetrics = Callable[[dict[str, float], int], None]

# Fields that change only bookkeeping, not the sequence of weights: a resume may differ in these.
RESUMABLE_CHANGES = {
    "device",
    "num_workers",
    "log_every",
    "eval_every",
    "eval_batches",
    "checkpoint_every",
    "keep_checkpoints",
}


def select_device(choice: str) -> torch.device:
    """`auto` = cuda when available, else cpu; asking for cuda without one is an error."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA device; valid here: 'cpu' or 'auto'")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}


def train_step(
    model: BertForSparsePreTraining,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batch: dict[str, torch.Tensor],
    max_grad_norm: float,
) -> tuple[PretrainingOutput, float]:
    """One optimizer step on `batch` (clipping the gradient norm when > 0); returns outputs and the lr used."""
    out = model(**batch)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    learning_rate = optimizer.param_groups[0]["lr"]  # before the scheduler moves it for the next step
    optimizer.step()
    scheduler.step()
    return out, learning_rate


@torch.no_grad()
def evaluate(model: BertForSparsePreTraining, loader: DataLoader, device: torch.device) -> dict[str, float]:
    """MLM/NSP accuracy and losses (MLM loss weighted per masked token) and perplexity over `loader`."""
    was_training = model.training
    model.eval()
    mlm_loss_sum = torch.zeros((), device=device)  # summed over masked tokens
    nsp_loss_sum = torch.zeros((), device=device)  # summed over sequences
    counts = torch.zeros(4, dtype=torch.int64, device=device)  # mlm_correct, mlm_count, nsp_correct, nsp_count
    for batch in loader:
        out = model(**_to_device(batch, device))
        mlm_loss_sum += out.mlm_loss * out.mlm_count
        nsp_loss_sum += out.nsp_loss * out.nsp_count
        counts += torch.stack([out.mlm_correct, out.mlm_count, out.nsp_correct, out.nsp_count])
    model.train(was_training)
    mlm_correct, mlm_count, nsp_correct, nsp_count = counts.tolist()
    mlm_loss = mlm_loss_sum.item() / max(1, mlm_count)
    return {
        "mlm_accuracy": mlm_correct / max(1, mlm_count),
        "nsp_accuracy": nsp_correct / max(1, nsp_count),
        "mlm_loss": mlm_loss,
        "nsp_loss": nsp_loss_sum.item() / max(1, nsp_count),
        "perplexity": math.exp(min(mlm_loss, 700.0)),  # exp overflows a float past ~709
    }


class _Window:
    """Training metrics summed on-device between two log points (no host sync per step)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reset(time.perf_counter())

    def reset(self, now: float) -> None:
        self.losses = torch.zeros(3, device=self.device)  # loss, mlm_loss, nsp_loss summed over steps
        self.counts = torch.zeros(4, dtype=torch.int64, device=self.device)
        self.steps = 0
        self.sequences = 0
        self.started = now
        self.paused = 0.0  # seconds spent in eval/checkpoint inside this window

    def add(self, out: PretrainingOutput, batch_size: int) -> None:
        self.losses += torch.stack([out.loss.detach(), out.mlm_loss.detach(), out.nsp_loss.detach()])
        self.counts += torch.stack([out.mlm_correct, out.mlm_count, out.nsp_correct, out.nsp_count])
        self.steps += 1
        self.sequences += batch_size

    def summary(self, learning_rate: float) -> dict[str, float]:
        loss, mlm_loss, nsp_loss = (self.losses / max(1, self.steps)).tolist()  # syncs the device
        mlm_correct, mlm_count, nsp_correct, nsp_count = self.counts.tolist()
        seconds = max(1e-9, time.perf_counter() - self.started - self.paused)
        return {
            "train/loss": loss,
            "train/mlm_loss": mlm_loss,
            "train/nsp_loss": nsp_loss,
            "train/mlm_accuracy": mlm_correct / max(1, mlm_count),
            "train/nsp_accuracy": nsp_correct / max(1, nsp_count),
            "train/learning_rate": learning_rate,
            "train/sequences_per_second": self.sequences / seconds,
        }


def _load_inputs(
    cfg: PretrainConfig, instances_dir: Path, tokenizer_dir: Path
) -> tuple[PreTrainedTokenizerBase, InstanceDataset, InstanceDataset]:
    """Load tokenizer and both splits, and check them against each other and the config, all at once."""
    problems: list[str] = []
    tokenizer = train = validation = None
    if not tokenizer_dir.is_dir():
        problems.append(f"tokenizer_dir={tokenizer_dir} is not a directory; pass the tokenize stage's tokenizer/")
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        except (OSError, ValueError) as exc:
            problems.append(f"tokenizer_dir={tokenizer_dir} does not hold a Hugging Face tokenizer ({exc})")
        else:
            if tokenizer.pad_token_id is None:
                problems.append(f"tokenizer in {tokenizer_dir} has no pad token; BERT tokenizers define [PAD]")
                tokenizer = None
    for split in ("train", "validation"):
        try:
            dataset = InstanceDataset(instances_dir, split)
        except (FileNotFoundError, ValueError) as exc:
            problems.append(str(exc))
            continue
        if len(dataset) == 0:
            problems.append(f"the {split!r} split of {instances_dir} has no instances")
            continue
        if split == "train":
            train = dataset
        else:
            validation = dataset
        if dataset.max_seq_length() > cfg.max_position_embeddings:
            problems.append(
                f"{split} instances reach {dataset.max_seq_length()} tokens but max_position_embeddings="
                f"{cfg.max_position_embeddings}; raise it or build shorter instances"
            )
        if dataset.max_value("token_type_ids") > 1:
            problems.append(
                f"{split} instances hold token_type_id {dataset.max_value('token_type_ids')}; BERT segments are 0 and 1"
            )
        if tokenizer is not None and dataset.max_token_id() >= len(tokenizer):
            problems.append(
                f"{split} instances hold token id {dataset.max_token_id()} but the tokenizer in {tokenizer_dir} "
                f"has only {len(tokenizer)} tokens; were the instances built with this tokenizer?"
            )
    if problems:
        raise ValueError("cannot pretrain: " + "; ".join(problems))
    return tokenizer, train, validation


def _check_resumable(saved: dict, cfg: PretrainConfig, train_instances: int, path: Path) -> None:
    current = cfg.model_dump(mode="json")
    changed = sorted(
        f"{name}: {saved['config'].get(name)!r} -> {value!r}"
        for name, value in current.items()
        if name not in RESUMABLE_CHANGES and saved["config"].get(name) != value
    )
    if saved["train_instances"] != train_instances:
        changed.append(f"train instances: {saved['train_instances']} -> {train_instances}")
    if changed:
        raise ValueError(
            f"checkpoint {path} was written by a different run ({'; '.join(changed)}); "
            f"resume with the same config and data or use a fresh out_dir"
        )


def pretrain(
    cfg: PretrainConfig,
    instances_dir: Path,
    tokenizer_dir: Path,
    out_dir: Path,
    log_metrics: LogMetrics | None = None,
) -> dict[str, int | float]:
    """Train (resuming from out_dir/checkpoints if present), evaluate, export out_dir/model; return stats."""
    device = select_device(cfg.device)
    tokenizer, train, validation = _load_inputs(cfg, Path(instances_dir), Path(tokenizer_dir))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoints_dir = out_dir / "checkpoints"
    report = log_metrics or (lambda metrics, step: None)

    seed_everything(cfg.seed)
    model = build_model(cfg, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id).to(device)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    parameters = count_parameters(model)

    step, train_seconds, train_loss = 0, 0.0, float("nan")
    resume_from = latest_checkpoint(checkpoints_dir)
    if resume_from is not None:
        _check_resumable(read_trainer_state(resume_from), cfg, len(train), resume_from)
        saved = load_checkpoint(resume_from, model, optimizer, scheduler, device)
        step, train_seconds, train_loss = saved["step"], saved["train_seconds"], saved["train_loss"]
    resumed_from_step = step
    logger.info(
        "pretraining %d parameters on %s: %d train / %d validation instances, steps %d -> %d",
        parameters,
        device,
        len(train),
        len(validation),
        step,
        cfg.max_steps,
    )

    collator = PretrainingCollator(tokenizer.pad_token_id)
    pin = device.type == "cuda"
    # Explicit generators keep DataLoader iterator creation from drawing on the global torch RNG,
    # which the checkpoint restores for dropout: resuming must not shift it.
    train_loader = DataLoader(
        train,
        batch_sampler=InfiniteBatchSampler(len(train), cfg.batch_size, cfg.seed, start_sample=step * cfg.batch_size),
        collate_fn=collator,
        num_workers=cfg.num_workers,
        pin_memory=pin,
        generator=torch.Generator(),
    )
    eval_loader = DataLoader(
        validation,
        batch_sampler=ordered_batches(len(validation), cfg.batch_size, cfg.eval_batches),
        collate_fn=collator,
        num_workers=cfg.num_workers,
        pin_memory=pin,
        persistent_workers=cfg.num_workers > 0,
        generator=torch.Generator(),
    )

    def run_evaluation(at_step: int) -> dict[str, float]:
        metrics = evaluate(model, eval_loader, device)
        report({f"validation/{name}": value for name, value in metrics.items()}, at_step)
        logger.info("step %d validation %s", at_step, {k: round(v, 4) for k, v in metrics.items()})
        return metrics

    def trainer_state() -> dict:
        return {
            "config": cfg.model_dump(mode="json"),
            "train_instances": len(train),
            "samples_seen": step * cfg.batch_size,
            "train_seconds": train_seconds,
            "train_loss": train_loss,
        }

    validation_metrics: dict[str, float] | None = None
    model.train()
    window = _Window(device)
    step_started = time.perf_counter()
    train_iter = iter(train_loader)
    while step < cfg.max_steps:
        batch = _to_device(next(train_iter), device)
        out, learning_rate = train_step(model, optimizer, scheduler, batch, cfg.max_grad_norm)
        step += 1
        window.add(out, batch["input_ids"].shape[0])

        if step % cfg.log_every == 0 or step == cfg.max_steps:
            metrics = window.summary(learning_rate)
            train_loss = metrics["train/loss"]
            report(metrics, step)
            logger.info("step %d %s", step, {k.removeprefix("train/"): round(v, 4) for k, v in metrics.items()})
            window.reset(time.perf_counter())
        is_eval = step % cfg.eval_every == 0 or step == cfg.max_steps
        is_checkpoint = step % cfg.checkpoint_every == 0 or step == cfg.max_steps
        if is_eval or is_checkpoint:
            _sync(device)
            pause_started = time.perf_counter()
            train_seconds += pause_started - step_started
            if is_eval:
                validation_metrics = run_evaluation(step)
            if is_checkpoint:
                save_checkpoint(
                    checkpoints_dir, step, model, optimizer, scheduler, trainer_state(), cfg.keep_checkpoints
                )
            step_started = time.perf_counter()
            window.paused += step_started - pause_started

    if validation_metrics is None:  # resumed at max_steps: nothing trained in this call
        validation_metrics = run_evaluation(step)
    export_pretrained(model, model.config, Path(tokenizer_dir), out_dir / "model")

    return {
        "steps": step,
        "resumed_from_step": resumed_from_step,
        "train_loss": train_loss,
        "validation_mlm_accuracy": validation_metrics["mlm_accuracy"],
        "validation_nsp_accuracy": validation_metrics["nsp_accuracy"],
        "validation_mlm_loss": validation_metrics["mlm_loss"],
        "validation_perplexity": validation_metrics["perplexity"],
        "sequences_per_second": step * cfg.batch_size / train_seconds if train_seconds > 0 else 0.0,
        "parameters": parameters,
        "train_seconds": train_seconds,
        "train_instances": len(train),
        "validation_instances": len(validation),
        "epochs": step * cfg.batch_size / len(train),
    }
