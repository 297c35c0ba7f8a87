"""The artifact store: the one module that knows the layout of stage outputs.

Layout under a data root (a local folder, or any fsspec URL such as s3://bucket/prefix)::

    <root>/<stage>/<id>/            a finished artifact; manifest.json is its last file
    <root>/<stage>/.staging-<id>/   work in progress (always local); kept across a crash so a rerun resumes
    <root>/<stage>/.shared/         results that builds of a stage share, named by a hash of their inputs
                                    (always local; evaluate: scratch-runs/, its from-scratch fine-tuning)

An id is a hash of the stage's resolved config, the ids of its inputs and the stage version, so the
same inputs and config always give the same id and a finished artifact is a cache hit. That contract
lives in the folder names, not in any database, so it survives a lost Prefect or MLflow store.

With a remote root, stages still read and write local folders: `fetch` copies an input artifact into a
local cache (checksums verified, manifest last) and `commit` uploads a finished one file by file with
its manifest last, so a reader never sees a half-uploaded artifact as finished. Nothing relies on a
rename being atomic on the remote side.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.errors import InputError

if TYPE_CHECKING:
    import fsspec

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FAILED = ".failed.json"  # in a staging folder: the build failed on bad input (when, why); removed when it resumes
CACHE_ENV = "PRETRAINFLOW_CACHE_DIR"  # where artifacts of a remote data root are cached locally
_ID_CHARS = 16  # 64 bits of sha256: collisions are not a concern at any realistic artifact count


def artifact_id(stage: str, config: dict[str, Any], inputs: dict[str, str], version: str,
                external: dict[str, str] | None = None) -> str:
    """Content address of a stage output: sha256 over canonical JSON of what determines it.

    `external`: digests of folders outside the store that the config names (a given tokenizer, models
    to compare), so editing one in place changes the id; left out of the hash when empty.
    """
    content = {"stage": stage, "version": version, "config": config, "inputs": inputs}
    if external:
        content["external"] = external
    payload = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:_ID_CHARS]


def folder_digest(folder: Path) -> str:
    """sha256 over the relative path and content digest of every file under `folder`, in path order."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for path in files:
        content = _cached_file_sha256(path, *_stat_key(path))
        digest.update(f"{path.relative_to(folder).as_posix()}\0{content}\n".encode())
    return digest.hexdigest()


def _stat_key(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


@functools.lru_cache(maxsize=4096)
def _cached_file_sha256(path: Path, size: int, mtime_ns: int, inode: int) -> str:
    """file_sha256, computed once per process while the file's size, mtime and inode stay the same
    (ids are resolved several times per pipeline run; a BERT-base weights file is 440 MB)."""
    return file_sha256(path)


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


@dataclass(frozen=True)
class Unfinished:
    """A staging folder: a build that has not finished (running, killed and resumable, or failed)."""

    stage: str
    id: str
    path: Path
    bytes: int
    last_written: datetime  # UTC, the newest file's modification time
    failed: str | None = None  # why the last attempt failed on bad input; None: running, or killed


class ArtifactError(InputError):
    """A missing, incomplete or corrupt artifact."""


def _protocol(url: str) -> str:
    """fsspec's protocol of url: 'file' for a plain path, which is told without importing fsspec (~0.08 CPU-s)."""
    if "://" not in url and "::" not in url:  # what fsspec.utils.get_protocol splits on
        return "file"
    import fsspec.utils

    return fsspec.utils.get_protocol(url)


def is_remote(root: Path | str) -> bool:
    """Whether root is an fsspec URL other than a local path (file:// counts as local)."""
    return _protocol(str(root)) not in ("file", "local")


def missing_backend(root: Path | str) -> str | None:
    """Why root's fsspec filesystem cannot be used here (its package is not installed, or its protocol is
    unknown), or None when it can: so a data root is refused when the config is checked, not at first use."""
    for url in str(root).split("::"):  # chained URLs (simplecache::s3://...) need every filesystem
        protocol = _protocol(url)
        if protocol in ("file", "local"):
            continue
        import fsspec

        try:
            fsspec.get_filesystem_class(protocol)
        except ImportError as err:  # fsspec names the package: "Install s3fs to access S3"
            return f"the {protocol}:// filesystem is not installed ({err}); install its package or use a local folder"
        except ValueError:
            return (f"fsspec knows no {protocol}:// filesystem; valid: a local folder or a URL of a protocol fsspec "
                    f"knows, such as s3://, gs://, abfs://")
    return None


def default_cache_dir(url: str) -> Path:
    """$PRETRAINFLOW_CACHE_DIR (or ~/.cache/pretrainflow)/<hash of the URL>: one cache folder per remote root."""
    base = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pretrainflow")
    return base / hashlib.sha256(url.encode()).hexdigest()[:16]


class ArtifactStore:
    """Content-addressed stage outputs under one data root: a local folder or an fsspec URL."""

    def __init__(self, root: Path | str, cache_dir: Path | None = None):
        self.url = str(root)
        if is_remote(root):
            import fsspec.core

            self.fs, _ = fsspec.core.url_to_fs(self.url)
            self.remote: str | None = self.url.rstrip("/")
            self.root = Path(cache_dir or default_cache_dir(self.url)).resolve()  # local working copy
        else:
            self.fs, self.remote = None, None
            local = self.url.removeprefix("file://")
            self.root = Path(local).expanduser().resolve()

    @property
    def location(self) -> str:
        """The data root as users name it: the URL, or the local folder."""
        return self.remote or str(self.root)

    def path(self, stage: str, id: str) -> Path:
        """The artifact's local folder (for a remote root, its cache folder; see fetch)."""
        return self.root / stage / id

    def _remote_path(self, stage: str, id: str, name: str = "") -> str:
        return "/".join(p for p in (self.remote, stage, id, name) if p)

    def staging_dir(self, stage: str, id: str) -> Path:
        """Where a stage writes while it works; created if missing, reused after a crash."""
        staging = self.root / stage / f".staging-{id}"
        staging.mkdir(parents=True, exist_ok=True)
        (staging / FAILED).unlink(missing_ok=True)  # trying again
        return staging

    def shared_dir(self, stage: str) -> Path:
        """A local folder of results the stage's builds share, each file named by a hash of its inputs."""
        return self.root / stage / ".shared"

    def abandon(self, stage: str, id: str, reason: str) -> None:
        """After a build failed on bad input: remove its staging folder when it holds no finished file,
        else record `reason` in it, so `artifacts` lists it as failed rather than running or resumable."""
        staging = self.root / stage / f".staging-{id}"
        if not staging.is_dir():
            return
        if not any(p.is_file() and not p.name.endswith(".tmp") for p in staging.rglob("*")):
            remove_tree(staging)
            return
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            write_json_atomic(staging / FAILED, {"failed_at": stamp, "reason": reason})
        except OSError as err:  # a full disk, the likely reason itself: the error being raised matters more
            logger.warning("could not record why %s failed in %s: %s", id, staging, err)

    def exists(self, stage: str, id: str) -> bool:
        """True only for a finished artifact: a folder without a manifest is not one."""
        if self.fs is not None:
            return self.fs.exists(self._remote_path(stage, id, MANIFEST))
        return (self.path(stage, id) / MANIFEST).is_file()

    def get(self, stage: str, id: str) -> Artifact:
        """The artifact's manifest (read from the data root) and its local path."""
        if not self.exists(stage, id):
            raise ArtifactError(f"no finished {stage} artifact {id} under {self.location}")
        if self.fs is not None:
            manifest = json.loads(self.fs.cat_file(self._remote_path(stage, id, MANIFEST)))
        else:
            manifest = json.loads((self.path(stage, id) / MANIFEST).read_text())
        return Artifact(stage, id, self.path(stage, id), manifest)

    def fetch(self, stage: str, id: str) -> Path:
        """A local folder holding the finished artifact: itself for a local root, else a verified cached copy."""
        artifact = self.get(stage, id)
        if self.fs is None or (artifact.path / MANIFEST).is_file():
            return artifact.path
        partial = artifact.path.with_name(f".fetching-{id}")
        for rel, expected in artifact.manifest["files"].items():
            target = partial / rel
            if target.is_file() and file_sha256(target) == expected["sha256"]:
                continue  # a killed fetch resumes: finished files stay
            target.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(self._remote_path(stage, id, rel), str(target))
            if file_sha256(target) != expected["sha256"]:
                raise ArtifactError(f"{self._remote_path(stage, id, rel)}: checksum differs from its manifest")
        write_json_atomic(partial / MANIFEST, artifact.manifest)
        if artifact.path.exists():
            shutil.rmtree(artifact.path)
        os.replace(partial, artifact.path)
        return artifact.path

    def finish_upload(self, stage: str, id: str) -> bool:
        """Upload an artifact committed locally whose upload a crash cut short; True if one was finished."""
        local = self.path(stage, id)
        if self.fs is None or not (local / MANIFEST).is_file() or self.exists(stage, id):
            return False
        self._upload(Artifact(stage, id, local, json.loads((local / MANIFEST).read_text())))
        return True

    def _upload(self, artifact: Artifact) -> None:
        """Copy a committed local artifact to the remote root, manifest last."""
        for rel in artifact.manifest["files"]:
            self.fs.put_file(str(artifact.path / rel), self._remote_path(artifact.stage, artifact.id, rel))
        self.fs.put_file(str(artifact.path / MANIFEST), self._remote_path(artifact.stage, artifact.id, MANIFEST))

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
        write_json_atomic(staging / MANIFEST, manifest)
        final = self.path(stage, id)
        if self.exists(stage, id):  # a concurrent run of the same stage finished first
            shutil.rmtree(staging)
            return self.get(stage, id)
        if final.exists():  # a folder without a manifest is not an artifact: replace it
            shutil.rmtree(final)
        os.replace(staging, final)
        if self.fs is not None:
            self._upload(Artifact(stage, id, final, manifest))
        return self.get(stage, id)

    def verify(self, stage: str, id: str) -> list[str]:
        """Problems found re-checking an artifact's files (at the data root) against its manifest (empty if
        sound). Local files are hashed once per process while their size, mtime and inode stay the same."""
        if not self.exists(stage, id):
            raise ArtifactError(f"no finished {stage} artifact {id} under {self.location}")
        try:
            artifact = self.get(stage, id)
            files = dict(artifact.manifest["files"])
        except (ValueError, KeyError, TypeError) as err:  # cut short or overwritten: not JSON, or not a manifest
            return [f"{MANIFEST}: unreadable ({type(err).__name__}: {str(err)[:120]})"]
        problems = []
        for rel, expected in files.items():
            if self.fs is not None:
                remote = self._remote_path(stage, id, rel)
                digest = _stream_sha256(self.fs, remote) if self.fs.exists(remote) else None
            else:
                path = artifact.path / rel
                digest = _cached_file_sha256(path, *_stat_key(path)) if path.is_file() else None
            if digest is None:
                problems.append(f"{rel}: missing")
            elif digest != expected["sha256"]:
                problems.append(f"{rel}: checksum differs from manifest")
        return problems

    def set_aside(self, stage: str, id: str) -> Path:
        """Move a damaged local artifact out of the way (to <stage>/.damaged-<id>, replacing an older one), so
        the id is free to be rebuilt and the damaged files stay there to be looked at; the new place."""
        aside = self.root / stage / f".damaged-{id}"
        remove_tree(aside)
        os.replace(self.path(stage, id), aside)
        return aside

    def _finished(self, stage: str | None) -> Iterator[tuple[str, str]]:
        """(stage, id) of every folder holding a manifest."""
        if self.fs is not None:
            pattern = "/".join((self.remote, stage or "*", "*", MANIFEST))
            for path in self.fs.glob(pattern):
                stage_name, id = path.rstrip("/").split("/")[-3:-1]
                if not id.startswith("."):
                    yield stage_name, id
            return
        for folder in [self.root / stage] if stage else sorted(self.root.glob("*/")):
            if folder.is_dir():
                for child in folder.iterdir():
                    if not child.name.startswith(".") and (child / MANIFEST).is_file():
                        yield folder.name, child.name

    def list(self, stage: str | None = None) -> list[Artifact]:
        """Finished artifacts, oldest first; one whose manifest cannot be read is left out, with a warning."""
        found = []
        for stage_name, id in self._finished(stage):
            try:
                found.append(self.get(stage_name, id))
            except ValueError as err:
                logger.warning("%s/%s: unreadable %s (%s): left out; a run of its config rebuilds it", stage_name,
                               id, MANIFEST, str(err)[:120])
        return sorted(found, key=lambda a: (a.manifest.get("created_at", ""), a.stage))

    def unfinished(self, stage: str | None = None) -> list[Unfinished]:
        """Staging folders (always local) of builds not finished: running now, or killed and waiting to resume."""
        found = []
        for folder in [self.root / stage] if stage else sorted(self.root.glob("*/")):
            for staging in sorted(folder.glob(".staging-*")) if folder.is_dir() else ():
                files = [p.stat() for p in staging.rglob("*") if p.is_file() and p.name != FAILED]
                written = max((f.st_mtime for f in files), default=staging.stat().st_mtime)
                failed = _read_failure(staging / FAILED)
                found.append(Unfinished(folder.name, staging.name.removeprefix(".staging-"), staging,
                                        sum(f.st_size for f in files), datetime.fromtimestamp(written, timezone.utc),
                                        failed))
        return found

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


def _read_failure(path: Path) -> str | None:
    """The reason an abandoned build recorded, or None when there is no record."""
    if not path.is_file():
        return None
    try:
        return str(json.loads(path.read_text()).get("reason", "unknown"))
    except (OSError, ValueError):
        return "unknown (the failure record is unreadable)"


def _stream_sha256(fs: fsspec.AbstractFileSystem, path: str, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def remove_tree(path: Path) -> None:
    """Delete a work folder so that a kill midway never leaves a part of it that looks finished.

    rmtree deletes in directory order: killed halfway, it can leave a folder's "done" marker (a
    split record, an index layout) beside missing files, which a rerun would trust. Renaming first
    makes the folder vanish at once; what is left of an interrupted delete is removed next time.
    """
    trash = path.with_name(path.name + ".deleting")
    if trash.exists():
        shutil.rmtree(trash)
    if path.exists():
        os.replace(path, trash)
        shutil.rmtree(trash)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to path via a temporary file and a rename: a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
