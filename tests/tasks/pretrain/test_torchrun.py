"""The pretrain stage's torchrun launch: 2 CPU (gloo) processes, metrics forwarded as training reports them."""

from pathlib import Path

import pytest

from tasks.pretrain.torchrun import pretrain_under_torchrun, torchrun_command
from tests.model.conftest import instances_dir, tiny_config, tokenizer_dir  # noqa: F401 (fixtures)


def test_the_command_is_a_standalone_torchrun_of_model_launch(tmp_path: Path) -> None:
    command = torchrun_command(4, tmp_path / "c.yaml", tmp_path / "i", tmp_path / "t", tmp_path / "o", tmp_path)
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert command[5:7] == ["-m", "model.launch"] and "--metrics-file" in command


@pytest.mark.slow
def test_two_processes_train_and_report_through_the_stage(tmp_path, instances_dir, tokenizer_dir,  # noqa: F811
                                                          monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    reported: list[tuple[dict, int]] = []
    cfg = tiny_config(max_steps=6, eval_every=6, checkpoint_every=3, log_every=3)
    stats = pretrain_under_torchrun(cfg, 2, instances_dir, tokenizer_dir, tmp_path / "out",
                                    lambda metrics, step: reported.append((metrics, step)), poll_seconds=0.2)
    assert stats["world_size"] == 2 and stats["steps"] == 6
    assert {step for _, step in reported} >= {3, 6} and any("train/loss" in m for m, _ in reported)
    assert (tmp_path / "out" / "model" / "config.json").is_file()

    with pytest.raises(RuntimeError, match=r"training under torchrun \(2 processes\) failed with status 1"):
        pretrain_under_torchrun(cfg, 2, tmp_path / "no-instances", tokenizer_dir, tmp_path / "bad")
