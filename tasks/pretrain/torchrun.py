"""Launch the pretrain stage's training under torchrun from a stage run (one node, N processes).

The flow process stays the one that talks to MLflow and Prefect: the training processes write
rank 0's metric reports as JSON lines and their final statistics as JSON into a side folder, and
this module forwards each line to the stage's metric logger while training runs. Several nodes are
launched by hand with the same `python -m model.launch` command under torchrun (see README).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from model.config import PretrainConfig


def torchrun_command(nproc: int, cfg_file: Path, instances: Path, tokenizer: Path, out: Path, side: Path) -> list[str]:
    """`python -m torch.distributed.run --standalone --nproc_per_node N -m model.launch ...` for this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "model.launch", "--instances", str(instances), "--tokenizer", str(tokenizer), "--out", str(out),
            "--config", str(cfg_file), "--metrics-file", str(side / "metrics.jsonl"),
            "--stats-file", str(side / "stats.json")]


def _forward(lines_file: Path, offset: int, log_metrics: Callable[[dict[str, float], int], None] | None) -> int:
    """Send complete JSON lines after byte `offset` to log_metrics; returns the new offset."""
    if not lines_file.is_file():
        return offset
    with open(lines_file, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    complete = chunk[: chunk.rfind(b"\n") + 1]
    for line in complete.splitlines():
        record = json.loads(line)
        if log_metrics is not None:
            log_metrics(record["metrics"], record["step"])
    return offset + len(complete)


_STOP_SECONDS = 600  # for the workers to finish a step and write their stop checkpoint


def pretrain_under_torchrun(cfg: PretrainConfig, nproc: int, instances: Path, tokenizer: Path, out: Path,
                            log_metrics: Callable[[dict[str, float], int], None] | None = None,
                            poll_seconds: float = 2.0) -> dict[str, int | float]:
    """Run training in `nproc` DDP processes on this node; metrics reach log_metrics as they are reported."""
    with tempfile.TemporaryDirectory(prefix="pretrainflow-torchrun-") as side_dir:
        side = Path(side_dir)
        cfg_file = side / "pretrain.yaml"
        cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
        command = torchrun_command(nproc, cfg_file, instances, tokenizer, out, side)
        process = subprocess.Popen(command)  # its output goes to this process's stdout/stderr (the flow log)
        offset = 0
        try:
            while process.poll() is None:
                time.sleep(poll_seconds)
                offset = _forward(side / "metrics.jsonl", offset, log_metrics)
        except BaseException:  # SIGTERM or Ctrl-C here: torchrun passes SIGTERM on, the workers checkpoint and stop
            process.terminate()
            process.wait(timeout=_STOP_SECONDS)
            raise
        _forward(side / "metrics.jsonl", offset, log_metrics)
        if process.returncode != 0:  # torchrun reports 1 whatever its processes exited with: their errors are logged
            raise RuntimeError(f"training under torchrun ({nproc} processes) failed with status {process.returncode}; "
                               f"each process's error is in the log above; command: {' '.join(command)}")
        return json.loads((side / "stats.json").read_text())
