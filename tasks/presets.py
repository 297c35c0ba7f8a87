"""Where the shipped config presets live: listed without loading the config classes (`pretrainflow --help`)."""

from __future__ import annotations

from pathlib import Path

PRESETS_DIR = Path(__file__).resolve().parents[1] / "configs"


def preset_names() -> list[str]:
    """Names of the YAML presets shipped in configs/."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
