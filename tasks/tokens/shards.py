"""Tokenize stage: corpus snapshot -> tokenizer + train/validation token shards.

Output (the token-shards contract): `tokenizer/` (a Hugging Face BERT tokenizer folder) and
`train/tokens-00000.arrow`, ..., `validation/tokens-00000.arrow`, ... in Arrow IPC stream format with
columns doc_id (string) and sentences (list<list<uint16|uint32>>: one inner list per sentence, WordPiece
ids without special tokens). A document goes to validation when its content hash falls below
`validation_fraction`, so the split is by document and stable across re-runs and snapshot growth. Each
split's documents are cut, in snapshot order, into shards of at most `documents_per_shard` documents and
`shard_text_bytes` of text: the shards are the units of parallel work, and a worker's memory is bounded by one.

A rerun after a crash reuses the finished token shards, each checked first against the size and sha256
recorded in a sidecar when it was written (tasks/pieces.py): a damaged one is encoded again. The
sidecars are removed when every shard is done, so the output holds only the files above.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tokenizers import Tokenizer

from tasks.parallel import ShardMap, StepRunner, run_inline, serial_map
from tasks.pieces import discard_piece, forget_digests, record_piece, reusable_piece, unreadable
from tasks.tokens.coverage import unk_rate_warning
from tasks.tokens.sentences import split_document
from tasks.tokens.tokenizer import (
    SEP,
    SPECIAL_TOKENS,
    UNK,
    character_coverage,
    character_token_count,
    copy_tokenizer_folder,
    load_tokenizer,
    save_tokenizer,
    tokenizer_folder_problems,
    train_wordpiece,
)

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "validation")
SNAPSHOT_GLOB = "documents-*.parquet"
TOKENIZER_DIRNAME = "tokenizer"
# Hex digits of the content hash used for the split: 60 bits, far finer than any fraction asked for.
_SPLIT_HASH_DIGITS = 15
# Input text (UTF-8 bytes) that sentence splitting and encoding get through per CPU-second on one core.
# Measured on the Python docs (1x demo snapshot: 497 documents, 9.04 MB of text, 2 shards), make_token_shard
# on every shard in one process, user+sys of that process (tokenizers' own threads included), 3 runs:
# 1.58, 1.77, 1.83 M bytes per CPU-s (1.41-1.76 M with TOKENIZERS_PARALLELISM=false), 2 cores at load ~5.
TOKENIZE_BYTES_PER_CPU_SECOND = 1_700_000


class TokenizeConfig(BaseModel):
    """Tokenize stage: WordPiece tokenizer training (or loading), sentence splitting, sharding."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    vocab_size: int = Field(default=16000, ge=64, le=2**32 - 1)
    """WordPiece vocabulary size to train, special tokens included (ignored with tokenizer_path). Every
    alphabet character and its "##" piece is kept even beyond it (a warning says so; see
    alphabet_min_frequency)."""
    min_frequency: int = Field(default=2, ge=1)
    """A merge must occur at least this often in the training texts to enter the vocabulary."""
    alphabet_min_frequency: int = Field(default=2, ge=1)
    """A character seen at least this often in the training texts gets a token, and a "##" piece unless it is
    always a word of its own (punctuation, CJK ideographs: a token each, no piece); rarer ones encode as
    [UNK]. So the alphabet follows the script: ~6 k Chinese characters where English text has ~100. The
    stage reports how many characters were left out and their share of the text (alphabet_* statistics)."""
    limit_alphabet: int | None = Field(default=None, ge=1)
    """At most this many characters (the most frequent) get a token, of those alphabet_min_frequency lets in;
    None: no cap. A cap for a large mixed-script corpus whose stray scripts would take the vocabulary; a cap
    below the script's characters leaves common ones [UNK] (1000 left 11.5% of held-out Chinese poetry [UNK])."""
    lowercase: bool = True
    """Lowercase text before WordPiece (BERT 'uncased'); ignored with tokenizer_path."""
    strip_accents: bool | None = None
    """Strip accents; None follows lowercase, as in BERT; ignored with tokenizer_path."""
    tokenizer_path: Path | None = None
    """Existing Hugging Face BERT tokenizer folder to use instead of training one; AutoTokenizer must read
    it as its tokenizer.json does (checked here)."""
    model_max_length: int = Field(default=512, ge=8)
    """model_max_length recorded in the saved tokenizer (positions the model will support)."""
    max_training_documents: int = Field(default=100_000, ge=1)
    """Train the tokenizer on at most this many train-split documents, in snapshot order."""
    max_training_bytes: int = Field(default=64 * 2**20, ge=1)
    """...and on at most about this much of their text (UTF-8 bytes; whole documents, the last one reaching it
    is kept). The trainer's memory grows with the distinct words it sees, which keep growing with the text of
    a real corpus (here +62 MiB for 8 MiB of Zipf-like text with 47 k distinct words, +129 MiB for 32 MiB
    with 120 k), and its CPU time with the text (~0.37 CPU-s per MiB of the Python docs): 64 MiB bounds both
    (~25 CPU-s) whatever the corpus size, and is ~10 M words, far more than a 16 k vocabulary's merges need."""
    validation_fraction: float = Field(default=0.05, ge=0.0, lt=1.0)
    """Fraction of documents, chosen by content hash, that go to the validation split."""
    documents_per_shard: int = Field(default=10_000, ge=1)
    """At most this many input documents per output shard and split (documents without any text are dropped)."""
    shard_text_bytes: int = Field(default=16 * 2**20, ge=1)
    """At most this much input text (UTF-8 bytes) per output shard and split (a longer document gets a shard
    of its own). Shards are the units of parallel work (16 MiB is ~9 CPU-s here) and a worker holds its
    shard's ids until it is written: making the biggest shard of the 10x Python docs raised a process's peak
    RSS by 146, 150, 142, 179, 228 MiB at 4, 8, 16, 32, 64 MiB: up to ~16 MiB it is mostly reading one Parquet
    row group (~70 MiB for 2,000 documents) and encoding one batch, which do not grow with the shard."""
    batch_size: int = Field(default=256, ge=1)
    """Documents read and encoded together (bounds memory for raw text)."""
    batch_text_bytes: int = Field(default=2**20, ge=1)
    """At most this much text (UTF-8 bytes) encoded together (a longer document alone): the encoder's output
    takes ~90 bytes per token until it is cut into ids. Making a 16 MiB shard of the 10x Python docs raised a
    process's peak RSS by 136, ~150 and ~200 MiB with 256 KiB, 1 MiB and 4 MiB batches, at the same CPU time;
    batch_size alone would let a batch of long documents hold gigabytes."""

    @field_validator("tokenizer_path")
    @classmethod
    def _tokenizer_folder_is_usable(cls, path: Path | None) -> Path | None:
        if path is not None:
            problems = tokenizer_folder_problems(path)
            if problems:
                raise ValueError("; ".join(problems))
        return path


def split_of(content_hash: str, validation_fraction: float) -> str:
    """'validation' when the document's content hash falls below validation_fraction, else 'train'."""
    try:
        position = int(content_hash[:_SPLIT_HASH_DIGITS], 16) / 16**_SPLIT_HASH_DIGITS
    except ValueError:
        raise ValueError(f"content_hash {content_hash!r} is not a hex digest (sha256 hex expected)") from None
    return "validation" if position < validation_fraction else "train"


def token_dtype(vocab_size: int) -> pa.DataType:
    """Smallest unsigned Arrow integer type holding every id of the vocabulary."""
    return pa.uint16() if vocab_size <= 2**16 else pa.uint32()


def token_shard_schema(vocab_size: int) -> pa.Schema:
    """Arrow schema of a token shard."""
    return pa.schema([("doc_id", pa.string()), ("sentences", pa.list_(pa.list_(token_dtype(vocab_size))))])


def shard_path(out_dir: Path, split: str, index: int) -> Path:
    """Path of token shard number index of a split."""
    return Path(out_dir) / split / f"tokens-{index:05d}.arrow"


def shard_paths(shards_dir: Path, split: str) -> list[Path]:
    """Finished token shards of a split, in order."""
    return sorted((Path(shards_dir) / split).glob("tokens-*.arrow"))


def snapshot_files(snapshot_dir: Path) -> list[Path]:
    """Parquet files of a corpus snapshot, in order; raises when there are none."""
    files = sorted(Path(snapshot_dir).glob(SNAPSHOT_GLOB))
    if not files:
        raise FileNotFoundError(f"snapshot_dir {str(snapshot_dir)!r} holds no {SNAPSHOT_GLOB} files")
    return files


def iter_row_groups(parquet: pq.ParquetFile, columns: list[str], batch_size: int,
                    row_groups: list[int] | None = None) -> Iterator[pa.RecordBatch]:
    """Record batches of a Parquet file's row groups (all, or those given), read one row group at a time.

    One iter_batches over several row groups reads ahead: on 10 row groups of 9.7 MB of text each, Arrow's
    pool peaked at 115 MiB that way and at 31 MiB a row group at a time.
    """
    for group in range(parquet.metadata.num_row_groups) if row_groups is None else row_groups:
        yield from parquet.iter_batches(batch_size=batch_size, row_groups=[group], columns=columns)


def iter_snapshot(snapshot_dir: Path, batch_size: int) -> Iterator[tuple[str, str, str]]:
    """(id, content_hash, text) of every snapshot document, in file and row order."""
    for path in snapshot_files(snapshot_dir):
        for batch in iter_row_groups(pq.ParquetFile(path), ["id", "content_hash", "text"], batch_size):
            columns = batch.to_pydict()
            yield from zip(columns["id"], columns["content_hash"], columns["text"])


def write_stream_atomically(table: pa.Table, path: Path, max_chunksize: int = 1024) -> None:
    """Write a table as an Arrow IPC stream to path.tmp, then rename it to path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=max_chunksize)
    os.replace(tmp, path)


def numpy_values(array: pa.Array) -> np.ndarray:
    """Zero-copy numpy view of a primitive Arrow array without nulls (pyarrow's to_numpy imports pandas: ~2 s)."""
    if array.null_count:
        raise ValueError(f"unexpected nulls in an Arrow array of {array.type}")
    dtype = np.dtype(str(array.type))
    return np.frombuffer(array.buffers()[1], dtype, count=len(array), offset=array.offset * dtype.itemsize)


def text_byte_lengths(array: pa.Array) -> np.ndarray:
    """(rows,) UTF-8 bytes of each string of a string or large_string array, read from its offsets (0 for a null)."""
    dtype = np.dtype(np.int64 if pa.types.is_large_string(array.type) else np.int32)
    if len(array) == 0:
        return np.zeros(0, np.int64)
    offsets = np.frombuffer(array.buffers()[1], dtype, count=len(array) + 1, offset=array.offset * dtype.itemsize)
    return np.diff(offsets).astype(np.int64)


def read_stream(path: Path) -> pa.Table:
    """Read a whole Arrow IPC stream file (memory-mapped)."""
    with pa.memory_map(str(path), "r") as source:
        return pa.ipc.open_stream(source).read_all()


@dataclass
class _EncodedDocuments:
    """Documents encoded so far for one shard, as flat arrays; ids are kept in id_dtype (uint16 for a
    vocabulary up to 65,536: half the memory of the encoder's uint32) until the shard is written."""

    id_dtype: np.dtype = np.dtype(np.uint32)
    doc_ids: list[str] = field(default_factory=list)
    ids: list[np.ndarray] = field(default_factory=list)  # (tokens,) per batch, id_dtype
    sentence_lengths: list[np.ndarray] = field(default_factory=list)  # (sentences,) per batch
    document_sentences: list[int] = field(default_factory=list)  # sentences per document

    def to_table(self, schema: pa.Schema) -> pa.Table:
        dtype = _id_dtype(schema)
        ids = np.concatenate(self.ids).astype(dtype, copy=False) if self.ids else np.zeros(0, dtype)
        lengths = np.concatenate(self.sentence_lengths) if self.sentence_lengths else np.zeros(0, np.int64)
        sentence_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        document_offsets = np.concatenate([[0], np.cumsum(self.document_sentences)]).astype(np.int32)
        sentences = pa.ListArray.from_arrays(pa.array(sentence_offsets), pa.array(ids))
        documents = pa.ListArray.from_arrays(pa.array(document_offsets), sentences)
        return pa.Table.from_arrays([pa.array(self.doc_ids, pa.string()), documents], schema=schema)


def _id_dtype(schema: pa.Schema) -> np.dtype:
    """numpy dtype of a token shard schema's ids (pyarrow's to_pandas_dtype imports pandas)."""
    return np.dtype(str(schema.field("sentences").type.value_type.value_type))


SENTENCE_MARK = f" {SEP} "  # joins a document's sentences for one encode call (see encode_documents)


def _encode_joined(tokenizer: Tokenizer, per_document: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """(ids (tokens,) uint32, lengths (sentences,) int64) of documents that spell no special token.

    Each document is encoded once with its sentences joined by " [SEP] ": [SEP] is matched on the raw
    text before normalisation and the text between two marks is encoded exactly as that sentence alone,
    so cutting the ids at the [SEP] id gives the per-sentence ids (a quarter cheaper than per sentence).
    """
    sep_id = tokenizer.token_to_id(SEP)
    joined = [SENTENCE_MARK.join(sentences) for sentences in per_document if sentences]
    encodings = tokenizer.encode_batch_fast(joined, add_special_tokens=False) if joined else []
    # every sentence ends at a [SEP]: the marks between sentences plus one appended per document
    marked = np.fromiter(itertools.chain.from_iterable(itertools.chain(e.ids, (sep_id,)) for e in encodings), np.uint32)
    ends = np.flatnonzero(marked == sep_id)
    return marked[marked != sep_id], np.diff(np.concatenate([[-1], ends])) - 1


def _encode_sentences(tokenizer: Tokenizer, per_document: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """(ids (tokens,) uint32, lengths (sentences,) int64), sentence by sentence, special tokens as text."""
    flat = list(itertools.chain.from_iterable(per_document))
    tokenizer.encode_special_tokens = True
    try:
        encodings = tokenizer.encode_batch_fast(flat, add_special_tokens=False) if flat else []
    finally:
        tokenizer.encode_special_tokens = False
    id_lists = [e.ids for e in encodings]
    lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
    return np.fromiter(itertools.chain.from_iterable(id_lists), np.uint32, int(lengths.sum())), lengths


def _encode_grouped(tokenizer: Tokenizer, per_document: list[list[str]],
                    spells_special: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    """_encode_joined for documents that spell no special token, _encode_sentences for the others, in
    document order: a document's ids never depend on the other documents of its batch."""
    encoded = {
        spells: (encode(tokenizer, [d for d, s in zip(per_document, spells_special) if s == spells]), [0, 0])
        for spells, encode in ((False, _encode_joined), (True, _encode_sentences))
    }
    ids, lengths = [], []
    for sentences, spells in zip(per_document, spells_special):
        (group_ids, group_lengths), cursor = encoded[spells]  # cursor: [sentence, token] read so far
        document_lengths = group_lengths[cursor[0] : cursor[0] + len(sentences)]
        tokens = int(document_lengths.sum())
        ids.append(group_ids[cursor[1] : cursor[1] + tokens])
        lengths.append(document_lengths)
        cursor[0], cursor[1] = cursor[0] + len(sentences), cursor[1] + tokens
    return np.concatenate(ids), np.concatenate(lengths)


def encode_documents(tokenizer: Tokenizer, doc_ids: list[str], texts: list[str], into: _EncodedDocuments) -> None:
    """Sentence-split and encode documents; those left without any token are dropped.

    tokenizer must have encode_special_tokens=False. A document is encoded whole, its sentences joined
    by " [SEP] " (_encode_joined), unless its text spells one of the five BERT special tokens ("[MASK]"):
    that document alone is encoded sentence by sentence with special tokens encoded as text. With a
    given tokenizer that has more special tokens ("[EOS]"), those are then text too in that document,
    and special ids in the others: either way the choice is the document's own, never its batch's.
    """
    per_document = [split_document(text or "") for text in texts]
    spells_special = [bool(text) and any(token in text for token in SPECIAL_TOKENS) for text in texts]
    if not any(spells_special):
        ids, lengths = _encode_joined(tokenizer, per_document)
    elif all(spells_special):
        ids, lengths = _encode_sentences(tokenizer, per_document)
    else:
        ids, lengths = _encode_grouped(tokenizer, per_document, spells_special)
    position = 0
    for doc_id, sentences in zip(doc_ids, per_document):
        # Sentences of only characters the normaliser removes encode to nothing; they are not kept.
        kept = int(np.count_nonzero(lengths[position : position + len(sentences)]))
        position += len(sentences)
        if kept:
            into.doc_ids.append(doc_id)
            into.document_sentences.append(kept)
    into.ids.append(ids.astype(into.id_dtype, copy=False))
    into.sentence_lengths.append(lengths[lengths > 0])


def token_shard_stats(table: pa.Table, unk_id: int) -> dict[str, int]:
    """documents, sentences, tokens and unk_tokens of one token shard."""
    sentences = table.column("sentences").combine_chunks() if table.num_rows else None
    if sentences is None:
        return {"documents": 0, "sentences": 0, "tokens": 0, "unk_tokens": 0}
    inner = sentences.flatten()
    ids = numpy_values(inner.flatten())
    return {
        "documents": table.num_rows,
        "sentences": len(inner),
        "tokens": len(ids),
        "unk_tokens": int(np.count_nonzero(ids == unk_id)),
    }


@dataclass(frozen=True)
class TokenShardSpec:
    """One token shard's work: which snapshot rows it reads; small and picklable for any worker."""

    tokenizer_dir: Path
    split: str
    index: int
    row_ranges: tuple[tuple[str, int, int], ...]  # (parquet file, first row, end row): the split's rows in them
    validation_fraction: float
    batch_size: int
    batch_text_bytes: int
    out_path: Path
    text_bytes: int  # UTF-8 bytes of the text of the split's rows in row_ranges

    @property
    def estimated_seconds(self) -> float:
        """CPU-seconds this shard's work should take on one core (for choosing how many workers to start)."""
        return self.text_bytes / TOKENIZE_BYTES_PER_CPU_SECOND


def _byte_runs(text_bytes: np.ndarray, limit: int) -> Iterator[tuple[int, int]]:
    """[start, stop) runs of consecutive rows with at most limit text bytes each (a longer row alone)."""
    start, total = 0, 0
    for row, size in enumerate(text_bytes.tolist()):
        if row > start and total + size > limit:
            yield start, row
            start, total = row, 0
        total += size
    if start < len(text_bytes):
        yield start, len(text_bytes)


def _split_rows(path: Path, start: int, end: int, split: str, validation_fraction: float, batch_size: int,
                batch_text_bytes: int) -> Iterator[tuple[list[str], list[str]]]:
    """(doc_ids, texts) batches of the rows [start, end) of one parquet file that belong to split; a batch
    has at most batch_size rows and batch_text_bytes of text (or one longer document)."""
    parquet = pq.ParquetFile(path)
    groups, row, first_row = [], 0, None  # the row groups holding [start, end), and the first one's first row
    for group in range(parquet.metadata.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        if row < end and row + rows > start:
            groups.append(group)
            first_row = row if first_row is None else first_row
        row += rows
    if not groups:
        return
    row = first_row
    for batch in iter_row_groups(parquet, ["id", "content_hash", "text"], batch_size, groups):
        first, row = row, row + batch.num_rows
        if row <= start:
            continue
        if first >= end:
            break
        batch = batch.slice(max(start - first, 0), min(end, row) - max(start, first))
        for run_start, run_stop in _byte_runs(text_byte_lengths(batch.column("text")), batch_text_bytes):
            columns = batch.slice(run_start, run_stop - run_start).to_pydict()
            keep = [split_of(h, validation_fraction) == split for h in columns["content_hash"]]
            yield ([d for d, k in zip(columns["id"], keep) if k], [t for t, k in zip(columns["text"], keep) if k])


def reuse_stream(path: Path) -> pa.Table | None:
    """A finished Arrow stream piece that matches its recorded digest and reads, or None (a damaged one is
    removed with a warning, to be written again)."""
    if not reusable_piece(path):
        return None
    try:
        table = read_stream(path)
    except (OSError, pa.ArrowException) as err:  # a piece without a record (the recorded bytes do read)
        discard_piece(path, unreadable(err))
        return None
    logger.info("reusing %s", path)
    return table


def make_token_shard(spec: TokenShardSpec) -> dict[str, int]:
    """Sentence-split and encode one shard's documents and write it (unless already there); its counts."""
    tokenizer = load_tokenizer(spec.tokenizer_dir)
    table = reuse_stream(spec.out_path)
    if table is None:
        schema = token_shard_schema(tokenizer.get_vocab_size(with_added_tokens=True))
        encoded = _EncodedDocuments(_id_dtype(schema))
        for path, start, end in spec.row_ranges:
            for doc_ids, texts in _split_rows(Path(path), start, end, spec.split, spec.validation_fraction,
                                              spec.batch_size, spec.batch_text_bytes):
                encode_documents(tokenizer, doc_ids, texts, encoded)
        table = encoded.to_table(schema)
        del encoded  # the table has its own copy of the ids
        write_stream_atomically(table, spec.out_path)
        record_piece(spec.out_path)
    stats = token_shard_stats(table, tokenizer.token_to_id(UNK))
    del table
    release_freed_memory()  # a worker goes on to its next shard from its baseline, not this shard's peak
    logger.info("%s/%s: %d documents, %d sentences, %d tokens",
                spec.split, spec.out_path.name, stats["documents"], stats["sentences"], stats["tokens"])
    return stats


def release_freed_memory() -> None:
    """Give memory that is freed but still held by allocators back to the operating system.

    Arrow's pool keeps what reading a Parquet row group took, and glibc keeps what the tokenizer trainer's
    threads freed in their own arenas, so a process that goes on to other work (the stage's process after
    training and planning, a worker between shards) would otherwise start it from its earlier peak. Measured
    after training on the 10x Python docs: 313 MiB, 256 after Arrow's release, 183 after malloc_trim.
    """
    pa.default_memory_pool().release_unused()
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim  # glibc only
    except (AttributeError, OSError, TypeError):  # not glibc (macOS, musl), or no dlopen(NULL) (Windows)
        return
    malloc_trim(0)


@dataclass
class _PlannedShard:
    """A token shard being planned: its row ranges, documents and text bytes so far."""

    row_ranges: list[tuple[str, int, int]] = field(default_factory=list)
    documents: int = 0
    text_bytes: int = 0


def _split_rows_and_bytes(path: Path, validation_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows,) bool True for the validation split and (rows,) int64 text bytes of one parquet file's rows.

    Reads only the content_hash and text columns, a batch at a time (ParquetFile, not pq.read_table:
    the latter imports pandas, ~1 s per worker process); text lengths come from the string offsets.
    """
    validation, text_bytes = [], []
    for batch in iter_row_groups(pq.ParquetFile(path), ["content_hash", "text"], 4096):
        hashes = batch.column("content_hash").to_pylist()
        splits = (split_of(content_hash, validation_fraction) for content_hash in hashes)
        validation.append(np.fromiter((split == "validation" for split in splits), bool, len(hashes)))
        text_bytes.append(text_byte_lengths(batch.column("text")))
    if not validation:
        return np.zeros(0, bool), np.zeros(0, np.int64)
    return np.concatenate(validation), np.concatenate(text_bytes)


def _add_rows(shards: list[_PlannedShard], path: str, rows: np.ndarray, text_bytes: np.ndarray,
              cfg: TokenizeConfig) -> None:
    """Append one file's rows (ascending, one split) to that split's shards, in order, never cutting a row.

    A shard is full at documents_per_shard rows, or when the next row would take its text past
    shard_text_bytes; a row longer than that alone goes into a shard of its own (started if need be).
    """
    ends = np.cumsum(text_bytes)  # text bytes of rows[: i + 1]
    position = 0
    while position < len(rows):
        shard = shards[-1]
        before = int(ends[position - 1]) if position else 0
        fitting = int(np.searchsorted(ends, before + cfg.shard_text_bytes - shard.text_bytes, side="right")) - position
        take = min(max(fitting, 1 if shard.documents == 0 else 0), cfg.documents_per_shard - shard.documents)
        if take <= 0:
            shards.append(_PlannedShard())
            continue
        take = min(take, len(rows) - position)
        shard.row_ranges.append((path, int(rows[position]), int(rows[position + take - 1]) + 1))
        shard.documents += take
        shard.text_bytes += int(ends[position + take - 1]) - before
        position += take


def plan_token_shards(cfg: TokenizeConfig, snapshot_dir: Path, out_dir: Path) -> tuple[list[TokenShardSpec], dict[str, int]]:
    """Specs of every token shard (split by content hash, in snapshot order, each closed at documents_per_shard
    documents or shard_text_bytes of text) and the number of input documents per split.

    Reads the content_hash and text columns a Parquet row group at a time, so memory does not grow with the
    snapshot; the same snapshot and config always give the same shards.
    """
    shards: dict[str, list[_PlannedShard]] = {split: [_PlannedShard()] for split in SPLITS}
    for path in snapshot_files(snapshot_dir):
        validation, text_bytes = _split_rows_and_bytes(path, cfg.validation_fraction)
        for split, in_split in (("train", ~validation), ("validation", validation)):
            rows = np.flatnonzero(in_split)
            _add_rows(shards[split], str(path), rows, text_bytes[rows], cfg)
    specs = [
        TokenShardSpec(out_dir / TOKENIZER_DIRNAME, split, index, tuple(shard.row_ranges), cfg.validation_fraction,
                       cfg.batch_size, cfg.batch_text_bytes, shard_path(out_dir, split, index), shard.text_bytes)
        for split in SPLITS
        for index, shard in enumerate(shards[split])  # a split with no documents still gets one empty shard
    ]
    release_freed_memory()  # what reading the text columns took
    return specs, {split: sum(shard.documents for shard in shards[split]) for split in SPLITS}


@dataclass(frozen=True)
class _TrainingTexts:
    """The train split's first texts, in snapshot order: at most cfg.max_training_documents documents, ending
    with the one whose text takes the total to cfg.max_training_bytes; read afresh on every iteration."""

    cfg: TokenizeConfig
    snapshot_dir: Path

    def __iter__(self) -> Iterator[str]:
        return itertools.islice(self._texts(), self.cfg.max_training_documents)

    def _texts(self) -> Iterator[str]:
        text_bytes = 0
        for _, content_hash, text in iter_snapshot(self.snapshot_dir, self.cfg.batch_size):
            if split_of(content_hash, self.cfg.validation_fraction) == "train":
                yield text
                text_bytes += len((text or "").encode())
                if text_bytes >= self.cfg.max_training_bytes:
                    return


def prepare_tokenizer(cfg: TokenizeConfig, snapshot_dir: Path, tokenizer_dir: Path) -> None:
    """Copy cfg.tokenizer_path, or train on the train split, into tokenizer_dir unless already there."""
    if not tokenizer_folder_problems(tokenizer_dir):
        logger.info("reusing tokenizer in %s", tokenizer_dir)
    elif cfg.tokenizer_path is not None:
        logger.info("copying tokenizer from %s", cfg.tokenizer_path)
        copy_tokenizer_folder(cfg.tokenizer_path, tokenizer_dir)
    else:
        tokenizer = train_wordpiece(
            _TrainingTexts(cfg, snapshot_dir),
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            lowercase=cfg.lowercase,
            strip_accents=cfg.strip_accents,
            alphabet_min_frequency=cfg.alphabet_min_frequency,
            limit_alphabet=cfg.limit_alphabet,
        )
        save_tokenizer(
            tokenizer,
            tokenizer_dir,
            lowercase=cfg.lowercase,
            strip_accents=cfg.strip_accents,
            model_max_length=cfg.model_max_length,
        )
        del tokenizer
        release_freed_memory()


def build_token_shards(cfg: TokenizeConfig, snapshot_dir: Path, out_dir: Path, *,
                       map_shards: ShardMap = serial_map, run_step: StepRunner = run_inline) -> dict[str, int | float]:
    """Train or load the tokenizer, then sentence-split and tokenize the snapshot into token shards.

    run_step runs the three steps: train tokenizer, split documents (train/validation), encode shards.
    """
    snapshot_dir, out_dir = Path(snapshot_dir), Path(out_dir)
    snapshot_files(snapshot_dir)  # fail before any work when the snapshot is missing
    out_dir.mkdir(parents=True, exist_ok=True)
    run_step("train tokenizer", lambda: prepare_tokenizer(cfg, snapshot_dir, out_dir / TOKENIZER_DIRNAME))
    tokenizer = load_tokenizer(out_dir / TOKENIZER_DIRNAME)
    # counted afresh (~0.1 CPU-s per 8 M characters), so a reused or given tokenizer is reported alike
    coverage = character_coverage(tokenizer, _TrainingTexts(cfg, snapshot_dir))
    logger.info("tokenizer alphabet: %d distinct characters in its training text, %d of them without a token "
                "(%.4f%% of the characters; they encode as [UNK])", coverage["alphabet_seen"],
                coverage["alphabet_left_out"], 100 * coverage["alphabet_left_out_share"])
    specs, input_documents = run_step("split documents", lambda: plan_token_shards(cfg, snapshot_dir, out_dir))

    stats: dict[str, int | float] = {
        "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
        # characters and their "##" pieces: more than vocab_size allows when the alphabet is large
        "vocab_character_tokens": character_token_count(tokenizer),
        **coverage,
    }
    for split in SPLITS:
        stats.update({f"{split}_{key}": 0 for key in ("documents", "sentences", "tokens", "unk_tokens")})
        stats[f"{split}_shards"] = sum(spec.split == split for spec in specs)
    encoded = run_step("encode shards", lambda: map_shards(make_token_shard, specs), sharded=True)
    for spec, shard_stats in zip(specs, encoded):
        for key in ("documents", "sentences", "tokens", "unk_tokens"):
            stats[f"{spec.split}_{key}"] += shard_stats[key]
    for split in SPLITS:
        stats[f"{split}_empty_documents"] = input_documents[split] - stats[f"{split}_documents"]
        forget_digests(out_dir / split)  # every shard is done: the output holds only the shards
    stats["tokens"] = stats["train_tokens"] + stats["validation_tokens"]
    stats["documents"] = stats["train_documents"] + stats["validation_documents"]
    unk = stats["train_unk_tokens"] + stats["validation_unk_tokens"]
    stats["unk_rate"] = unk / stats["tokens"] if stats["tokens"] else 0.0
    for split in SPLITS:  # shards hold no special token but [UNK]: the share of text tokens that are [UNK]
        tokens = stats[f"{split}_tokens"]
        stats[f"{split}_unk_rate"] = stats[f"{split}_unk_tokens"] / tokens if tokens else 0.0
    warning = unk_rate_warning(stats, cfg)
    if warning:
        logger.warning(warning)
    return stats


def read_token_documents(shards_dir: Path, split: str) -> Iterator[list[list[int]]]:
    """Documents of a split, shard by shard, each a list of sentences of token ids."""
    for path in shard_paths(shards_dir, split):
        with pa.memory_map(str(path), "r") as source:
            for batch in pa.ipc.open_stream(source):
                yield from batch.column("sentences").to_pylist()
