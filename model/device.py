"""Where and how a step runs: the device, the autocast precision, the seeds, and batches moved to the GPU."""

from __future__ import annotations

import random

import numpy as np
import torch


def select_device(choice: str, local_rank: int = 0) -> torch.device:
    """`auto` = cuda when available, else cpu; asking for cuda without one is an error. Enables TF32 on GPU."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA device; valid here: 'cpu' or 'auto'")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise ValueError(f"GPU {local_rank} asked for, but torch sees {torch.cuda.device_count()} "
                         f"(valid: 0 to {torch.cuda.device_count() - 1}; CUDA_VISIBLE_DEVICES may hide some)")
    torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls (outside autocast) on tensor cores
    torch.backends.cudnn.allow_tf32 = True
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision choice on a device; None = plain fp32.

    auto: bf16 on a GPU that computes it natively (Ampere and later), fp16 with the gradient scaler on
    older ones (V100, T4: bf16 there is emulated, several times slower), fp32 on CPU.
    """
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    if precision in ("bf16", "fp16") and device.type != "cuda":
        raise ValueError(f"precision={precision!r} needs a GPU but training runs on {device}; valid: 'auto', 'fp32'")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) generators from any non-negative int.

    NumPy's legacy seed must be < 2^32 and torch's < 2^64: larger seeds (or seed + rank under DDP)
    are folded modulo those, which leaves every seed already in range exactly as it was.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed % 2**64)  # also seeds every CUDA device


def model_inputs(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor | None]:
    """A collated batch on `device`, with attention_mask=None when no row is padded.

    Without a mask SDPA may run flash attention; transformers drops an all-ones mask itself only in
    eager mode (under torch.compile it cannot look at the values), and its check syncs with the GPU.
    """
    unpadded = bool(batch["attention_mask"].all())  # on the host: no GPU sync
    return {
        name: None if name == "attention_mask" and unpadded else tensor.to(device, non_blocking=True)
        for name, tensor in batch.items()
    }


def host_to_device(values: list[float], device: torch.device) -> torch.Tensor:
    """A float64 tensor of host values on `device`, copied from pinned memory so the host does not wait
    for the GPU work already queued (torch.tensor(..., device="cuda") would)."""
    tensor = torch.tensor(values, dtype=torch.float64)
    if device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)
