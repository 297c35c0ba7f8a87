"""A seeded synthetic web-like corpus with known duplicates and junk, for the corpus benchmark.

Documents are shuffled English prose paragraphs of real text (the crawled Python documentation), so they read
like English and pass the quality filters. Into them are planted, with ground truth:
- exact duplicates: verbatim copies of a base document;
- near-duplicates: copies with about 1% of their words substituted, inserted or deleted and one
  paragraph appended (word 5-gram Jaccard with the original ~0.8-0.95, inside what 14 x 8 MinHash LSH
  catches with probability > 0.9);
- junk that a quality filter should drop: navigation menus, one spam sentence repeated, lorem ipsum,
  number tables and stubs too short to be documents.
Everything is shuffled so that a copy and its original usually land in different input files.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

URL_PREFIX = "synthetic://doc/"
_END_MARKS = (".", "?", "!")
_CODE_CHARACTERS = re.compile(r"[()\[\]{}=_<>`*/\\#@%|~^$]")
_WORD_PUNCTUATION = ".,;:!?'\""
JUNK_KINDS = ("menu", "spam", "lorem", "numbers", "stub")


@dataclass
class SyntheticCorpus:
    """Documents (dicts with id, url, text) and what was planted in them."""

    documents: list[dict[str, str]] = field(default_factory=list)
    duplicate_pairs: list[tuple[str, str, str]] = field(default_factory=list)  # (original url, copy url, "exact"|"near")
    junk_urls: list[str] = field(default_factory=list)  # documents a quality filter should drop


def is_prose(line: str, min_words: int = 8) -> bool:
    """At least min_words words, ending in . ? or !, no code characters, >= 90% of words purely alphabetic.

    Stricter than our filters need: datatrove's Gopher filter counts punctuation tokens as words, so
    technical text with many brackets falls below its 80% alphabetic-words rule.
    """
    words = line.split()
    if len(words) < min_words or not line.endswith(_END_MARKS) or _CODE_CHARACTERS.search(line):
        return False
    return sum(word.strip(_WORD_PUNCTUATION).isalpha() for word in words) >= 0.9 * len(words)


def prose_paragraphs(texts: Sequence[str]) -> list[str]:
    """The unique English prose lines (is_prose) of texts, sorted: sentences, not code, headings or menus."""
    return sorted({line.strip() for text in texts for line in text.split("\n") if is_prose(line.strip())})


def perturb(text: str, rate: float, rng: random.Random, vocabulary: Sequence[str]) -> str:
    """text with ~rate of its words (at least two) substituted, deleted or preceded by an inserted word.

    Paragraph breaks are kept: edits apply to the words of each line.
    """
    words_total = len(text.split())
    positions = set(rng.sample(range(words_total), min(words_total, max(2, round(rate * words_total)))))
    out_lines, index = [], 0
    for line in text.split("\n"):
        out = []
        for word in line.split(" "):
            if index in positions:
                edit = rng.randrange(3)
                if edit == 0:
                    out.append(rng.choice(vocabulary))
                elif edit == 1:
                    out.extend([rng.choice(vocabulary), word])
                # edit == 2: the word is deleted
            else:
                out.append(word)
            index += 1
        out_lines.append(" ".join(out))
    return "\n".join(out_lines)


def junk_document(kind: str, rng: random.Random, paragraphs: Sequence[str], vocabulary: Sequence[str]) -> str:
    """A document of the given JUNK_KINDS kind that the quality filters should drop."""
    if kind == "menu":  # navigation: many one- to three-word lines
        return "\n".join(" ".join(rng.choices(vocabulary, k=rng.randint(1, 3))).title() for _ in range(40))
    if kind == "spam":  # one sentence, repeated
        return "\n".join([rng.choice(paragraphs)] * rng.randint(20, 40))
    if kind == "lorem":
        lorem = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt."
        return "\n".join([*rng.sample(paragraphs, 6), lorem, *rng.sample(paragraphs, 6)])
    if kind == "numbers":  # a table of figures: almost no alphabetic words
        return "\n".join(" ".join(f"{rng.uniform(0, 1e4):.2f}" for _ in range(8)) for _ in range(20))
    if kind == "stub":
        return " ".join(rng.choices(vocabulary, k=rng.randint(3, 12))) + "."
    raise ValueError(f"unknown junk kind {kind!r}; valid: {', '.join(JUNK_KINDS)}")


def build_synthetic_corpus(source_texts: Sequence[str], num_docs: int, seed: int = 0,
                           exact_fraction: float = 0.04, near_fraction: float = 0.06,
                           junk_fraction: float = 0.05, paragraphs_per_doc: tuple[int, int] = (8, 40),
                           ) -> SyntheticCorpus:
    """num_docs documents: base documents, then exact and near copies of some and junk, all shuffled."""
    problems = []
    if num_docs < 1:
        problems.append(f"num_docs must be >= 1, got {num_docs}")
    if not 0 <= exact_fraction + near_fraction + junk_fraction < 1:
        problems.append(f"exact_fraction + near_fraction + junk_fraction must be in [0, 1), got "
                        f"{exact_fraction} + {near_fraction} + {junk_fraction}")
    paragraphs = prose_paragraphs(source_texts)
    if len(paragraphs) < paragraphs_per_doc[1]:
        problems.append(f"the source texts hold {len(paragraphs)} prose paragraphs; at least "
                        f"{paragraphs_per_doc[1]} are needed")
    if problems:
        raise ValueError("; ".join(problems))
    rng = random.Random(seed)
    vocabulary = sorted({w.strip(".,;:!?()\"'") for p in paragraphs[:2000] for w in p.split()} - {""})
    num_exact, num_near = round(num_docs * exact_fraction), round(num_docs * near_fraction)
    num_junk = round(num_docs * junk_fraction)
    num_base = num_docs - num_exact - num_near - num_junk
    texts = ["\n".join(rng.sample(paragraphs, rng.randint(*paragraphs_per_doc))) for _ in range(num_base)]
    kinds = ["base"] * num_base
    originals: list[int | None] = [None] * num_base
    for kind, count in (("exact", num_exact), ("near", num_near)):
        for _ in range(count):
            original = rng.randrange(num_base)  # a base document may be copied more than once
            text = texts[original]
            if kind == "near":
                text = perturb(text, rng.uniform(0.005, 0.015), rng, vocabulary) + "\n" + rng.choice(paragraphs)
            texts.append(text)
            kinds.append(kind)
            originals.append(original)
    for index in range(num_junk):
        texts.append(junk_document(JUNK_KINDS[index % len(JUNK_KINDS)], rng, paragraphs, vocabulary))
        kinds.append("junk")
        originals.append(None)
    order = list(range(len(texts)))
    rng.shuffle(order)
    url_of = {old: f"{URL_PREFIX}{new:07d}" for new, old in enumerate(order)}
    corpus = SyntheticCorpus()
    for old in order:
        corpus.documents.append({"id": url_of[old], "url": url_of[old], "text": texts[old]})
        original = originals[old]
        if original is not None:
            corpus.duplicate_pairs.append((url_of[original], url_of[old], kinds[old]))
        elif kinds[old] == "junk":
            corpus.junk_urls.append(url_of[old])
    return corpus


def write_jsonl_shards(documents: Sequence[dict[str, str]], folder: Path, num_files: int) -> list[Path]:
    """documents split into num_files part-NNNNN.jsonl files, round-robin, each written atomically."""
    if num_files < 1:
        raise ValueError(f"num_files must be >= 1, got {num_files}")
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"part-{index:05d}.jsonl" for index in range(num_files)]
    for index, path in enumerate(paths):
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            for doc in documents[index::num_files]:
                out.write(json.dumps(doc, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    return paths


def write_ground_truth(corpus: SyntheticCorpus, path: Path) -> None:
    """The planted duplicate pairs and junk urls as JSON (for a reader who wants to check a run by hand)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"duplicate_pairs": corpus.duplicate_pairs, "junk_urls": corpus.junk_urls}, indent=1))
    os.replace(tmp, path)
