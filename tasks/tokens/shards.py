"""Tokenize stage: corpus snapshot -> tokenizer + train/validation token shards.

Output (the token-shards contract): `tokenizer/` (a Hugging Face BERT tokenizer folder) and
`train/tokens-00000.arrow`, ..., `validation/tokens-00000.arrow`, ... in Arrow IPC stream format with
columns doc_id (string) and sentences (list<list<uint16|uint32>>: one inner list per sentence, WordPiece
ids without special tokens). A document goes to validation when its content hash falls below
`validation_fraction`, so the split is by document and stable across re-runs and snapshot growth.

A rerun after a crash reuses the finished token shards, each checked first against the size and sha256
recorded in a sidecar when it was written (tasks/pieces.py): a damaged one is encoded again. The
sidecars are removed when every shard is done, so the output holds only the files above.
"""

from __future__ import annotations

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
from tasks.tokens.sentences import split_document
from tasks.tokens.tokenizer import (
    SEP,
    SPECIAL_TOKENS,
    UNK,
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


class TokenizeConfig(BaseModel):
    """Tokenize stage: WordPiece tokenizer training (or loading), sentence splitting, sharding."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    vocab_size: int = Field(default=16000, ge=64, le=2**32 - 1)
    """WordPiece vocabulary size to train, special tokens included (ignored with tokenizer_path). Every
    alphabet character and its "##" piece is kept even beyond it (a warning says so; see limit_alphabet)."""
    min_frequency: int = Field(default=2, ge=1)
    """A merge must occur at least this often in the training texts to enter the vocabulary."""
    limit_alphabet: int = Field(default=1000, ge=1)
    """Most distinct initial characters kept by the trainer; rarer characters become [UNK]."""
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
    validation_fraction: float = Field(default=0.05, ge=0.0, lt=1.0)
    """Fraction of documents, chosen by content hash, that go to the validation split."""
    documents_per_shard: int = Field(default=10_000, ge=1)
    """Input documents per output shard and split (documents without any text are dropped)."""
    batch_size: int = Field(default=256, ge=1)
    """Documents read and encoded together (bounds memory for raw text)."""

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


def iter_snapshot(snapshot_dir: Path, batch_size: int) -> Iterator[tuple[str, str, str]]:
    """(id, content_hash, text) of every snapshot document, in file and row order."""
    for path in snapshot_files(snapshot_dir):
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=batch_size, columns=["id", "content_hash", "text"]):
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


def read_stream(path: Path) -> pa.Table:
    """Read a whole Arrow IPC stream file (memory-mapped)."""
    with pa.memory_map(str(path), "r") as source:
        return pa.ipc.open_stream(source).read_all()


@dataclass
class _EncodedDocuments:
    """Documents encoded so far for one shard, as flat arrays."""

    doc_ids: list[str] = field(default_factory=list)
    ids: list[np.ndarray] = field(default_factory=list)  # (tokens,) per batch
    sentence_lengths: list[np.ndarray] = field(default_factory=list)  # (sentences,) per batch
    document_sentences: list[int] = field(default_factory=list)  # sentences per document

    def to_table(self, schema: pa.Schema) -> pa.Table:
        dtype = np.dtype(str(schema.field("sentences").type.value_type.value_type))  # to_pandas_dtype imports pandas
        ids = np.concatenate(self.ids).astype(dtype, copy=False) if self.ids else np.zeros(0, dtype)
        lengths = np.concatenate(self.sentence_lengths) if self.sentence_lengths else np.zeros(0, np.int64)
        sentence_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        document_offsets = np.concatenate([[0], np.cumsum(self.document_sentences)]).astype(np.int32)
        sentences = pa.ListArray.from_arrays(pa.array(sentence_offsets), pa.array(ids))
        documents = pa.ListArray.from_arrays(pa.array(document_offsets), sentences)
        return pa.Table.from_arrays([pa.array(self.doc_ids, pa.string()), documents], schema=schema)


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
    into.ids.append(ids)
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
    out_path: Path


def _split_rows(path: Path, start: int, end: int, split: str, validation_fraction: float,
                batch_size: int) -> Iterator[tuple[list[str], list[str]]]:
    """(doc_ids, texts) batches of the rows [start, end) of one parquet file that belong to split."""
    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=["id", "content_hash", "text"]):
        first, row = row, row + batch.num_rows
        if row <= start:
            continue
        if first >= end:
            break
        batch = batch.slice(max(start - first, 0), min(end, row) - max(start, first))
        columns = batch.to_pydict()
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
        encoded = _EncodedDocuments()
        for path, start, end in spec.row_ranges:
            for doc_ids, texts in _split_rows(Path(path), start, end, spec.split, spec.validation_fraction, spec.batch_size):
                encode_documents(tokenizer, doc_ids, texts, encoded)
        table = encoded.to_table(token_shard_schema(tokenizer.get_vocab_size(with_added_tokens=True)))
        write_stream_atomically(table, spec.out_path)
        record_piece(spec.out_path)
    stats = token_shard_stats(table, tokenizer.token_to_id(UNK))
    logger.info("%s/%s: %d documents, %d sentences, %d tokens",
                spec.split, spec.out_path.name, stats["documents"], stats["sentences"], stats["tokens"])
    return stats


def plan_token_shards(cfg: TokenizeConfig, snapshot_dir: Path, out_dir: Path) -> tuple[list[TokenShardSpec], dict[str, int]]:
    """Specs of every token shard (split by content hash, documents_per_shard each, snapshot order) and
    the number of input documents per split; reads only the content_hash column."""
    ranges: dict[str, list[list[tuple[str, int, int]]]] = {split: [[]] for split in SPLITS}
    filled = dict.fromkeys(SPLITS, 0)  # documents in the split's last shard so far
    documents = dict.fromkeys(SPLITS, 0)
    for path in snapshot_files(snapshot_dir):
        # ParquetFile.read, not pq.read_table: the latter imports pandas (~1 s per worker process)
        hashes = pq.ParquetFile(path).read(columns=["content_hash"]).column("content_hash").to_pylist()
        splits = [split_of(h, cfg.validation_fraction) for h in hashes]
        for split in SPLITS:
            rows = [r for r, s in enumerate(splits) if s == split]
            documents[split] += len(rows)
            while rows:
                if filled[split] == cfg.documents_per_shard:
                    ranges[split].append([])
                    filled[split] = 0
                take = rows[: cfg.documents_per_shard - filled[split]]
                ranges[split][-1].append((str(path), take[0], take[-1] + 1))
                filled[split] += len(take)
                rows = rows[len(take) :]
    specs = [
        TokenShardSpec(out_dir / TOKENIZER_DIRNAME, split, index, tuple(shard_ranges), cfg.validation_fraction,
                       cfg.batch_size, shard_path(out_dir, split, index))
        for split in SPLITS
        for index, shard_ranges in enumerate(ranges[split])  # a split with no documents still gets one empty shard
    ]
    return specs, documents


@dataclass(frozen=True)
class _TrainingTexts:
    """The train split's texts (the first cfg.max_training_documents), read afresh on every iteration."""

    cfg: TokenizeConfig
    snapshot_dir: Path

    def __iter__(self) -> Iterator[str]:
        texts = (
            text
            for _, content_hash, text in iter_snapshot(self.snapshot_dir, self.cfg.batch_size)
            if split_of(content_hash, self.cfg.validation_fraction) == "train"
        )
        return itertools.islice(texts, self.cfg.max_training_documents)


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
            limit_alphabet=cfg.limit_alphabet,
        )
        save_tokenizer(
            tokenizer,
            tokenizer_dir,
            lowercase=cfg.lowercase,
            strip_accents=cfg.strip_accents,
            model_max_length=cfg.model_max_length,
        )


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
    specs, input_documents = run_step("split documents", lambda: plan_token_shards(cfg, snapshot_dir, out_dir))

    stats: dict[str, int | float] = {
        "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
        # characters and their "##" pieces: more than vocab_size allows when the alphabet is large
        "vocab_character_tokens": character_token_count(tokenizer),
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
    return stats


def read_token_documents(shards_dir: Path, split: str) -> Iterator[list[list[int]]]:
    """Documents of a split, shard by shard, each a list of sentences of token ids."""
    for path in shard_paths(shards_dir, split):
        with pa.memory_map(str(path), "r") as source:
            for batch in pa.ipc.open_stream(source):
                yield from batch.column("sentences").to_pylist()
