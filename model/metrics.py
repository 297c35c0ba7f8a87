"""Training-window metrics (summed on device, reduced over ranks at log points), validation metrics, MFU, memory,
loss-curve PNG."""

from __future__ import annotations

import math
import time
from pathlib import Path

import psutil
import torch
from torch.utils.data import DataLoader

from model.bert import BertForSparsePreTraining, PretrainingOutput
from model.device import model_inputs
from model.distributed import DistributedContext, all_reduce_sum

# Dense bf16/fp16 tensor-core peaks in FLOP/s per GPU (datasheets, without sparsity), by a substring of
# torch.cuda.get_device_name(); the longest matching key wins, so "NVIDIA L40" is not taken for an L4.
GPU_PEAK_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,  # SXM; the PCIe card is ~756e12
    "A100": 312e12,
    "L40S": 362e12,
    "L40": 181e12,
    "A10G": 125e12,
    "L4": 121e12,
}


def peak_flops_by_name(name: str) -> float | None:
    """Dense bf16 peak in FLOP/s of the GPU called `name` (as torch names it), or None if unlisted."""
    matches = [key for key in GPU_PEAK_FLOPS if key in name]
    return GPU_PEAK_FLOPS[max(matches, key=len)] if matches else None


def gpu_peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of this GPU in FLOP/s, or None for a CPU or an unlisted GPU."""
    if device.type != "cuda":
        return None
    return peak_flops_by_name(torch.cuda.get_device_name(device))


def memory_metrics(device: torch.device) -> dict[str, float]:
    """Resident memory of this process (MB) and, on GPU, the peak allocated by torch (GB)."""
    metrics = {"system/rss_mb": psutil.Process().memory_info().rss / 2**20}
    if device.type == "cuda":
        metrics["system/cuda_max_allocated_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    return metrics


class TrainingWindow:
    """Sums between two log points. Per-step losses stay on device until `reduce` (no host sync per step)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.first_step = 0
        self.step_losses: list[torch.Tensor] = []  # this rank's share of each step's loss (global normalisation)
        self.grad_norms: list[torch.Tensor] = []  # each step's global gradient norm (identical on every rank)
        # mlm_loss_sum, nsp_loss_sum, mlm_correct, mlm_count, nsp_correct, nsp_count
        self.sums = torch.zeros(6, dtype=torch.float64, device=self.device)
        self.sequences, self.tokens = 0, 0  # counted on the host; tokens are real (non-padding) ones
        self.flops = 0.0  # this rank's model FLOPs in the window
        self.started = time.perf_counter()
        self.paused = 0.0  # seconds spent in eval/checkpoint inside this window

    def add_micro_batch(self, out: PretrainingOutput, sequences: int, tokens: int, flops: float) -> None:
        """Count one micro-batch's outputs (losses as sums, so windows weight every masked token equally)."""
        self.sums += output_sums(out)
        self.sequences += sequences
        self.tokens += tokens
        self.flops += flops

    def add_step(self, step_loss: torch.Tensor, grad_norm: torch.Tensor, step: int) -> None:
        if not self.step_losses:
            self.first_step = step
        self.step_losses.append(step_loss.detach().float())
        self.grad_norms.append(grad_norm.detach().float())

    def global_step_losses(self, ctx: DistributedContext) -> list[tuple[int, float]]:
        """(step, loss) of every step in the window, summed over ranks (a collective call: all ranks call it)."""
        if not self.step_losses:
            return []
        losses = all_reduce_sum(torch.stack(self.step_losses), ctx).tolist()
        return list(enumerate(losses, start=self.first_step))

    def step_grad_norms(self) -> list[tuple[int, float]]:
        """(step, global gradient norm) of every step in the window (the same on every rank: no collective)."""
        if not self.grad_norms:
            return []
        return list(enumerate(torch.stack(self.grad_norms).tolist(), start=self.first_step))

    def summary(self, ctx: DistributedContext, learning_rate: float, peak_flops: float | None) -> dict[str, float]:
        """Window averages over all ranks (collective); rates per second of training time."""
        losses = [loss for _, loss in self.global_step_losses(ctx)]
        grad_norms = torch.stack(self.grad_norms).tolist()
        host = torch.tensor([self.sequences, self.tokens], dtype=torch.float64, device=self.device)
        (mlm_sum, nsp_sum, mlm_correct, mlm_count, nsp_correct, nsp_count, sequences, tokens) = all_reduce_sum(
            torch.cat([self.sums, host]), ctx
        ).tolist()
        seconds = max(1e-9, time.perf_counter() - self.started - self.paused)
        metrics = {
            "train/loss": sum(losses) / len(losses),
            "train/mlm_loss": mlm_sum / max(1.0, mlm_count),
            "train/mlm_accuracy": mlm_correct / max(1.0, mlm_count),
            "train/learning_rate": learning_rate,
            "train/grad_norm": sum(grad_norms) / len(grad_norms),
            "train/grad_norm_max": max(grad_norms),
            "train/sequences_per_second": sequences / seconds,
            "train/tokens_per_second": tokens / seconds,  # real (non-padding) tokens
        }
        if nsp_count:
            metrics["train/nsp_loss"] = nsp_sum / nsp_count
            metrics["train/nsp_accuracy"] = nsp_correct / nsp_count
        if peak_flops:
            metrics["train/mfu"] = self.flops / seconds / peak_flops  # this rank's share of its own GPU
        return metrics


def output_sums(out: PretrainingOutput) -> torch.Tensor:
    """(6,) float64, detached: mlm_loss_sum, nsp_loss_sum, mlm_correct, mlm_count, nsp_correct, nsp_count."""
    return torch.stack(
        [out.mlm_loss_sum, out.nsp_loss_sum, out.mlm_correct, out.mlm_count, out.nsp_correct, out.nsp_count]
    ).detach().double()


@torch.no_grad()
def evaluate(
    model: BertForSparsePreTraining, loader: DataLoader, device: torch.device, dtype: torch.dtype | None = None
) -> dict[str, float]:
    """MLM/NSP accuracy and losses (MLM loss weighted per masked token) and perplexity over `loader`."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(6, dtype=torch.float64, device=device)  # mlm/nsp loss sums, correct and counts
    for batch in loader:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = model(**model_inputs(batch, device))
        sums += output_sums(out)
    model.train(was_training)
    mlm_loss_sum, nsp_loss_sum, mlm_correct, mlm_count, nsp_correct, nsp_count = sums.tolist()
    mlm_loss = mlm_loss_sum / max(1.0, mlm_count)
    metrics = {
        "mlm_accuracy": mlm_correct / max(1.0, mlm_count),
        "mlm_loss": mlm_loss,
        "perplexity": math.exp(min(mlm_loss, 700.0)),  # exp overflows a float past ~709
    }
    if nsp_count:  # MLM-only runs have no NSP metrics
        metrics["nsp_accuracy"] = nsp_correct / nsp_count
        metrics["nsp_loss"] = nsp_loss_sum / nsp_count
    return metrics


def first_non_finite(values: list[tuple[int, float]]) -> tuple[int, float] | None:
    """The first (step, value) whose value (a loss or a gradient norm) is NaN or infinite."""
    return next(((step, value) for step, value in values if not math.isfinite(value)), None)


def plot_loss_curves(history: dict[str, list[list[float]]], path: Path) -> Path:
    """A PNG of the training loss and the validation MLM loss against the step, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    for name, label in (("train/loss", "train loss (MLM + NSP)"), ("validation/mlm_loss", "validation MLM loss")):
        points = history.get(name, [])
        if points:
            steps, values = zip(*points, strict=True)
            axis.plot(steps, values, marker="." if len(points) < 50 else None, label=label)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("cross-entropy (nats)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    figure.savefig(tmp)
    plt.close(figure)
    tmp.replace(path)
    return path
