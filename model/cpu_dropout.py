"""Dropout for CPU training that draws 16 random bits per element instead of a Bernoulli float.

On CPU, `torch.nn.functional.dropout` (and SDPA's math path, which CPU attention takes whenever
dropout is on) fills a float tensor with `bernoulli_`: about 30 ms for BERT-mini's 4.2 M attention
probabilities per layer on this 2-core machine, 12% of a BERT-mini step. Here one 64-bit draw of
`torch.randint` gives four 16-bit words, about 5x cheaper. An element is dropped when its word is
below round(p * 2^16), so the drop rate is p rounded to 1/65536 (0.1 -> 0.100006; at most 65535/65536), and kept
elements are scaled by 2^16 / (2^16 - threshold), which keeps the expectation exact.

Draws come from torch's default CPU generator, which checkpoints save and restore, so exact resume
holds. GPUs keep torch's fused philox dropout: `use_cpu_dropout` is for CPU models only.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

WORD_STATES = 1 << 16  # values of one 16-bit word
ATTENTION = "pretrainflow_cpu_dropout"  # the attention implementation name registered with transformers


def drop_threshold(p: float) -> int:
    """Words below this (out of 2^16) drop their element; at most 2^16 - 1, so one word value always keeps."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability {p} is outside [0, 1)")
    # p >= 1 - 2^-17 would round to 2^16 (drop everything, scale 1/0): use the highest rate below 1 instead.
    return min(round(p * WORD_STATES), WORD_STATES - 1)


class _MaskedScale(torch.autograd.Function):
    """x * keep * scale forward and grad * keep * scale backward, each one fused aten kernel."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.ops.aten.native_dropout_backward(x, keep, scale)  # computes x * keep * scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # noqa: ANN001
        (keep,) = ctx.saved_tensors
        return torch.ops.aten.native_dropout_backward(grad, keep, ctx.scale), None, None


def word_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout of x (any shape) with drop rate p rounded to 1/65536."""
    threshold = drop_threshold(p)
    if not training or threshold == 0:
        return x
    count = x.numel()
    words = torch.randint(-(2**63), 2**63 - 1, ((count + 3) // 4,), dtype=torch.int64, device=x.device)
    signed = words.view(torch.int16)[:count].view(x.shape)  # uniform over [-32768, 32767]
    keep = signed >= threshold - WORD_STATES // 2
    return _MaskedScale.apply(x, keep, WORD_STATES / (WORD_STATES - threshold))


class WordDropout(nn.Module):
    """nn.Dropout's interface (`p`, train/eval) over `word_dropout`."""

    def __init__(self, p: float):
        super().__init__()
        drop_threshold(p)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return word_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def dropout_attention_forward(
    module: nn.Module,
    query: torch.Tensor,  # (batch, heads, q_len, head_dim)
    key: torch.Tensor,  # (batch, heads, kv_len, head_dim)
    value: torch.Tensor,  # (batch, heads, kv_len, head_dim)
    attention_mask: torch.Tensor | None,  # sdpa_mask's: bool (batch, 1, q_len, kv_len), True = attend; or None
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, but with `word_dropout` on the probabilities when training.

    Without dropout (evaluation), and for causal or position-biased attention, it is SDPA itself; with
    dropout, softmax(QK^T * scale + mask) V as SDPA's math path computes it. Returns
    (batch, q_len, heads, head_dim) like the SDPA interface.
    """
    causal = kwargs.get("is_causal") or getattr(module, "is_causal", False)
    if dropout == 0.0 or causal or kwargs.get("position_bias") is not None:  # not BERT-style: torch's own SDPA
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query * scale, key.transpose(2, 3))  # (batch, heads, q_len, kv_len)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = word_dropout(torch.softmax(scores, dim=-1), dropout)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION, dropout_attention_forward)
ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)


def use_cpu_dropout(model: nn.Module) -> nn.Module:
    """Swap every nn.Dropout in `model` for WordDropout and its attention for `dropout_attention_forward`.

    Parameters and state_dict are untouched. `model.config._attn_implementation` changes; it is not
    part of `config.to_dict()`, so the exported model (model/export.py) loads with transformers' default.
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, WordDropout(child.p))
    model.config._attn_implementation = ATTENTION
    return model
