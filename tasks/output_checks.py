"""What makes a stage's output unusable, checked before it is committed as an artifact.

An empty corpus, token shards without tokens, a vocabulary of nothing but special tokens or zero training
instances would be cached under their artifact id and fed to the next stage, which then fails somewhere
less clear or, worse, trains on nothing. `unusable_output` says why in one message naming the inputs and
the likely cause; the stage run raises it as an InputError, so nothing is committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# the corpus sources, as the config names them, and the per-source item count the corpus stage reports
SOURCES = ("crawl", "local_files", "warc", "hf_datasets")
# where the setting behind a drop reason lives, by reason prefix (first match wins)
_DROP_SETTINGS = (
    ("extract_", "corpus.extract (main-text extraction found nothing)"),
    ("gopher_", "corpus.quality.gopher"),
    ("c4_", "corpus.quality.c4"),
    ("fineweb_", "corpus.quality.fineweb"),
    ("wrong_language", "corpus.language"),
    ("low_language_score", "corpus.language"),
    ("too_few_words", "corpus.min_words"),
    ("empty", "the sources (documents without text)"),
    ("near_duplicate", "corpus.near_dedup"),
    ("duplicate", "the sources (exact duplicates)"),
)


def unusable_output(stage: str, stats: Mapping[str, Any], inputs: Mapping[str, str]) -> str | None:
    """Why the stage's output (its statistics) must not become an artifact, or None when it is usable.

    inputs: upstream stage -> artifact id, named in the message.
    """
    read = ", ".join(f"{up} {up_id}" for up, up_id in inputs.items())
    if stage == "corpus" and not stats.get("documents"):
        return empty_corpus(stats)
    if stage == "tokenize":
        if stats.get("vocab_character_tokens") == 0:
            return (f"the tokenizer built from {read} has only special tokens ({stats.get('vocab_size')} in all): "
                    f"its training text held no characters to learn; check the corpus (`pretrainflow artifacts "
                    f"--stage corpus`) or give a trained tokenizer in tokenize.tokenizer_path")
        if not stats.get("tokens"):
            return (f"tokenizing {read} gave 0 tokens from {stats.get('documents', 0)} documents: no document "
                    f"held a sentence the tokenizer could encode; check the corpus text, or the tokenizer given in "
                    f"tokenize.tokenizer_path")
    if stage == "instances" and not stats.get("train_instances"):
        return (f"generating instances from {read} gave 0 training instances ({stats.get('instances', 0)} in "
                f"all): its documents hold too few sentences to pair; use a bigger corpus, or "
                f"instances.objective='mlm', which needs no sentence pairs")
    return None


def empty_corpus(stats: Mapping[str, Any]) -> str:
    """Which sources gave nothing and why, or which cleaning steps dropped everything they gave."""
    read = stats.get("documents_in", 0)
    parts = [_source_line(source, stats) for source in SOURCES]
    sources = "; ".join(p for p in parts if p)
    if not read:
        return (f"the corpus is empty: no source gave a document ({sources or 'no source counted'}); check that "
                f"the sources hold text in a readable format (see `pretrainflow config` for what is read)")
    drops = sorted(((n, reason.removeprefix("dropped_")) for reason, n in stats.items()
                    if reason.startswith("dropped_") and n), reverse=True)
    dropped = ", ".join(f"{n} by {reason}" for n, reason in drops) or "none counted"
    settings = sorted({_setting(reason) for _, reason in drops})
    return (f"the corpus is empty: all {read} documents the sources gave were dropped ({dropped}); sources: "
            f"{sources or 'not counted'}. Check the sources, or loosen {', '.join(settings) or 'the cleaning'}")


def _source_line(source: str, stats: Mapping[str, Any]) -> str:
    items = stats.get(f"items_{source}")
    if source == "crawl":
        if items is None and not stats.get("pages_fetched") and not stats.get("pages_failed"):
            return ""
        failed = stats.get("pages_failed", 0)
        robots = stats.get("pages_disallowed_robots", 0)
        return (f"crawl saved {stats.get('pages_fetched', 0)} pages ({failed} failed, {robots} disallowed by "
                f"robots.txt)")
    if items is None:
        return ""
    line = f"{source} gave {items} documents"
    if source == "warc":
        notes = [f"{stats[k]} {k.removeprefix('warc_').replace('_', ' ')}" for k in
                 ("warc_files_corrupt", "warc_files_without_documents", "warc_skipped_malformed") if stats.get(k)]
        line += f" ({', '.join(notes)})" if notes else ""
    return line


def _setting(reason: str) -> str:
    for prefix, setting in _DROP_SETTINGS:
        if reason.startswith(prefix):
            return setting
    return f"the step that drops {reason}"
