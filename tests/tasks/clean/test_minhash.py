import random
from datetime import UTC, datetime

import numpy as np
import pytest
from pydantic import ValidationError

from tasks.clean.minhash import (
    INDEX_FILE,
    NearDedup,
    NearDedupConfig,
    estimated_jaccard,
    load_index,
    minhash_signatures,
    near_duplicate_clusters,
    normalize_for_shingles,
    save_index,
)
from tasks.clean.steps import Document

CFG = NearDedupConfig()


def _doc(url: str, text: str) -> Document:
    return Document(url=url, source="local", title=None, text=text, fetched_at=datetime(2024, 1, 1, tzinfo=UTC))


def _text(seed: int, words: int = 200) -> str:
    rng = random.Random(seed)
    return " ".join(f"w{rng.randrange(5000)}" for _ in range(words))


def _rewrite_run(text: str, start: int, length: int) -> str:
    """The same text with `length` consecutive words replaced (a rewritten sentence)."""
    words = text.split()
    words[start:start + length] = [f"new{i}" for i in range(length)]
    return " ".join(words)


def test_config_defaults_are_fineweb_and_threshold_follows_bands_and_rows() -> None:
    assert (CFG.num_bands, CFG.rows_per_band, CFG.ngram, CFG.num_hashes) == (14, 8, 5, 112)
    assert CFG.threshold == pytest.approx(0.719, abs=1e-3)
    with pytest.raises(ValidationError) as error:
        NearDedupConfig(num_bands=0, jaccard_threshold=1.5, shingles=3)
    assert {e["loc"][0] for e in error.value.errors()} == {"num_bands", "jaccard_threshold", "shingles"}


def test_normalisation_ignores_case_punctuation_and_whitespace() -> None:
    assert normalize_for_shingles("Hello,  World!\nIt's\tDONE.") == "hello world it s done"
    assert normalize_for_shingles(" \n ") == ""
    # combining marks (Devanagari and Thai vowel signs) belong to their words; superscripts stay too
    assert normalize_for_shingles("हिन्दी भाषा, ข่าว ขาว; x² + y²") == "हिन्दी भाषा ข่าว ขาว x² y²"


def test_exact_and_near_duplicates_are_caught_and_distinct_documents_kept() -> None:
    base = _text(1, 400)
    near = _rewrite_run(base, 200, 20)  # 5% of the words, one rewritten passage: Jaccard 372 / 420 = 0.89
    docs = [_doc("a", base), _doc("b", base.upper()), _doc("c", near), _doc("d", _text(2)), _doc("e", _text(3))]
    dedup = NearDedup(CFG)
    assert [d.url for d in dedup.run(docs)] == ["a", "d", "e"]
    assert dedup.counts == {"near_duplicate": 2, "near_duplicate_of_parent": 0}
    assert dedup.index.urls == ["a", "d", "e"] and dedup.index.signatures.shape == (3, 112)


def test_signatures_estimate_jaccard_and_unrelated_texts_share_no_cluster() -> None:
    texts = [_text(seed) for seed in range(20)] + [_rewrite_run(_text(0), 50, 10)]
    signatures = minhash_signatures(texts, CFG)
    assert signatures.shape == (21, 112) and signatures.dtype == np.uint32
    # 14 of 196 shingles differ each way: true Jaccard 182 / 210 = 0.87
    assert estimated_jaccard(signatures, np.array([[0, 20], [0, 1]])) == pytest.approx([0.87, 0.0], abs=0.1)
    clusters = near_duplicate_clusters(signatures, CFG)
    assert clusters.tolist() == list(range(20)) + [0]


def test_same_seed_same_signatures_and_the_kept_copy_does_not_depend_on_input_order() -> None:
    texts = [_text(seed) for seed in range(5)]
    assert np.array_equal(minhash_signatures(texts, CFG), minhash_signatures(texts, CFG))
    reseeded = CFG.model_copy(update={"seed": 2})
    assert not np.array_equal(minhash_signatures(texts, CFG), minhash_signatures(texts, reseeded))
    docs = [_doc(f"u{i}", _rewrite_run(_text(7), 20 * i, 5)) for i in range(6)] + [_doc("x", _text(8))]
    kept = set()
    for shuffle_seed in range(4):
        shuffled = docs[:]
        random.Random(shuffle_seed).shuffle(shuffled)
        kept.add(frozenset(d.url for d in NearDedup(CFG).run(shuffled)))
    assert kept == {frozenset({"u0", "x"})}  # the smallest url of the cluster, whatever the order


def test_short_documents_are_one_shingle_and_empty_input_is_fine() -> None:
    texts = {"a": "Hello, world!", "b": "hello world", "c": "hello there", "d": "", "e": " "}
    docs = [_doc(url, text) for url, text in texts.items()]
    dedup = NearDedup(CFG)
    assert [d.url for d in dedup.run(docs)] == ["a", "c", "d"]
    assert dedup.counts["near_duplicate"] == 2
    assert minhash_signatures([], CFG).shape == (0, 112)
    assert NearDedup(CFG).run([]) == []


def test_jaccard_verification_rejects_weak_candidates() -> None:
    half = _text(4, 100)
    texts = [half + " " + _text(5, 100), half + " " + _text(6, 100)]  # Jaccard ~ 96 / 296 = 0.32
    loose = NearDedupConfig(num_bands=40, rows_per_band=1)  # any one equal MinHash value makes a candidate
    signatures = minhash_signatures(texts, loose)
    assert near_duplicate_clusters(signatures, loose).tolist() == [0, 0]
    verified = loose.model_copy(update={"jaccard_threshold": 0.8})
    assert near_duplicate_clusters(signatures, verified).tolist() == [0, 1]


def test_disabled_keeps_everything() -> None:
    docs = [_doc("a", "same text"), _doc("b", "same text")]
    assert NearDedup(NearDedupConfig(enabled=False)).run(docs) == docs


def test_dedup_against_a_saved_parent_index(tmp_path) -> None:
    first = NearDedup(CFG)
    parent_docs = [_doc("p1", _text(10)), _doc("p2", _text(11)), _doc("p3", _text(12))]
    assert len(first.run(parent_docs)) == 3
    assert save_index(first.index, tmp_path) == tmp_path / INDEX_FILE
    parent = load_index(tmp_path, CFG)
    assert parent.urls == ["p1", "p2", "p3"] and np.array_equal(parent.signatures, first.index.signatures)

    new_docs = [
        _doc("n1", _rewrite_run(_text(10), 0, 8)),  # a copy of p1 at another url
        _doc("n2", _rewrite_run(_text(10), 150, 8)),  # and a second one, also near n1
        _doc("p2", _rewrite_run(_text(11), 30, 8)),  # p2's own page, changed: its newer version, kept
        _doc("a2", _rewrite_run(_text(11), 100, 8)),  # a new copy of p2: p2 was there first, so p2 stays
        _doc("n3", _text(13)),
    ]
    dedup = NearDedup(CFG, parent=parent)
    assert [d.url for d in dedup.run(new_docs)] == ["p2", "n3"]
    assert dedup.counts == {"near_duplicate": 1, "near_duplicate_of_parent": 2}
    assert dedup.index.urls == ["p2", "n3"]


def test_an_index_from_other_hash_settings_is_refused(tmp_path) -> None:
    dedup = NearDedup(CFG)
    dedup.run([_doc("a", _text(1))])
    save_index(dedup.index, tmp_path)
    with pytest.raises(ValueError, match=r"seed='1' \(this run uses '2'\)"):
        load_index(tmp_path, CFG.model_copy(update={"seed": 2}))
    with pytest.raises(ValueError, match="other hash settings"):
        NearDedup(NearDedupConfig(num_bands=10), parent=load_index(tmp_path, CFG))
