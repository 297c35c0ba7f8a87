"""The artifact store: the one module that knows the on-disk layout of stage outputs.

Layout under a data root::

    <root>/<stage>/<id>/            a finished artifact; manifest.json is its last file
    <root>/<stage>/.staging-<id>/   work in progress; kept across a crash so a rerun resumes

An id is a hash of the stage's resolved config, the ids of its inputs and the stage version, so the
same inputs and config always give the same id and a finished artifact is a cache hit. That contract
lives in the folder names, not in any database, so it survives a lost Prefect or MLflow store.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
_ID_CHARS = 16  # 64 bits of sha256: collisions are not a concern at any realistic artifact count


def artifact_id(stage: str, config: dict[str, Any], inputs: dict[str, str], version: str) -> str:
    """Content address of a stage output: sha256 over canonical JSON of what determines it."""
    payload = json.dumps(
        {"stage": stage, "version": version, "config": config, "inputs": inputs},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:_ID_CHARS]


def file_sha256(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Streaming sha256 of one file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def code_version() -> dict[str, str]:
    """The package version and, in a git checkout, the commit (with '-dirty' for local edits)."""
    try:
        version = metadata.version("pretrainflow")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"package": version, "git_commit": git_commit()}


def git_commit() -> str:
    """HEAD of the checkout this code runs from, or 'unknown' outside one."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here, capture_output=True, text=True, timeout=10,
        )
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass(frozen=True)
class Artifact:
    """A finished stage output and its manifest."""

    stage: str
    id: str
    path: Path
    manifest: dict[str, Any]

    @property
    def inputs(self) -> dict[str, str]:
        """Upstream stage name -> artifact id."""
        return self.manifest.get("inputs", {})

    @property
    def stats(self) -> dict[str, Any]:
        return self.manifest.get("stats", {})


class ArtifactError(RuntimeError):
    """A missing, incomplete or corrupt artifact."""


class ArtifactStore:
    """Content-addressed stage outputs under one local data root."""

    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser().resolve()

    def path(self, stage: str, id: str) -> Path:
        return self.root / stage / id

    def staging_dir(self, stage: str, id: str) -> Path:
        """Where a stage writes while it works; created if missing, reused after a crash."""
        staging = self.root / stage / f".staging-{id}"
        staging.mkdir(parents=True, exist_ok=True)
        return staging

    def exists(self, stage: str, id: str) -> bool:
        """True only for a finished artifact: a folder without a manifest is not one."""
        return (self.path(stage, id) / MANIFEST).is_file()

    def get(self, stage: str, id: str) -> Artifact:
        path = self.path(stage, id)
        if not (path / MANIFEST).is_file():
            raise ArtifactError(f"no finished {stage} artifact {id} under {self.root}")
        return Artifact(stage, id, path, json.loads((path / MANIFEST).read_text()))

    def commit(
        self,
        stage: str,
        id: str,
        *,
        config: dict[str, Any],
        inputs: dict[str, str],
        stats: dict[str, Any],
        version: str,
        extra: dict[str, Any] | None = None,
    ) -> Artifact:
        """Checksum the staging folder, write its manifest last, then rename it into place.

        extra: further manifest fields (a refreshed snapshot's parent, family and generation).
        """
        staging = self.root / stage / f".staging-{id}"
        if not staging.is_dir():
            raise ArtifactError(f"nothing staged for {stage} {id} at {staging}")
        files = {
            str(p.relative_to(staging)): {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
            for p in sorted(staging.rglob("*"))
            if p.is_file() and p.name != MANIFEST and not p.name.endswith(".tmp")
        }
        manifest = {
            "stage": stage,
            "id": id,
            "version": version,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": config,
            "inputs": inputs,
            "stats": stats,
            "files": files,
            "code": code_version(),
            **(extra or {}),
        }
        for leftover in staging.rglob("*.tmp"):  # half-written files of a killed attempt
            leftover.unlink()
        _write_json_atomic(staging / MANIFEST, manifest)
        final = self.path(stage, id)
        if (final / MANIFEST).exists():  # a concurrent run of the same stage finished first
            shutil.rmtree(staging)
            return self.get(stage, id)
        if final.exists():  # a folder without a manifest is not an artifact: replace it
            shutil.rmtree(final)
        os.replace(staging, final)
        return self.get(stage, id)

    def verify(self, stage: str, id: str) -> list[str]:
        """Problems found re-checking an artifact's files against its manifest (empty if sound)."""
        artifact = self.get(stage, id)
        problems = []
        for rel, expected in artifact.manifest["files"].items():
            path = artifact.path / rel
            if not path.is_file():
                problems.append(f"{rel}: missing")
            elif file_sha256(path) != expected["sha256"]:
                problems.append(f"{rel}: checksum differs from manifest")
        return problems

    def list(self, stage: str | None = None) -> list[Artifact]:
        """Finished artifacts, oldest first."""
        folders = [self.root / stage] if stage else sorted(self.root.glob("*/"))
        found = []
        for folder in folders:
            if not folder.is_dir():
                continue
            for child in folder.iterdir():
                if not child.name.startswith(".") and (child / MANIFEST).is_file():
                    found.append(self.get(folder.name, child.name))
        return sorted(found, key=lambda a: (a.manifest.get("created_at", ""), a.stage))

    def family_head(self, stage: str, base_id: str) -> str:
        """The newest refresh descending from base_id (base_id itself when it was never refreshed).

        A refresh writes its manifest with family = the base id and generation = its parent's + 1, so the
        newest is the highest generation, whatever the clocks said.
        """
        members = [a for a in self.list(stage) if a.manifest.get("family") == base_id]
        if not members:
            return base_id
        head = max(members, key=lambda a: (a.manifest.get("generation", 0), a.manifest.get("created_at", "")))
        return head.id

    def lineage(self, stage: str, id: str) -> list[Artifact]:
        """This artifact followed by every artifact it was built from, depth first."""
        chain, todo, seen = [], [(stage, id)], set()
        while todo:
            key = todo.pop(0)
            if key in seen:
                continue
            seen.add(key)
            if not self.exists(*key):
                continue
            artifact = self.get(*key)
            chain.append(artifact)
            todo.extend(artifact.inputs.items())
        return chain


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
