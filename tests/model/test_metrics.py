import pytest
import torch

from model.metrics import gpu_peak_flops, peak_flops_by_name


@pytest.mark.parametrize(
    "name, peak",
    [
        ("NVIDIA L4", 121e12),
        ("NVIDIA L40", 181e12),  # contains "L4": the longer key must win
        ("NVIDIA L40S", 362e12),
        ("NVIDIA A10G", 125e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA GeForce RTX 3090", None),
    ],
)
def test_gpu_peak_is_looked_up_by_the_most_specific_name(name, peak):
    assert peak_flops_by_name(name) == peak


def test_no_peak_on_cpu():
    assert gpu_peak_flops(torch.device("cpu")) is None
