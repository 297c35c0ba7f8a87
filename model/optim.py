"""AdamW without decay on biases and LayerNorm weights; linear warmup then linear decay to 0."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from model.config import PretrainConfig


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed weight matrices/embeddings, and undecayed biases + LayerNorm weights."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()  # tied parameters (decoder = word embeddings) appear under two names
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if isinstance(module, nn.LayerNorm) or name.endswith("bias"):
                no_decay.append(param)
            else:
                decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: PretrainConfig) -> torch.optim.AdamW:
    """AdamW over `parameter_groups` with the config's learning rate, betas and epsilon."""
    return torch.optim.AdamW(
        parameter_groups(model, cfg.weight_decay),
        lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_epsilon,
    )


def warmup_linear_decay(step: int, warmup_steps: int, max_steps: int) -> float:
    """Learning-rate multiplier for optimizer step `step` (0-based): (step+1)/warmup, then linear to 0."""
    if step < warmup_steps:
        # +1 so the very first update already moves (HF's step/warmup spends step 0 at lr 0).
        return (step + 1) / warmup_steps
    return max(0.0, (max_steps - step) / max(1, max_steps - warmup_steps))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: PretrainConfig) -> LambdaLR:
    """LambdaLR applying `warmup_linear_decay` for the config's warmup and total steps."""
    warmup_steps, max_steps = cfg.warmup_steps, cfg.max_steps
    return LambdaLR(optimizer, lambda step: warmup_linear_decay(step, warmup_steps, max_steps))
