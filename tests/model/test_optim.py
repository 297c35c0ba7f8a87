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


def test_cosine_and_inverse_sqrt_schedules():
    from model.optim import warmup_cosine_decay, warmup_inverse_sqrt_decay

    cosine = [warmup_cosine_decay(s, warmup_steps=2, max_steps=10) for s in range(11)]
    assert cosine[:2] == [0.5, 1.0] and cosine[2] == 1.0
    assert cosine[6] == pytest.approx(0.5)  # halfway through the decay
    assert cosine[10] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(cosine[2:], cosine[3:], strict=False))
    inverse = [warmup_inverse_sqrt_decay(s, warmup_steps=4, max_steps=10) for s in range(16)]
    assert inverse[:4] == [0.25, 0.5, 0.75, 1.0]
    assert inverse[15] == pytest.approx((4 / 16) ** 0.5)  # never reaches 0


def test_lamb_scales_decayed_tensors_by_the_trust_ratio():
    from model.optim import Lamb

    weight = torch.nn.Parameter(torch.full((4,), 3.0))
    optimizer = Lamb([{"params": [weight], "weight_decay": 0.01}], lr=0.1, betas=(0.9, 0.999), eps=1e-6)
    (weight * torch.tensor([1.0, -2.0, 3.0, -4.0])).sum().backward()
    optimizer.step()
    # First step, bias-corrected: the Adam direction is sign(grad); plus decay 0.01 x w. The trust ratio
    # ||w|| / ||update|| makes the step lr * ||w|| per unit of update norm.
    update = torch.tensor([1.0, -1.0, 1.0, -1.0]) + 0.01 * 3.0
    expected = 3.0 - 0.1 * 6.0 / update.norm() * update
    torch.testing.assert_close(weight.detach(), expected, rtol=0, atol=1e-5)


def test_lamb_steps_undecayed_tensors_without_trust_ratio_and_with_bias_correction():
    from model.optim import Lamb

    bias = torch.nn.Parameter(torch.zeros(4))  # zero-initialised: no scale to trust
    layer_norm = torch.nn.Parameter(torch.full((4,), 3.0))  # the trust ratio would make its step 3 x lr
    optimizer = Lamb([{"params": [bias, layer_norm], "weight_decay": 0.0}], lr=0.1, betas=(0.9, 0.999), eps=1e-6)
    for step in range(1, 4):
        bias.grad = torch.tensor([1.0, -1.0, 2.0, -2.0])
        layer_norm.grad = torch.tensor([0.5, -0.5, 0.5, -0.5])
        optimizer.step()
        # A constant gradient: bias-corrected moments give exactly lr * sign(grad) every step (as apex's
        # FusedLAMB with bias_correction=True, use_nvlamb=False); without correction step 1 moves ~3.2 x lr.
        torch.testing.assert_close(bias.detach(), -0.1 * step * torch.tensor([1.0, -1.0, 1.0, -1.0]), rtol=0, atol=1e-5)
        torch.testing.assert_close(
            layer_norm.detach(), 3.0 - 0.1 * step * torch.tensor([1.0, -1.0, 1.0, -1.0]), rtol=0, atol=1e-5
        )


def test_lamb_and_weight_decay_groups_from_config():
    cfg = tiny_config(optimizer="lamb")
    model = build_model(cfg, vocab_size=45, pad_token_id=0)
    optimizer = build_optimizer(model, cfg)
    assert type(optimizer).__name__ == "Lamb"
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]
