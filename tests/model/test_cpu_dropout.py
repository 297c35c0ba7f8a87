"""The CPU bit-word dropout: its rate, its gradient, its attention path against SDPA, and the swap."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from model.bert import build_model
from model.config import PretrainConfig
from model.cpu_dropout import (
    ATTENTION,
    WordDropout,
    drop_threshold,
    dropout_attention_forward,
    use_cpu_dropout,
    word_dropout,
)


def test_drop_rate_and_expectation_match_p():
    torch.manual_seed(0)
    x = torch.ones(2_000_000)
    y = word_dropout(x, 0.1)
    dropped = (y == 0).float().mean().item()
    # binomial std at n=2e6, p=0.1 is 0.0002; the rate itself is 6554/65536 = 0.100006
    assert abs(dropped - 0.1) < 0.001
    assert abs(y.mean().item() - 1.0) < 0.002
    assert torch.all((y == 0) | torch.isclose(y, torch.tensor(65536 / (65536 - 6554))))


def test_eval_and_zero_p_are_identity_and_bad_p_is_refused():
    x = torch.randn(10, 7)
    assert word_dropout(x, 0.1, training=False) is x
    assert word_dropout(x, 0.0) is x
    module = WordDropout(0.1).eval()
    assert module(x) is x
    with pytest.raises(ValueError, match=r"outside \[0, 1\)"):
        drop_threshold(1.0)


def test_gradient_is_the_same_mask_and_scale():
    torch.manual_seed(1)
    x = torch.randn(64, 33, requires_grad=True)
    y = word_dropout(x, 0.3)
    y.backward(torch.ones_like(y))
    kept = y.detach() != 0
    scale = 65536 / (65536 - drop_threshold(0.3))
    assert torch.allclose(x.grad, kept.float() * scale)
    assert torch.allclose(y.detach(), x.detach() * kept * scale)


def test_same_seed_same_mask():
    x = torch.randn(1000)
    torch.manual_seed(5)
    first = word_dropout(x, 0.1)
    torch.manual_seed(5)
    assert torch.equal(first, word_dropout(x, 0.1))


def test_attention_without_dropping_equals_sdpa_with_padding():
    torch.manual_seed(2)
    query, key, value = (torch.randn(3, 2, 9, 8) for _ in range(3))
    lengths = torch.tensor([9, 5, 2])
    mask = (torch.arange(9)[None, :] < lengths[:, None])[:, None, None, :].expand(3, 1, 9, 9)  # True = attend
    module = nn.Module()
    module.is_causal = False
    expected, _ = sdpa_attention_forward(module, query, key, value, mask, dropout=0.0, scaling=0.3)
    # p below 1/131072 rounds to a zero threshold: the explicit (training) path runs but drops nothing
    got, _ = dropout_attention_forward(module, query, key, value, mask, dropout=1e-6, scaling=0.3)
    assert got.shape == (3, 9, 2, 8)
    assert torch.allclose(got, expected, atol=1e-5)


def test_use_cpu_dropout_keeps_weights_and_export_config():
    cfg = PretrainConfig(size="tiny", batch_size=4, device="cpu")
    torch.manual_seed(0)
    model = build_model(cfg, vocab_size=100, pad_token_id=0)
    keys = list(model.state_dict())
    use_cpu_dropout(model)
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert list(model.state_dict()) == keys
    assert model.config._attn_implementation == ATTENTION
    assert "_attn_implementation" not in model.config.to_dict()  # the exported config.json stays plain
    batch = {
        "input_ids": torch.randint(5, 100, (4, 16)),
        "token_type_ids": torch.zeros(4, 16, dtype=torch.long),
        "attention_mask": torch.ones(4, 16, dtype=torch.long),
        "masked_lm_positions": torch.tensor([[1, 2]] * 4),
        "masked_lm_ids": torch.randint(5, 100, (4, 2)),
        "masked_lm_weights": torch.ones(4, 2),
        "next_sentence_label": torch.tensor([0, 1, 0, 1]),
    }
    batch["attention_mask"][1, 10:] = 0
    out = model.train()(**batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**batch).mlm_logits, model(**batch).mlm_logits)  # no dropout in eval



def test_causal_attention_is_left_to_torch_sdpa():
    torch.manual_seed(3)
    query, key, value = (torch.randn(2, 2, 6, 4) for _ in range(3))
    module = nn.Module()
    module.is_causal = True
    torch.manual_seed(4)
    expected, _ = sdpa_attention_forward(module, query, key, value, None, dropout=0.2, scaling=0.5)
    torch.manual_seed(4)
    got, _ = dropout_attention_forward(module, query, key, value, None, dropout=0.2, scaling=0.5)
    assert torch.equal(got, expected)


def test_p_just_below_one_drops_at_the_highest_representable_rate_not_by_zero():
    assert drop_threshold(0.1) == 6554 and drop_threshold(0.9999) == 65529  # ordinary p: unchanged rounding
    assert drop_threshold(0.999995) == drop_threshold(1 - 1e-12) == 65535  # would round to 65536 = all dropped
    torch.manual_seed(0)
    x = torch.ones(2_000_000)
    y = word_dropout(x, 0.999995)
    kept = y[y != 0]
    assert torch.isfinite(y).all() and 0 < kept.numel() < 100  # ~2e6 / 65536 = 31 kept
    assert torch.all(kept == 65536.0)  # scale 2^16 / (2^16 - 65535)
