"""Fault injection: the tiny pipeline (corpus to pretrain) while one piece at a time is damaged on disk.

First a clean run builds every stage with `pretrainflow run STAGE`, as users type it. Then each fault gets a
data root of its own holding the clean run's upstream artifacts, and:
- a resumable piece (a WARC batch; a corpus input, cleaned or documents shard; a token shard, the token index,
  an instance shard): the stage is
  built in-process and stopped right after the step that wrote the piece, which leaves what a kill at that
  moment leaves (for the WARC batch, the work folder is removed too: a kill before the split began). A
  checkpoint: `pretrainflow run pretrain` is killed (SIGKILL to its process group) once two checkpoints exist.
- a finished piece (a committed token shard, a manifest cut short): the clean artifact is copied as is.
Then a few bytes of the piece are flipped (64 of the checkpoint's tensor data), and `pretrainflow run STAGE`
runs again. A row reports whether a warning or error named the piece, its first such line, whether the
rerun committed the artifact under the clean run's id, and whether its output equals the clean run's (see
Root.output: the files' bytes, or for the corpus, which crawls again, the documents' url, title and text).

    .venv/bin/python bench/fault_injection.py [--work DIR] [--keep]

Needs the Python docs the tiny preset crawls (`make python-docs`). Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.checkpoint_integrity import list_checkpoints  # noqa: E402
from tasks.artifacts import MANIFEST, ArtifactStore, file_sha256  # noqa: E402
from tasks.config import PipelineConfig, load_config  # noqa: E402
from tasks.corpus.snapshot import read_snapshot  # noqa: E402
from tasks.stages import resolve_ids, run_stage  # noqa: E402
from tests.tasks.piece_fixtures import Stopped, stop_after  # noqa: E402  (a build stopped after a step)

CLI = str(Path(sys.executable).parent / "pretrainflow")
STAGES = ("corpus", "tokenize", "instances", "pretrain")
# long enough to be killed between checkpoints; every run, clean or faulty, uses the same config
OVERRIDES = ["pretrain.max_steps=300", "pretrain.checkpoint_every=20", "pretrain.eval_every=300"]
DAMAGE_WORDS = re.compile(r"damaged|differs|cannot be read|unreadable|corrupt", re.IGNORECASE)


def flip(path: Path, offset: int, count: int = 16) -> None:
    """Invert `count` bytes from `offset`, as a bad disk block would: the size stays the same."""
    data = bytearray(path.read_bytes())
    for i in range(offset, min(offset + count, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def flip_middle(path: Path) -> None:
    flip(path, path.stat().st_size // 2)


def flip_tensor_data(path: Path) -> None:
    """64 bytes inside a safetensors file's tensor data (past its 8-byte length and JSON header)."""
    header = int.from_bytes(path.read_bytes()[:8], "little")
    flip(path, 8 + header + (path.stat().st_size - 8 - header) // 2, 64)


class Root:
    """One data root and MLflow store, and the commands that run on it."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.overrides = [f"data_root={folder / 'data'}", f"tracking.tracking_uri=sqlite:///{folder / 'mlflow.db'}",
                          *OVERRIDES]
        self.config: PipelineConfig = load_config("tiny", self.overrides)
        self.store = ArtifactStore(self.config.data_root)
        self.ids = resolve_ids(self.config)

    def command(self, stage: str) -> list[str]:
        return [CLI, "run", stage, "--config", "tiny", *(a for o in self.overrides for a in ("--set", o))]

    def run(self, stage: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(stage), cwd=self.folder, capture_output=True, text=True, timeout=1200,
                              env={**os.environ, "PRETRAINFLOW_ERROR_LOG": str(self.folder / "errors.log")})

    def staging(self, stage: str) -> Path:
        return self.store.root / stage / f".staging-{self.ids[stage]}"

    def output(self, stage: str) -> dict[str, str]:
        """What must come out the same: every file's sha256 (manifest.json aside: it records times); for the
        corpus, the documents' url, title and text (a rebuild crawls again: fetch times and WARC bytes
        differ); for pretrain, the exported model/ folder (checkpoints hold the Python RNG state)."""
        folder = self.store.path(stage, self.ids[stage])
        if stage == "corpus":
            table = read_snapshot(folder).select(["url", "title", "text"])
            return {"documents": hashlib.sha256(json.dumps(table.to_pylist()).encode()).hexdigest()}
        if stage == "pretrain":
            folder = folder / "model"
        return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*"))
                if p.is_file() and p.name != MANIFEST}


@dataclass
class Fault:
    name: str
    stage: str
    prepare: Callable[[Root, Root], Path]  # (clean root, fault root) -> the damaged piece


def _copy_upstream(clean: Root, root: Root, stage: str, *, including: bool = False) -> None:
    for up in STAGES[: STAGES.index(stage) + including]:
        shutil.copytree(clean.store.path(up, clean.ids[up]), root.store.path(up, root.ids[up]))


def _stopped_build(root: Root, stage: str, step: str) -> None:
    try:
        run_stage(stage, root.config, run_step=stop_after(step))
    except Stopped:
        return
    raise RuntimeError(f"{stage} finished before the step {step!r} it was to stop after")


def warc_batch(clean: Root, root: Root) -> Path:
    _copy_upstream(clean, root, "corpus")
    _stopped_build(root, "corpus", "read sources")
    shutil.rmtree(root.staging("corpus") / "work")  # killed during the crawl: no split yet
    piece = sorted((root.staging("corpus") / "raw").glob("*.warc.gz"))[0]
    flip_middle(piece)
    return piece


def resumable_piece(stage: str, step: str, pattern: str) -> Callable[[Root, Root], Path]:
    """A fault in the first piece matching `pattern` (under the stage's staging folder) of a build stopped
    right after `step`."""
    def prepare(clean: Root, root: Root) -> Path:
        _copy_upstream(clean, root, stage)
        _stopped_build(root, stage, step)
        piece = sorted(root.staging(stage).glob(pattern))[0]
        flip_middle(piece)
        return piece
    return prepare


def checkpoint(clean: Root, root: Root) -> Path:
    _copy_upstream(clean, root, "pretrain")
    checkpoints = root.staging("pretrain") / "checkpoints"
    child = subprocess.Popen(root.command("pretrain"), cwd=root.folder, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while len(list_checkpoints(checkpoints)) < 2:
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("pretrain ended (or stalled) before two checkpoints could be written")
            time.sleep(0.05)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    if root.store.exists("pretrain", root.ids["pretrain"]):
        raise RuntimeError("pretrain finished before it was killed")
    newest = list_checkpoints(checkpoints)[-1][1]
    flip_tensor_data(newest / "model.safetensors")
    return newest / "model.safetensors"


def finished_token_shard(clean: Root, root: Root) -> Path:
    _copy_upstream(clean, root, "tokenize", including=True)
    piece = sorted((root.store.path("tokenize", root.ids["tokenize"]) / "train").glob("*.arrow"))[0]
    flip_middle(piece)
    return piece


def cut_manifest(clean: Root, root: Root) -> Path:
    _copy_upstream(clean, root, "instances", including=True)
    manifest = root.store.path("instances", root.ids["instances"]) / MANIFEST
    manifest.write_bytes(manifest.read_bytes()[: manifest.stat().st_size // 2])
    return manifest


FAULTS = [
    Fault("WARC batch of a killed crawl", "corpus", warc_batch),
    Fault("corpus input shard", "corpus", resumable_piece("corpus", "clean shards", "work/input-*")),
    Fault("corpus cleaned shard", "corpus", resumable_piece("corpus", "clean shards", "work/cleaned-*")),
    Fault("corpus documents shard", "corpus", resumable_piece("corpus", "write snapshot", "documents-*.parquet")),
    Fault("token shard", "tokenize", resumable_piece("tokenize", "encode shards", "train/*.arrow")),
    Fault("token index array", "instances",
          resumable_piece("instances", "index train tokens", "_token_index/train/ids.bin")),
    Fault("instance shard", "instances", resumable_piece("instances", "generate train instances", "train/*.arrow")),
    Fault("newest checkpoint's weights", "pretrain", checkpoint),
    Fault("finished artifact's token shard", "tokenize", finished_token_shard),
    Fault("manifest cut short", "instances", cut_manifest),
]


def _damage_line(output: str, piece: Path) -> str | None:
    """The first log line naming the piece (or its checkpoint folder) and what is wrong, without its prefix."""
    names = {piece.name, piece.parent.name} if piece.parent.name.startswith("step-") else {piece.name}
    for line in output.splitlines():
        if DAMAGE_WORDS.search(line) and any(name in line for name in names):
            return re.sub(r"^.*?(WARNING|ERROR)\s*\|?\s*[\w.]*\s*[-:]\s*", "", line).strip()
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="pretrainflow-faults-"))
    started = time.monotonic()
    try:
        clean = Root(work / "clean")
        for stage in STAGES:
            done = clean.run(stage)
            if done.returncode != 0:
                print(done.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"the clean run of {stage} failed")
        print(f"clean run: {', '.join(f'{s} {clean.ids[s]}' for s in STAGES)} "
              f"({time.monotonic() - started:.0f} s)", flush=True)

        rows = []
        for index, fault in enumerate(FAULTS):
            root = Root(work / f"fault-{index}")
            piece = fault.prepare(clean, root)
            done = root.run(fault.stage)
            line = _damage_line(done.stdout + done.stderr, piece)
            committed = done.returncode == 0 and root.store.exists(fault.stage, clean.ids[fault.stage])
            ids_equal = committed and root.ids == clean.ids
            output_equal = committed and root.output(fault.stage) == clean.output(fault.stage)
            rows.append((fault.name, fault.stage, "yes" if line else "no", line or done.stderr.strip()[-200:],
                         "yes" if ids_equal else "no", "yes" if output_equal else "no"))
            print(json.dumps({"fault": fault.name, "exit": done.returncode, "detected": bool(line),
                              "ids_equal": ids_equal, "output_equal": output_equal}), flush=True)

        print("\n| fault | stage rerun | detected | what happened | artifact ids equal | output equal |")
        print("|---|---|---|---|---|---|")
        for name, stage, detected, happened, ids_equal, output_equal in rows:
            happened = happened.replace(str(work), "…").replace("|", "\\|")
            print(f"| {name} | {stage} | {detected} | {happened} | {ids_equal} | {output_equal} |")
        print(f"\n{len(rows)} faults in {time.monotonic() - started:.0f} s")
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
