"""Debian packages as offline sample data: download one with apt-get (no install, no root) and unpack it.

The one module that runs apt-get and dpkg-deb. The Chinese sample corpus (tasks/corpus/zh_manpages.py) and
the out-of-domain evaluation task (tasks/evaluate/fortunes.py) come from here; it imports nothing of the project.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def download_packages(packages: tuple[str, ...], work_dir: Path) -> tuple[Path, dict[str, str]]:
    """Download the packages with apt-get (no install, no root) and unpack them into one tree;
    -> (the tree's root, package -> version)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    work_dir.chmod(0o755)  # apt-get, run as root, downloads as its _apt user where that user can write
    subprocess.run(["apt-get", "download", "-q", *packages], cwd=work_dir, check=True, stdout=subprocess.DEVNULL)
    versions = {}
    for package in packages:
        deb = next(work_dir.glob(f"{package}_*.deb"))
        versions[package] = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True,
                                           text=True).stdout.strip()
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work_dir / "root")], check=True)
    return work_dir / "root", versions
