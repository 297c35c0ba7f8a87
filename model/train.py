"""The pretrain stage: train BERT on instance shards, one process or many (torchrun), checkpoint, evaluate, export.

`pretrain(...)` is the entry point; `Trainer` holds one run's state. Rank 0 logs, evaluates,
checkpoints and exports; every rank trains on its slice of each global batch.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.bert import build_model, count_parameters, train_flops
from model.checkpoint import (
    begin_checkpoint,
    finish_checkpoint,
    load_checkpoint,
    read_trainer_state,
    write_rng_state,
)
from model.checkpoint_integrity import STEP_DIR, checkpoint_name, newest_intact_checkpoint
from model.config import PretrainConfig
from model.cpu_allocator import keep_freed_memory, return_freed_memory
from model.cpu_dropout import use_cpu_dropout
from model.data import GlobalBatchSampler, MicroBatchSampler, PretrainingCollator, ignore_sigterm, ordered_batches
from model.device import autocast_dtype, host_to_device, model_inputs, seed_everything, select_device
from model.distributed import DistributedContext, all_reduce_max, all_reduce_sum, barrier, init_distributed, shutdown
from model.export import export_pretrained
from model.inputs import PretrainInputs, load_inputs
from model.metrics import (
    TrainingWindow,
    evaluate,
    first_non_finite,
    gpu_peak_flops,
    memory_metrics,
    plot_loss_curves,
)
from model.optim import build_optimizer, build_scheduler

logger = logging.getLogger(__name__)

LogMetrics = Callable[[dict[str, float], int], None]
Progress = Callable[[int, int], None]  # (steps done, total steps), e.g. to update a Prefect progress artifact

# Fields that change only bookkeeping or speed, not the sequence of weights: a resume may differ in these.
RESUMABLE_CHANGES = {
    "device",
    "num_workers",
    "log_every",
    "eval_every",
    "eval_batches",
    "checkpoint_every",
    "keep_checkpoints",
    "compile",
}
LOSS_CURVES = "loss_curves.png"


class NonFiniteLossError(RuntimeError):
    """The training loss (or, without a gradient scaler, the gradient norm) became NaN or infinite; nothing
    after the last good checkpoint was saved."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM asked the run to stop; a checkpoint of the last finished step was written first."""


def _check_resumable(saved: dict, cfg: PretrainConfig, train_instances: int, world_size: int, path: Path) -> None:
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
    if saved.get("world_size", 1) != world_size:
        logger.warning(
            "resuming a %d-process checkpoint with %d processes: the data order is kept, dropout RNGs are reseeded",
            saved.get("world_size", 1),
            world_size,
        )


class Trainer:
    """One pretraining run: model, optimizer, loaders and the loop, with checkpoints and SIGTERM handling."""

    def __init__(
        self,
        cfg: PretrainConfig,
        inputs: PretrainInputs,
        tokenizer_dir: Path,
        out_dir: Path,
        ctx: DistributedContext,
        device: torch.device,
        log_metrics: LogMetrics | None = None,
        progress: Progress | None = None,
    ):
        self.cfg, self.inputs, self.ctx, self.device = cfg, inputs, ctx, device
        self.tokenizer_dir, self.out_dir = Path(tokenizer_dir), Path(out_dir)
        self.checkpoints_dir = self.out_dir / "checkpoints"
        self.report = (log_metrics or (lambda metrics, step: None)) if ctx.is_main else (lambda metrics, step: None)
        self.progress = progress if ctx.is_main else None
        self.stop_requested = False  # set by the SIGTERM handler, read by the loop
        self.dtype = autocast_dtype(cfg.precision, device)

        tokenizer = inputs.tokenizer
        seed_everything(cfg.seed)  # identical initial weights on every rank
        # Static shapes on GPU and under torch.compile: no host sync, one compiled graph (model/bert.py).
        self.model = build_model(
            cfg, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
            static_shapes=device.type == "cuda" or cfg.compile,
        ).to(device)  # fmt: skip
        if device.type == "cpu":
            use_cpu_dropout(self.model)  # bit-word dropout: torch's bernoulli_ was 12% of a CPU step
            keep_freed_memory()  # reuse the step's large buffers instead of page-faulting them in again
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        seed_everything(cfg.seed + ctx.rank)  # each rank's own dropout stream
        self.parameters = count_parameters(self.model)
        self.peak_flops = gpu_peak_flops(device) if self.dtype is not None else None

        self.step, self.train_seconds, self.train_loss = 0, 0.0, float("nan")
        # non-padding tokens trained on, all ranks; None when resumed from a checkpoint that did not count them
        self.tokens_seen: int | None = 0
        self.pending_tokens = 0  # this rank's tokens since the last pause, added to tokens_seen at the next one
        self.history: dict[str, list[list[float]]] = {"train/loss": [], "validation/mlm_loss": []}
        self.last_checkpoint: Path | None = None
        self.resumed_from_step = 0
        resume_from = self._checkpoint_to_resume()
        if resume_from is not None:
            _check_resumable(read_trainer_state(resume_from), cfg, len(inputs.train), ctx.world_size, resume_from)
            saved = load_checkpoint(resume_from, self.model, self.optimizer, self.scheduler, device, ctx.rank)
            if saved["scaler"]:
                self.scaler.load_state_dict(saved["scaler"])
            self.step, self.train_seconds, self.train_loss = saved["step"], saved["train_seconds"], saved["train_loss"]
            self.history = saved["history"]
            self.tokens_seen = saved.get("tokens_seen")
            self.last_checkpoint = resume_from
            self.resumed_from_step = self.step

        self.training_model: torch.nn.Module = self.model
        if ctx.distributed:
            self.training_model = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        if cfg.compile:
            self.training_model = torch.compile(self.training_model)
        self.train_loader, self.eval_loader = self._build_loaders()

    def _checkpoint_to_resume(self) -> Path | None:
        """The newest intact checkpoint, chosen by rank 0 and sent to every rank (collective).

        Rank 0 alone verifies (and deletes damaged checkpoints) while the others wait in the all-reduce,
        so no rank reads a folder being deleted and all resume from the same step, whatever each sees.
        """
        chosen = newest_intact_checkpoint(self.checkpoints_dir) if self.ctx.is_main else None
        if not self.ctx.distributed:
            return chosen
        # Rank 0 sends its step (-1: none), every other rank -1: the max is rank 0's choice.
        step = int(STEP_DIR.match(chosen.name).group(1)) if chosen is not None else -1
        mine = torch.tensor([step if self.ctx.is_main else -1], dtype=torch.int64, device=self.device)
        step = int(all_reduce_max(mine, self.ctx).item())
        return self.checkpoints_dir / checkpoint_name(step) if step >= 0 else None

    def _build_loaders(self) -> tuple[DataLoader, DataLoader]:
        cfg, train = self.cfg, self.inputs.train
        collator = PretrainingCollator(self.inputs.tokenizer.pad_token_id)
        lengths = train.instances.lengths() if cfg.length_bucketing else None
        global_batches = GlobalBatchSampler(
            len(train), cfg.batch_size, cfg.seed, start_sample=self.step * cfg.batch_size, lengths=lengths
        )
        sampler = MicroBatchSampler(
            global_batches, self.ctx.rank, self.ctx.world_size, cfg.gradient_accumulation_steps, cfg.length_bucketing
        )
        # Evaluation runs on rank 0 alone, in training-sized micro-batches (a global batch may only fit in
        # memory split over ranks and accumulation steps), over the sequences of eval_batches global batches.
        micro_batches_per_batch = cfg.batch_size // sampler.micro_batch_size
        eval_batches = ordered_batches(
            len(self.inputs.validation), sampler.micro_batch_size, cfg.eval_batches * micro_batches_per_batch
        )
        pin = self.device.type == "cuda"
        # Explicit generators keep DataLoader iterator creation from drawing on the global torch RNG,
        # which the checkpoint restores for dropout: resuming must not shift it. Workers ignore SIGTERM
        # (sent to the whole process group by a terminal or scheduler): the stop is this process's.
        train_loader = DataLoader(
            train, batch_sampler=sampler, collate_fn=collator, num_workers=cfg.num_workers,
            pin_memory=pin, generator=torch.Generator(), worker_init_fn=ignore_sigterm,
        )  # fmt: skip
        eval_loader = DataLoader(
            self.inputs.validation,
            batch_sampler=eval_batches, collate_fn=collator, num_workers=cfg.num_workers, pin_memory=pin,
            persistent_workers=cfg.num_workers > 0, generator=torch.Generator(), worker_init_fn=ignore_sigterm,
        )  # fmt: skip
        return train_loader, eval_loader

    # --- one optimizer step -------------------------------------------------------------------------

    def train_step(self, micro_batches: list[dict[str, torch.Tensor]], window: TrainingWindow) -> float:
        """Forward/backward over this rank's micro-batches, clip, step; returns the learning rate used.

        The loss is normalised by the masked tokens (and NSP-labelled sequences) of the whole global
        batch, counted on the host before the step, so any split over ranks and accumulation steps
        gives the gradient of the same global-batch loss (DDP averages over ranks: hence x world_size).
        Nothing here waits for the GPU: counts come from the host batches, metrics stay on device.
        """
        predictions = [int(b["masked_lm_weights"].sum()) for b in micro_batches]  # real masked positions
        local = [
            float(sum(predictions)),
            sum(float((b["next_sentence_label"] >= 0).sum()) for b in micro_batches) if self.cfg.nsp else 0.0,
        ]
        if self.ctx.distributed:
            totals = all_reduce_sum(host_to_device(local, self.device), self.ctx).clamp(min=1).float()
            mlm_total, nsp_total = totals.unbind()
        else:
            mlm_total, nsp_total = (max(1.0, count) for count in local)
        step_loss = torch.zeros((), device=self.device)
        for index, host_batch in enumerate(micro_batches):
            sequences, seq_len = host_batch["input_ids"].shape
            tokens = int(host_batch["attention_mask"].sum())
            self.pending_tokens += tokens
            batch = model_inputs(host_batch, self.device)
            last = index == len(micro_batches) - 1
            sync = nullcontext() if last or not self.ctx.distributed else self.training_model.no_sync()
            with sync:
                with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                    out = self.training_model(**batch)
                loss = out.mlm_loss_sum / mlm_total + out.nsp_loss_sum / nsp_total  # this micro-batch's share
                self.scaler.scale(loss * self.ctx.world_size).backward()
            step_loss += loss.detach()
            flops = train_flops(self.model, sequences, seq_len, predictions[index])
            window.add_micro_batch(out, sequences, tokens, flops)
        self.scaler.unscale_(self.optimizer)
        max_norm = self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        learning_rate = self.optimizer.param_groups[0]["lr"]  # before the scheduler moves it for the next step
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        window.add_step(step_loss, grad_norm, self.step)
        return learning_rate

    # --- bookkeeping --------------------------------------------------------------------------------

    def trainer_state(self) -> dict[str, Any]:
        """The JSON part of a checkpoint: enough to resume and to check a resume is the same run."""
        return {
            "step": self.step,
            "config": self.cfg.model_dump(mode="json"),
            "train_instances": len(self.inputs.train),
            "samples_seen": self.step * self.cfg.batch_size,  # the data position: the sampler restarts here
            "world_size": self.ctx.world_size,
            "train_seconds": self.train_seconds,
            "train_loss": self.train_loss,
            "tokens_seen": self.tokens_seen,
            "history": self.history,
        }

    def save_checkpoint(self) -> None:
        """All ranks write their RNG state; rank 0 writes the rest and publishes the folder (collective)."""
        tmp = begin_checkpoint(self.checkpoints_dir, self.step) if self.ctx.is_main else None
        barrier(self.ctx)
        tmp = tmp or self.checkpoints_dir / f"step-{self.step:06d}.tmp"
        write_rng_state(tmp, self.ctx.rank)
        barrier(self.ctx)
        if self.ctx.is_main:
            self.last_checkpoint = finish_checkpoint(
                tmp, self.model, self.optimizer, self.scheduler, self.scaler.state_dict(),
                self.trainer_state(), self.cfg.keep_checkpoints,
            )  # fmt: skip
        barrier(self.ctx)

    def check_finite(self, window: TrainingWindow) -> None:
        """Stop with a clear error if a step in the window had a non-finite loss or gradient norm (collective).

        A finite loss with a NaN/inf gradient norm has already written NaN into the weights, unless fp16's
        GradScaler is on: then it is an overflow the scaler skipped (the step left the weights alone).
        """
        bad_loss = first_non_finite(window.global_step_losses(self.ctx))
        bad_norm = None if self.scaler.is_enabled() else first_non_finite(window.step_grad_norms())
        problems = [(bad[0], f"{what} is {bad[1]}")
                    for bad, what in ((bad_loss, "training loss"), (bad_norm, "gradient norm")) if bad is not None]
        if problems:
            step, problem = min(problems, key=lambda found: found[0])  # the earliest step; at a tie the loss
            kept = self.last_checkpoint or "none (no checkpoint was written yet)"
            raise NonFiniteLossError(
                f"{problem} at step {step}; stopped before saving that step or any later one. "
                f"Last good checkpoint: {kept}. Lower learning_rate (now {self.cfg.learning_rate}), "
                f"lengthen warmup_steps or set max_grad_norm, then rerun to resume from that checkpoint"
            )

    def run_evaluation(self) -> dict[str, float]:
        """Validation metrics on rank 0 (other ranks wait), reported and kept in the history."""
        metrics: dict[str, float] = {}
        if self.ctx.is_main:
            metrics = evaluate(self.model, self.eval_loader, self.device, self.dtype)
            self.report({f"validation/{name}": value for name, value in metrics.items()}, self.step)
            self.history["validation/mlm_loss"].append([self.step, metrics["mlm_loss"]])
            logger.info("step %d validation %s", self.step, {k: round(v, 4) for k, v in metrics.items()})
        barrier(self.ctx)
        return metrics

    def _count_tokens(self) -> None:
        """Add every rank's tokens since the last pause to tokens_seen (collective: all ranks pause together)."""
        pending = float(self.pending_tokens)
        if self.ctx.distributed:
            pending = all_reduce_sum(host_to_device([pending], self.device), self.ctx).item()
        self.pending_tokens = 0
        if self.tokens_seen is not None:
            self.tokens_seen += round(pending)

    def _stop_requested_everywhere(self) -> bool:
        if not self.ctx.distributed:
            return self.stop_requested
        flag = torch.tensor([float(self.stop_requested)], device=self.device)
        return bool(all_reduce_max(flag, self.ctx).item())

    def _request_stop(self, signum: int, frame: Any) -> None:
        logger.warning("received signal %d: checkpointing after this step, then stopping", signum)
        self.stop_requested = True

    # --- the loop -----------------------------------------------------------------------------------

    def _micro_batches(self) -> Iterator[list[dict[str, torch.Tensor]]]:
        iterator = iter(self.train_loader)
        while True:
            yield [next(iterator) for _ in range(self.cfg.gradient_accumulation_steps)]

    def train(self) -> dict[str, float]:
        """Train to max_steps (checkpoints, evaluations, metrics), export on rank 0; returns validation metrics.

        SIGTERM is caught only when this runs in the main thread (signal handlers cannot be installed
        elsewhere, e.g. in a Prefect worker thread); there, a kill costs at most checkpoint_every steps.
        """
        cfg = self.cfg
        handle_sigterm = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, self._request_stop) if handle_sigterm else None
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="pretrain", unit="step",
                   disable=None if self.ctx.is_main else True)  # fmt: skip
        try:
            validation = self._loop(bar)
        finally:
            bar.close()
            if handle_sigterm:  # None: the previous handler was not installed from Python
                signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        if self.resumed_from_step == cfg.max_steps:  # nothing trained in this call: evaluate what was loaded
            validation = self.run_evaluation()
        if self.ctx.is_main:
            export_pretrained(self.model, self.model.config, self.tokenizer_dir, self.out_dir / "model")
            plot_loss_curves(self.history, self.out_dir / LOSS_CURVES)
        barrier(self.ctx)
        return validation

    def _loop(self, bar: tqdm) -> dict[str, float]:
        cfg = self.cfg
        validation: dict[str, float] = {}
        self.model.train()
        window = TrainingWindow(self.device)
        step_started = time.perf_counter()
        batches = self._micro_batches()
        while self.step < cfg.max_steps:
            learning_rate = self.train_step(next(batches), window)
            bar.update(1)
            if self.progress is not None:
                self.progress(self.step, cfg.max_steps)
            at_end = self.step == cfg.max_steps
            is_log = self.step % cfg.log_every == 0 or at_end
            is_eval = self.step % cfg.eval_every == 0 or at_end
            is_checkpoint = self.step % cfg.checkpoint_every == 0 or at_end
            # Every rank checks the same all-reduced flag, at log points (one process: every step).
            stop = (is_log or not self.ctx.distributed) and self._stop_requested_everywhere()
            if not (is_log or is_eval or is_checkpoint or stop):
                continue
            self.check_finite(window)
            self._count_tokens()
            if is_log:
                metrics = window.summary(self.ctx, learning_rate, self.peak_flops)
                self.train_loss = metrics["train/loss"]
                self.history["train/loss"].append([self.step, self.train_loss])
                self.report({**metrics, **memory_metrics(self.device)}, self.step)
                bar.set_postfix(loss=f"{self.train_loss:.3f}", lr=f"{learning_rate:.2e}")
                logger.info("step %d %s", self.step, {k: round(v, 4) for k, v in metrics.items()})
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            pause_started = time.perf_counter()
            self.train_seconds += pause_started - step_started
            if is_eval:
                validation = self.run_evaluation()
            if is_checkpoint or stop:
                self.save_checkpoint()
            if stop:
                raise TrainingInterrupted(
                    f"stopped by SIGTERM after step {self.step}; checkpoint {self.last_checkpoint or 'written'}; "
                    f"rerun with the same out_dir to resume"
                )
            step_started = time.perf_counter()
            if is_log:
                window.reset()
            else:
                window.paused += step_started - pause_started
        return validation


def pretrain(
    cfg: PretrainConfig,
    instances_dir: Path,
    tokenizer_dir: Path,
    out_dir: Path,
    log_metrics: LogMetrics | None = None,
    progress: Progress | None = None,
) -> dict[str, int | float]:
    """Train (resuming from out_dir/checkpoints if present), evaluate, export out_dir/model; return stats.

    Under torchrun (WORLD_SIZE > 1) every process calls this; rank 0 alone reports metrics,
    progress, checkpoints and the export. `progress(step, total)` is called after every step on rank 0.
    """
    inputs = load_inputs(cfg, Path(instances_dir), Path(tokenizer_dir))
    threads_before = torch.get_num_threads()
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    ctx = init_distributed("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
    try:
        device = select_device(cfg.device, ctx.local_rank if ctx.distributed or cfg.cuda_device is None
                               else cfg.cuda_device)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        trainer = Trainer(cfg, inputs, Path(tokenizer_dir), out_dir, ctx, device, log_metrics, progress)
        logger.info(
            "pretraining %d parameters on %s x %d: %d train / %d validation instances, steps %d -> %d",
            trainer.parameters, device, ctx.world_size, len(inputs.train), len(inputs.validation),
            trainer.step, cfg.max_steps,
        )  # fmt: skip
        validation = trainer.train()
    finally:
        shutdown(ctx)
        torch.set_num_threads(threads_before)  # the caller's process (a test, a notebook) keeps its setting
        return_freed_memory()  # the next training run in this process may run in another thread
    stats: dict[str, int | float] = {
        "steps": trainer.step,
        "resumed_from_step": trainer.resumed_from_step,
        "train_loss": trainer.train_loss,
        "sequences_per_second": trainer.step * cfg.batch_size / trainer.train_seconds if trainer.train_seconds else 0.0,
        "parameters": trainer.parameters,
        "train_seconds": trainer.train_seconds,
        "train_instances": len(inputs.train),
        "validation_instances": len(inputs.validation),
        "epochs": trainer.step * cfg.batch_size / len(inputs.train),
        "world_size": ctx.world_size,
    }
    if trainer.tokens_seen is not None:
        stats["tokens_seen"] = trainer.tokens_seen
    stats.update({f"validation_{name}": value for name, value in validation.items()})
    return stats
