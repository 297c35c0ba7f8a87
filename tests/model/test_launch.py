"""`python -m model.launch` on one process, and under torchrun with 2 CPU (gloo) processes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from model.launch import build_config, main

REPO = Path(__file__).resolve().parents[2]
TINY = ["hidden_size=32", "num_hidden_layers=1", "num_attention_heads=2", "intermediate_size=64",
        "max_position_embeddings=64", "batch_size=16", "max_steps=6", "warmup_steps=2", "eval_every=6",
        "eval_batches=1", "checkpoint_every=3", "log_every=3", "device=cpu"]  # fmt: skip


def test_config_from_a_preset_section_and_overrides(tmp_path):
    (tmp_path / "preset.yaml").write_text("corpus: {}\npretrain:\n  size: mini\n  max_steps: 50\n")
    cfg = build_config(tmp_path / "preset.yaml", ["max_steps=7", "warmup_steps=2", "pretrain.nsp=false"])
    assert (cfg.hidden_size, cfg.max_steps, cfg.nsp) == (256, 7, False)
    assert build_config(REPO / "configs" / "tiny.yaml", []).hidden_size == 32


def test_size_set_on_a_preset_with_a_shape_replaces_the_shape():
    # configs/tiny.yaml names hidden_size etc.; --set size=mini must train mini, not tiny.yaml's 32-wide model
    cfg = build_config(REPO / "configs" / "tiny.yaml", ["size=mini"])
    assert (cfg.size, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == ("mini", 256, 4, 4)
    cfg = build_config(REPO / "configs" / "tiny.yaml", ["pretrain.size=mini", "num_hidden_layers=2"])
    assert (cfg.hidden_size, cfg.num_hidden_layers) == (256, 2)  # a shape field set alongside still wins


def test_bad_input_exits_2_with_the_field_named(tmp_path, capsys, instances_dir, tokenizer_dir):
    code = main(["--instances", str(instances_dir), "--tokenizer", str(tokenizer_dir), "--out", str(tmp_path),
                 "--set", "optimizer=sgd"])  # fmt: skip
    assert code == 2
    assert "optimizer" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path, instances_dir, tokenizer_dir):
    command = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
               "-m", "model.launch", "--instances", str(instances_dir), "--tokenizer", str(tokenizer_dir),
               "--out", str(tmp_path / "out"), *[arg for field in TINY for arg in ("--set", field)]]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "'world_size': 2" in done.stdout and "'steps': 6" in done.stdout
    assert (tmp_path / "out" / "model" / "model.safetensors").is_file()
