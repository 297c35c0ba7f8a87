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
