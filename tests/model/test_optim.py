import pytest
import torch

from model.bert import build_model
from model.optim import build_optimizer, build_scheduler, parameter_groups, warmup_linear_decay
from tests.model.conftest import tiny_config


def test_no_decay_on_biases_and_layernorm_weights():
    model = build_model(tiny_config(), vocab_size=45, pad_token_id=0)
    decay, no_decay = parameter_groups(model, weight_decay=0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    decay_names = {names[id(p)] for p in decay["params"]}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert "bert.embeddings.word_embeddings.weight" in decay_names
    assert "bert.encoder.layer.0.attention.self.query.weight" in decay_names
    assert "bert.embeddings.LayerNorm.weight" in no_decay_names
    assert "cls.predictions.transform.LayerNorm.weight" in no_decay_names
    assert "cls.predictions.bias" in no_decay_names
    assert all(n.endswith("bias") or "LayerNorm" in n for n in no_decay_names)
    assert not any(n.endswith("bias") or "LayerNorm" in n for n in decay_names)
    # Every parameter exactly once, the tied decoder included only through the embeddings.
    assert len(decay_names) + len(no_decay_names) == len(list(model.parameters()))


def test_schedule_warms_up_linearly_then_decays_to_zero():
    factors = [warmup_linear_decay(s, warmup_steps=4, max_steps=12) for s in range(13)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0
    assert all(a > b for a, b in zip(factors[4:], factors[5:], strict=False))
    assert factors[12] == 0.0
    assert factors[11] == pytest.approx(1 / 8)


def test_schedule_without_warmup_starts_at_peak():
    assert warmup_linear_decay(0, warmup_steps=0, max_steps=10) == 1.0
    assert warmup_linear_decay(10, warmup_steps=10, max_steps=10) == 0.0


def test_scheduler_drives_optimizer_learning_rate():
    cfg = tiny_config(learning_rate=1e-3, warmup_steps=2, max_steps=6)
    model = build_model(cfg, vocab_size=45, pad_token_id=0)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    lrs = []
    for _ in range(6):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([5e-4, 1e-3, 1e-3, 7.5e-4, 5e-4, 2.5e-4])
    assert all(g["lr"] == optimizer.param_groups[0]["lr"] for g in optimizer.param_groups)
    assert isinstance(optimizer, torch.optim.AdamW)
