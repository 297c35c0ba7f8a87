"""The GPU benchmark's logic, run as a CPU dry run (the suite never needs a GPU)."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import gpu_bert_base  # noqa: E402


def test_cpu_dry_run_prints_throughput(capsys):
    summary = gpu_bert_base.main(["--device", "cpu", "--size", "tiny", "--steps", "2", "--warmup", "1",
                                  "--batch-size", "4", "--vocab-size", "500"])  # fmt: skip
    assert summary["sequences_per_second"] > 0 and summary["tflops_per_second"] > 0
    assert math.isnan(summary["mfu"])  # no GPU peak on a CPU
    assert math.isfinite(summary["final_loss"])
    assert "sequences/s" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_without_cuda_it_stops_at_once_with_a_clear_message():
    done = subprocess.run([sys.executable, "bench/gpu_bert_base.py", "--steps", "1"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(REPO)})  # fmt: skip
    assert done.returncode == 1
    assert "needs a CUDA GPU and torch sees none" in done.stderr
