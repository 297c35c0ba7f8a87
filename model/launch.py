"""Run the pretrain stage's training alone, on one process or under torchrun (one node or many).

    python -m model.launch --instances DIR --tokenizer DIR --out DIR [--config FILE.yaml] [--set field=value ...]
    torchrun --nproc_per_node 8 -m model.launch --instances DIR --tokenizer DIR --out DIR --config configs/demo.yaml
    torchrun --nnodes 2 --node_rank R --master_addr HOST --nproc_per_node 8 -m model.launch ...

--config takes a YAML holding either the pretrain fields or a whole preset with a `pretrain:` section;
--set overrides one field (YAML value). Every process runs the same command; rank 0 writes OUT.
Exit status: 0 done, 2 bad input, 143 stopped by SIGTERM (a checkpoint was written), 1 non-finite loss or
gradient norm.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import yaml
from pydantic import ValidationError

from model.config import PretrainConfig, override_size
from model.train import NonFiniteLossError, TrainingInterrupted, pretrain


def build_config(config_path: Path | None, overrides: list[str]) -> PretrainConfig:
    """The pretrain config from an optional YAML (pretrain section or bare fields) plus field=value overrides."""
    fields: dict = {}
    if config_path is not None:
        loaded = yaml.safe_load(Path(config_path).read_text()) or {}
        fields = dict(loaded.get("pretrain", loaded) if isinstance(loaded, dict) else {})
    for override in overrides:
        name, sep, raw = override.partition("=")
        if not sep:
            raise ValueError(f"--set {override!r} is not of the form field=value (e.g. --set max_steps=100)")
        fields[name.removeprefix("pretrain.")] = yaml.safe_load(raw)
    overridden = {override.partition("=")[0].removeprefix("pretrain.") for override in overrides}
    return PretrainConfig.model_validate(override_size(fields, overridden))


def _metrics_writer(path: Path | None) -> Callable[[dict[str, float], int], None] | None:
    """A log_metrics that appends JSON lines to path (the trainer calls it on rank 0 only)."""
    if path is None:
        return None

    def write(metrics: dict[str, float], step: int) -> None:
        with open(path, "a") as f:
            f.write(json.dumps({"step": step, "metrics": metrics}) + "\n")

    return write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=Path, required=True, help="instances artifact folder (train/, validation/)")
    parser.add_argument("--tokenizer", type=Path, required=True, help="Hugging Face tokenizer folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder: checkpoints/, model/, loss_curves.png")
    parser.add_argument("--config", type=Path, default=None, help="YAML with the pretrain fields or a pretrain: section")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--metrics-file", type=Path, default=None,
                        help="rank 0 appends every metrics report here as a JSON line {step, metrics}")
    parser.add_argument("--stats-file", type=Path, default=None, help="rank 0 writes the final statistics here (JSON)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        cfg = build_config(args.config, args.overrides)
        stats = pretrain(cfg, args.instances, args.tokenizer, args.out, _metrics_writer(args.metrics_file))
        if args.stats_file is not None and int(os.environ.get("RANK", "0")) == 0:
            tmp = args.stats_file.with_name(args.stats_file.name + ".tmp")
            tmp.write_text(json.dumps(stats))
            os.replace(tmp, args.stats_file)
    except (ValueError, ValidationError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingInterrupted as stopped:
        print(stopped, file=sys.stderr)
        return 143
    except NonFiniteLossError as diverged:
        print(f"error: {diverged}", file=sys.stderr)
        return 1
    print({name: round(value, 4) if isinstance(value, float) else value for name, value in stats.items()})
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Training is over and its outputs are on disk. Under torchrun a rank could hang in interpreter
        # teardown (seen once on rank 1 after rank 0 had exited: stuck after pretrain() returned, in native
        # destructors), so distributed ranks leave at once instead of unwinding.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
