import random

import numpy as np
import torch

from model.device import seed_everything


def draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.random()), float(torch.rand(()))


def test_seeds_past_numpy_and_torch_ranges_are_accepted_and_in_range_seeds_are_unchanged():
    seed_everything(7)
    seeded = draws()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    assert seeded == draws()  # in-range seeds seed every generator exactly as before

    for seed in (2**32 - 1, 2**32, 2**32 + 3, 2**64 + 1):  # seed + rank under DDP can cross 2^32
        seed_everything(seed)
        first = draws()
        seed_everything(seed)
        assert draws() == first
    seed_everything(2**32 + 3)
    legacy_numpy = float(np.random.random())
    np.random.seed(3)
    assert legacy_numpy == float(np.random.random())  # NumPy's legacy seed is taken modulo 2^32


def test_auto_precision_is_bf16_where_the_gpu_computes_it_else_fp16(monkeypatch):
    from model.device import autocast_dtype

    gpu, cpu = torch.device("cuda", 0), torch.device("cpu")  # only the device type is read
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: not including_emulation)
    assert autocast_dtype("auto", gpu) is torch.bfloat16  # Ampere and later
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert autocast_dtype("auto", gpu) is torch.float16  # V100, T4: bf16 only emulated
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("bf16", gpu) is torch.bfloat16
