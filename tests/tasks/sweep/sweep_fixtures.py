"""Shared inputs of the sweep tests: a base config file reading two local text files into a data root."""

from pathlib import Path

import yaml

WORDS = "the quick brown fox jumps over the lazy dog while the river runs past old mills and green fields"


def base_config(tmp_path: Path) -> Path:
    """A YAML base config (as `--config PATH` reads it) with a local corpus and its own data root."""
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    for name in ("a", "b"):
        (docs / f"{name}.txt").write_text(f"{name} {WORDS} {name}.\n")
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump({
        "name": "base",
        "data_root": str(tmp_path / "data"),
        "corpus": {"local_files": [str(docs / "*.txt")], "min_words": 5, "language": {"enabled": False}},
        "pretrain": {"max_steps": 10, "warmup_steps": 2},
    }))
    return path
