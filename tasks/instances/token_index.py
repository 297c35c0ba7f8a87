"""A split's token shards as four flat, memory-mapped arrays that every instance worker shares.

Instance workers need random access to any sentence of the split (a "random next" segment may come
from any document, in any shard), but a worker must not hold the corpus in memory. So the stage first
streams the token shards, shard by shard, into raw binary files in an index folder; each worker then
maps them read-only (np.memmap): the operating system pages in what is touched and shares the pages
between processes, and the memory a worker owns does not grow with the corpus.

Files in <index_dir>/<split>/: ids.bin (tokens,) uint16|uint32; continues.bin (tokens,) bool, True where
a token continues the word of the one before (a "##" piece, or with Chinese word segmentation a CJK
character inside a segmenter word); sentence_offsets.bin (sentences + 1,) int64 into ids;
document_offsets.bin (documents + 1,) int64 into sentences; layout.json (lengths, dtypes, and the size
and sha256 of each array file: tasks/pieces.py), written last. Empty sentences and documents left without
sentences are dropped here. A rerun after a crash reuses a finished index only if every array file still
matches layout.json's record: a damaged file would silently make wrong instances, so the split's index is
built again, with one warning naming it. An index whose layout records no files (older code) is used unverified.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from tasks.pieces import discard_piece, piece_damage, piece_record, unreadable
from tasks.tokens.shards import numpy_values, shard_paths

LAYOUT = "layout.json"
ARRAY_FILES = ("ids.bin", "continues.bin", "sentence_offsets.bin", "document_offsets.bin")
# (ids of one sentence) -> (continues flags) for Chinese whole-word masking; None = WordPiece only
WordSegmenter = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SplitArrays:
    """Memory-mapped arrays of one split (see the module docstring)."""

    ids: np.ndarray
    continues: np.ndarray
    sentence_offsets: np.ndarray
    document_offsets: np.ndarray

    @property
    def num_documents(self) -> int:
        return len(self.document_offsets) - 1


def _chunk_arrays(chunk: pa.ListArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, lengths of non-empty sentences, non-empty sentences per non-empty document) of one chunk."""
    inner = chunk.flatten()  # sentences of this chunk (flatten honours slicing: offsets may not start at 0)
    ids = numpy_values(inner.flatten())
    lengths = np.diff(numpy_values(inner.offsets))
    nonempty = lengths > 0
    kept_before = np.concatenate([[0], np.cumsum(nonempty)])  # non-empty sentences before each sentence
    document_offsets = numpy_values(chunk.offsets)
    per_document = np.diff(kept_before[document_offsets - document_offsets[0]])
    return ids, lengths[nonempty], per_document[per_document > 0]


def build_split_index(tokens_dir: Path, split: str, index_dir: Path, is_continuation: np.ndarray,
                      segmenter: WordSegmenter | None = None) -> SplitArrays:
    """Write (or reuse) the flat arrays of one split and map them; memory bounded by one shard chunk."""
    folder = Path(index_dir) / split
    if not _finished_index(folder):
        if folder.exists():  # left by a killed attempt, or damaged since
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        counts = {"tokens": 0, "sentences": 0, "documents": 0}
        dtype = None
        with open(folder / "ids.bin", "wb") as ids_file, open(folder / "continues.bin", "wb") as cont_file, \
                open(folder / "sentence_offsets.bin", "wb") as sent_file, open(folder / "document_offsets.bin", "wb") as doc_file:
            sent_file.write(np.zeros(1, np.int64).tobytes())
            doc_file.write(np.zeros(1, np.int64).tobytes())
            for path in shard_paths(tokens_dir, split):
                with pa.memory_map(str(path), "r") as source:
                    for batch in pa.ipc.open_stream(source):
                        ids, lengths, per_document = _chunk_arrays(batch.column("sentences"))
                        dtype = ids.dtype
                        continues = is_continuation[ids]
                        if segmenter is not None:
                            continues = segmenter_continues(ids, lengths, continues, segmenter)
                        ids_file.write(ids.tobytes())
                        cont_file.write(continues.astype(np.bool_).tobytes())
                        sent_file.write((counts["tokens"] + np.cumsum(lengths)).astype(np.int64).tobytes())
                        doc_file.write((counts["sentences"] + np.cumsum(per_document)).astype(np.int64).tobytes())
                        counts["tokens"] += len(ids)
                        counts["sentences"] += len(lengths)
                        counts["documents"] += len(per_document)
        layout = {**counts, "ids_dtype": np.dtype(dtype or np.uint16).str,
                  "pieces": {name: piece_record(folder / name) for name in ARRAY_FILES}}
        tmp = folder / (LAYOUT + ".tmp")
        tmp.write_text(json.dumps(layout))
        os.replace(tmp, folder / LAYOUT)
    return open_split_index(index_dir, split)


def _finished_index(folder: Path) -> bool:
    """Whether a split's index is finished and undamaged: its layout is there and every array file matches
    the layout's record. A damaged one gets one warning naming the file and what is wrong (its folder is
    then rebuilt)."""
    layout_path = folder / LAYOUT
    if not layout_path.is_file():
        return False
    try:
        records = json.loads(layout_path.read_text()).get("pieces")
    except (OSError, ValueError, AttributeError) as err:
        discard_piece(layout_path, unreadable(err), "rebuilding the token index of this split")
        return False
    if records is None:
        return True  # a layout written before layouts recorded their files: used unverified
    for name in ARRAY_FILES:
        path = folder / name
        record = records.get(name) if isinstance(records, dict) else None
        if (problem := piece_damage(path, record)) is not None:
            discard_piece(path, problem, "rebuilding the token index of this split")
            return False
    return True


def segmenter_continues(ids: np.ndarray, lengths: np.ndarray, continues: np.ndarray,
                        segmenter: WordSegmenter) -> np.ndarray:
    """Overlay a word segmenter's word-continuation flags on each sentence's WordPiece flags."""
    continues = continues.copy()
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist()):
        continues[start:end] |= segmenter(ids[start:end])
    return continues


def _map(folder: Path, name: str, dtype: np.dtype, length: int) -> np.ndarray:
    if length == 0:  # np.memmap cannot map an empty file
        return np.zeros(0, dtype)
    return np.memmap(folder / name, dtype=dtype, mode="r", shape=(length,))


def open_split_index(index_dir: Path, split: str) -> SplitArrays:
    """Map a finished split index read-only."""
    folder = Path(index_dir) / split
    layout = json.loads((folder / LAYOUT).read_text())
    return SplitArrays(
        ids=_map(folder, "ids.bin", np.dtype(layout["ids_dtype"]), layout["tokens"]),
        continues=_map(folder, "continues.bin", np.dtype(np.bool_), layout["tokens"]),
        sentence_offsets=_map(folder, "sentence_offsets.bin", np.dtype(np.int64), layout["sentences"] + 1),
        document_offsets=_map(folder, "document_offsets.bin", np.dtype(np.int64), layout["documents"] + 1),
    )
