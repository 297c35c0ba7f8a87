"""One cleaning shard: extract, fix, filter and redact the documents of one input shard, then hash them for dedup.

clean_shard runs in a worker (tasks/parallel.py): it reads work/input-NNNNN.parquet, extracts HTML with
a per-page time limit (a shard on a worker thread, as under Dask, runs in a child process for it),
runs the CleanPipeline, and writes work/cleaned-NNNNN.arrow (the kept documents sorted by
(url, content_hash, seq), each with the fixed-size keys the global dedup needs: 64-bit exact-dedup
key, url hash, text bytes, example key, MinHash signature) and then work/cleaned-NNNNN.json (this
shard's counts, step table, dropped examples, and the size and sha256 of the files it wrote), which
marks it done. A shard whose JSON exists is not redone unless one of its files no longer matches the
JSON's record (tasks/pieces.py): then it is removed, with a warning, and cleaned again. Cleaned shards
are uncompressed Arrow IPC files, read memory-mapped: the snapshot writers pick a few rows out of every
shard, and a memory map reads only the pages those rows lie in, where a Parquet reader would decompress
whole row groups.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc  # noqa: F401 (pa.ipc)
import pyarrow.parquet as pq
import xxhash

from tasks.clean.c4 import C4LineFilter
from tasks.clean.exact_dedup import content_hash, dedup_key
from tasks.clean.extract import extract_page
from tasks.clean.langid import language_steps
from tasks.clean.minhash import minhash_signatures
from tasks.clean.normalize import default_pipeline
from tasks.clean.pii import RedactPii
from tasks.clean.quality import quality_steps
from tasks.clean.steps import CleanPipeline, Document, Dropped, Example, StepCount, example_key
from tasks.corpus.config import CorpusConfig
from tasks.corpus.work_shards import input_path, write_json_atomically
from tasks.pieces import piece_damage, piece_record, unreadable

logger = logging.getLogger(__name__)

EXTRACT_DROP_REASONS = ("extract_failed", "extract_empty", "extract_timeout")
DROPPED_SCHEMA = pa.schema([("url", pa.string()), ("text", pa.string()), ("step", pa.string()),
                            ("reason", pa.string())])
CLEANED_BATCH = 256  # rows per record batch of a cleaned shard; the dedup merge reads ~1024 rows of whole batches


@dataclass(frozen=True)
class CleanShardSpec:
    """What one cleaning worker needs: the shard number, the work folder, the config (all picklable)."""

    shard: int
    work: Path
    cfg: CorpusConfig
    dropped_dir: Path | None  # where dropped-NNNNN.parquet goes; None = not written


def cleaned_path(work: Path, shard: int) -> Path:
    """work/cleaned-NNNNN.arrow."""
    return work / f"cleaned-{shard:05d}.arrow"


def read_cleaned(work: Path, shard: int) -> pa.Table:
    """A cleaned shard, memory-mapped: nothing is read until a column or row is used."""
    return pa.ipc.open_file(pa.memory_map(str(cleaned_path(work, shard)))).read_all()


def account_path(work: Path, shard: int) -> Path:
    """work/cleaned-NNNNN.json: the shard's counts, written last (its presence means the shard is done)."""
    return work / f"cleaned-{shard:05d}.json"


def key64(hex_digest: str) -> int:
    """The first 64 bits of a hex digest, as an unsigned int."""
    return int(hex_digest[:16], 16)


def url_hash(url: str) -> int:
    """64-bit hash of a url."""
    return xxhash.xxh3_64_intdigest(url.encode("utf-8", "surrogatepass"))


def cleaned_schema(cfg: CorpusConfig) -> pa.Schema:
    """Columns of a cleaned shard: the snapshot's, the split position, and the dedup keys."""
    fields = [
        pa.field("id", pa.string()), pa.field("url", pa.string()), pa.field("source", pa.string()),
        pa.field("title", pa.string()), pa.field("text", pa.string()), pa.field("language", pa.string()),
        pa.field("language_score", pa.float32()), pa.field("fetched_at", pa.timestamp("us", tz="UTC")),
        pa.field("content_hash", pa.string()),
        pa.field("seq", pa.int64()),  # position in the split: breaks ties of (url, content_hash)
        pa.field("dedup_key", pa.uint64()),  # first 64 bits of id
        pa.field("url_hash", pa.uint64()),
        pa.field("text_bytes", pa.int64()),  # UTF-8 bytes of text, for the step table
        pa.field("example_key", pa.uint64()),  # clean.example_key of the document: which are shown as examples
    ]
    if cfg.near_dedup.enabled:
        fields.append(pa.field("signature", pa.list_(pa.uint32(), cfg.near_dedup.num_hashes)))
    return pa.schema(fields)


def _dropped_path(spec: CleanShardSpec) -> Path | None:
    """dropped_dir/dropped-NNNNN.parquet, or None when dropped documents are not written."""
    return None if spec.dropped_dir is None else spec.dropped_dir / f"dropped-{spec.shard:05d}.parquet"


def _written_files(spec: CleanShardSpec) -> dict[str, Path]:
    """The files a cleaning shard writes before its account, by the name its account records them under."""
    files = {"cleaned": cleaned_path(spec.work, spec.shard)}
    if (dropped := _dropped_path(spec)) is not None:
        files["dropped"] = dropped
    return files


def _finished(spec: CleanShardSpec) -> bool:
    """Whether the shard is done: its account is there and its files match the account's record.

    A damaged shard is removed (its account first) with one warning, to be cleaned again.
    """
    account = account_path(spec.work, spec.shard)
    if not account.exists():
        return False
    problem = _damage(spec, account)
    if problem is None:
        return True
    logger.warning("damaged piece %s; removing cleaned shard %d and cleaning it again", problem, spec.shard)
    for path in (account, *_written_files(spec).values()):
        path.unlink(missing_ok=True)
    return False


def _damage(spec: CleanShardSpec, account: Path) -> str | None:
    """'<path>: <what is wrong>' for the first file of a finished shard that differs from its record, or None."""
    try:
        records = json.loads(account.read_text()).get("pieces")
    except (OSError, ValueError) as err:
        return f"{account}: {unreadable(err)}"
    if records is None:
        return None  # an account written before accounts recorded their files: used unverified
    for name, path in _written_files(spec).items():
        if (problem := piece_damage(path, records.get(name))) is not None:
            return f"{path}: {problem}"
    return None


def clean_pipeline(cfg: CorpusConfig) -> CleanPipeline:
    """Fixes, empty/short filters, language id and filter, quality filters, PII redaction, in that order."""
    steps = default_pipeline(cfg.min_words, cfg.normalize).steps
    # PII last: only documents that survive the filters pay for it, and dedup sees the redacted text
    return CleanPipeline([*steps, *language_steps(cfg.language), *quality_steps(cfg.quality), RedactPii(cfg.pii)])


def clean_shard(spec: CleanShardSpec) -> bool:
    """Clean one input shard into work/cleaned-NNNNN.{arrow,json}; returns False if it was already done."""
    if _finished(spec):
        return False
    cfg = spec.cfg
    if cfg.extract.timeout_seconds is not None and threading.current_thread() is not threading.main_thread():
        clean_shard_in_child(spec)  # the per-page time limit is a SIGALRM timer, which only a main thread gets
        return True
    pipeline = clean_pipeline(cfg)
    counts: Counter[str] = Counter(dict.fromkeys(EXTRACT_DROP_REASONS, 0))
    kept: list[tuple[int, Document]] = []
    dropped: list[dict] = []
    documents_in = 0
    for batch in pq.ParquetFile(input_path(spec.work, spec.shard)).iter_batches(batch_size=64):
        for row in batch.to_pylist():
            documents_in += 1
            doc, reason = _document(row, cfg)
            if doc is None:
                counts[reason] += 1
                dropped.append({"url": row["url"], "text": None, "step": "extract", "reason": reason})
                continue
            result = pipeline.process_explained(doc)
            if isinstance(result, Dropped):
                dropped.append({"url": result.doc.url, "text": result.doc.text, "step": result.step,
                                "reason": result.reason})
            else:
                kept.append((row["seq"], result))
    _write_cleaned(kept, cfg, cleaned_path(spec.work, spec.shard))
    if (dropped_file := _dropped_path(spec)) is not None:
        _write_dropped(dropped, dropped_file)
    account = {"documents_in": documents_in, "kept": len(kept), "counts": dict(_counts(pipeline, counts)),
               "steps": [[s.step, s.docs_in, s.docs_out, s.bytes_in, s.bytes_out] for s in pipeline.step_counts],
               "drop_examples": {reason: [[e.step, e.reason, e.url, e.excerpt] for e in examples]
                                 for reason, examples in pipeline.examples().items()},
               "pieces": {name: piece_record(path) for name, path in _written_files(spec).items()}}
    write_json_atomically(account, account_path(spec.work, spec.shard))
    return True


def clean_shard_in_child(spec: CleanShardSpec) -> None:
    """Run clean_shard in a fresh Python process, whose main thread can take the extraction time limit.

    For shards run on a worker thread (a Dask worker's task threads). A plain subprocess, since Dask
    worker processes are daemonic and multiprocessing refuses them children. The child writes the
    shard's files as clean_shard always does; a failure raises with the end of the child's stderr.
    """
    spec_file = spec.work / f"clean-spec-{spec.shard:05d}.pickle"
    tmp = spec_file.with_name(f"{spec_file.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    tmp.write_bytes(pickle.dumps(spec))
    os.replace(tmp, spec_file)
    try:
        done = subprocess.run([sys.executable, "-m", "tasks.corpus.clean_shard", str(spec_file)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    finally:
        spec_file.unlink(missing_ok=True)
    if done.returncode != 0 or not account_path(spec.work, spec.shard).exists():
        raise RuntimeError(f"cleaning shard {spec.shard} in a child process failed with exit status "
                           f"{done.returncode}: {done.stderr[-2000:].strip()}")


def read_account(work: Path, shard: int) -> dict:
    """A finished shard's account, with StepCount and Example objects."""
    account = json.loads(account_path(work, shard).read_text())
    account["steps"] = [StepCount(*s) for s in account["steps"]]
    account["drop_examples"] = {r: [Example(*e) for e in ex] for r, ex in account["drop_examples"].items()}
    return account


def _document(row: dict, cfg: CorpusConfig) -> tuple[Document | None, str]:
    """The row as a Document (HTML extracted), or (None, extraction drop reason)."""
    title, text = row["title"], row["text"]
    if row["html"] is not None:
        extracted, reason = extract_page(row["html"], row["content_type"], row["url"], cfg.extract)
        if extracted is None:
            return None, reason
        title, text = extracted.title, extracted.text
    return Document(url=row["url"], source=row["source"], title=title, text=text, fetched_at=row["fetched_at"]), ""


def _counts(pipeline: CleanPipeline, counts: Counter[str]) -> Counter[str]:
    """Drop reasons of extraction and the pipeline, lines C4 removed, PII redacted."""
    counts.update(pipeline.counts)
    for step in pipeline.steps:
        if isinstance(step, C4LineFilter):
            counts.update(step.lines_removed)
        if isinstance(step, RedactPii):
            counts.update(step.counts)
    return counts


def _write_cleaned(kept: list[tuple[int, Document]], cfg: CorpusConfig, path: Path) -> None:
    rows = []
    for seq, doc in kept:
        doc_id, digest = dedup_key(doc.text), content_hash(doc.text)
        rows.append({"id": doc_id, "url": doc.url, "source": doc.source, "title": doc.title, "text": doc.text,
                     "language": doc.language, "language_score": doc.language_score, "fetched_at": doc.fetched_at,
                     "content_hash": digest, "seq": seq, "dedup_key": key64(doc_id), "url_hash": url_hash(doc.url),
                     "text_bytes": len(doc.text.encode("utf-8", "surrogatepass")),
                     "example_key": example_key(Example.of(doc, "kept", "kept"))})
    rows.sort(key=lambda r: (r["url"], r["content_hash"], r["seq"]))  # the snapshot's order
    schema = cleaned_schema(cfg)
    table = pa.Table.from_pylist(rows, schema=schema.remove(schema.get_field_index("signature"))
                                 if cfg.near_dedup.enabled else schema)
    if cfg.near_dedup.enabled:
        signatures = minhash_signatures([r["text"] for r in rows], cfg.near_dedup)  # (docs, num_hashes) uint32
        flat = pa.array(signatures.reshape(-1), pa.uint32())
        table = table.append_column(schema.field("signature"),
                                    pa.FixedSizeListArray.from_arrays(flat, cfg.near_dedup.num_hashes))
    tmp = path.with_suffix(".arrow.tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=CLEANED_BATCH)
    os.replace(tmp, path)


def _write_dropped(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=DROPPED_SCHEMA), tmp, compression="zstd")
    os.replace(tmp, path)


def signature_array(table: pa.Table, num_hashes: int) -> np.ndarray:
    """(rows, num_hashes) uint32 from a table's signature column."""
    flat = table.column("signature").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return flat.astype(np.uint32, copy=False).reshape(table.num_rows, num_hashes)


if __name__ == "__main__":  # python -m tasks.corpus.clean_shard SPEC.pickle: one shard, from clean_shard_in_child
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    from tasks.corpus.clean_shard import clean_shard as _clean_shard  # the importable module's, not __main__'s

    _clean_shard(pickle.loads(Path(sys.argv[1]).read_bytes()))
