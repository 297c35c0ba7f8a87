import random

import datasets
import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from tasks.instances import (
    InstancesConfig,
    SplitDocuments,
    build_instances,
    create_instances_from_document,
    load_vocabulary,
    truncate_seq_pair,
)
from tasks.shards import load_token_split, read_stream, token_shard_schema, write_stream_atomically
from tasks.tokenizer import save_tokenizer, train_wordpiece

CLS, SEP, MASK = 2, 3, 4
SPECIAL = {0, 1, 2, 3, 4}
TEXT = "python functions return values while classes define methods and modules import packages quickly " * 30


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    tokenizer = train_wordpiece(
        [TEXT], vocab_size=90, min_frequency=1, lowercase=True, strip_accents=None, limit_alphabet=100
    )
    path = tmp_path_factory.mktemp("tok") / "tokenizer"
    save_tokenizer(tokenizer, path, lowercase=True, strip_accents=None, model_max_length=512)
    return path


def write_tokens(tokens_dir, tokenizer_dir, splits):
    """Token shards per the contract from {split: [shard: [document: [sentence: [id]]]]}."""
    (tokens_dir / "tokenizer").mkdir(parents=True)
    for name in tokenizer_dir.iterdir():
        (tokens_dir / "tokenizer" / name.name).write_bytes(name.read_bytes())
    for split, shards in splits.items():
        for index, documents in enumerate(shards):
            table = pa.Table.from_pylist(
                [{"doc_id": f"{split}-{index}-{d}", "sentences": doc} for d, doc in enumerate(documents)],
                schema=token_shard_schema(90),
            )
            write_stream_atomically(table, tokens_dir / split / f"tokens-{index:05d}.arrow")
    return tokens_dir


def random_documents(rng, count, vocab_size=90, max_sentences=12, max_len=40):
    return [
        [[rng.randrange(5, vocab_size) for _ in range(rng.randint(1, max_len))] for _ in range(rng.randint(1, max_sentences))]
        for _ in range(count)
    ]


def read_instances(out_dir, split):
    tables = [read_stream(p) for p in sorted((out_dir / split).glob("instances-*.arrow"))]
    return pa.concat_tables(tables).to_pylist() if tables else []


def as_text(ids):
    return "," + ",".join(map(str, ids)) + ","


def check_instance(row, cfg, documents_text):
    ids, types = row["input_ids"], row["token_type_ids"]
    assert 5 <= len(ids) <= cfg.max_seq_length and len(types) == len(ids)
    first_sep = types.index(1) - 1
    assert ids[0] == CLS and ids[first_sep] == SEP and ids[-1] == SEP
    assert ids.count(CLS) == 1 and ids.count(SEP) == 2 and types == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)
    positions = row["masked_lm_positions"]
    assert positions == sorted(set(positions)) and len(positions) == len(row["masked_lm_ids"])
    assert 1 <= len(positions) <= cfg.max_predictions_per_seq
    assert not {0, first_sep, len(ids) - 1} & set(positions)
    assert not SPECIAL & set(row["masked_lm_ids"])
    assert all(ids[p] == MASK or ids[p] not in SPECIAL for p in positions)
    original = list(ids)
    for position, label in zip(positions, row["masked_lm_ids"]):
        original[position] = label
    segment_a, segment_b = original[1:first_sep], original[first_sep + 1 : -1]
    # A and B are each contiguous text (truncation may cut between them). An actual-next B follows A in
    # A's document; a random-next B comes from another document.
    a_text, b_text = as_text(segment_a), as_text(segment_b)
    homes = [d for d, doc in enumerate(documents_text) if a_text in doc]
    assert homes
    if row["next_sentence_label"] == 0:
        assert any(b_text in documents_text[d][documents_text[d].index(a_text) + len(a_text) - 1 :] for d in homes)
    else:
        assert any(b_text in doc for d, doc in enumerate(documents_text) if d not in homes or len(homes) > 1)
    return original


@pytest.fixture(scope="module")
def corpus(tokenizer_dir, tmp_path_factory):
    rng = random.Random(7)
    train = [random_documents(rng, 40), random_documents(rng, 40)]
    train[0][3] = [[rng.randrange(5, 90) for _ in range(300)]]  # one sentence longer than max_seq_length
    validation = [random_documents(rng, 15)]
    tokens_dir = write_tokens(tmp_path_factory.mktemp("corpus") / "tokens", tokenizer_dir, {"train": train, "validation": validation})
    return tokens_dir, {"train": [d for s in train for d in s], "validation": validation[0]}


CONFIG = InstancesConfig(max_seq_length=64, dupe_factor=3, instances_per_shard=150, max_predictions_per_seq=10)


def test_instances_follow_the_contract_and_bert_invariants(corpus, tmp_path):
    tokens_dir, documents = corpus
    stats = build_instances(CONFIG, tokens_dir, tmp_path / "out")
    for split in ("train", "validation"):
        paths = sorted((tmp_path / "out" / split).glob("instances-*.arrow"))
        table = read_stream(paths[0])
        assert table.schema == pa.schema([
            ("input_ids", pa.list_(pa.uint16())), ("token_type_ids", pa.list_(pa.uint8())),
            ("masked_lm_positions", pa.list_(pa.uint16())), ("masked_lm_ids", pa.list_(pa.uint16())),
            ("next_sentence_label", pa.int8()),
        ])
        assert datasets.Dataset.from_file(str(paths[0])).num_rows == table.num_rows
        texts = [as_text([t for s in d for t in s]) for d in documents[split]]
        rows = read_instances(tmp_path / "out", split)
        for row in rows:
            check_instance(row, CONFIG, texts)
        assert stats[f"{split}_instances"] == len(rows) > 0
        assert stats[f"{split}_mean_length"] == pytest.approx(np.mean([len(r["input_ids"]) for r in rows]))
    assert stats["train_shards"] > 1


def test_whole_word_masking_masks_every_piece_of_a_word(corpus, tmp_path, tokenizer_dir):
    tokens_dir, _ = corpus
    vocab, _ = load_vocabulary(tokenizer_dir)
    build_instances(CONFIG, tokens_dir, tmp_path / "out")
    checked = 0
    for row in read_instances(tmp_path / "out", "train"):
        original = list(row["input_ids"])
        for position, label in zip(row["masked_lm_positions"], row["masked_lm_ids"]):
            original[position] = label
        masked = set(row["masked_lm_positions"])
        for p in range(2, len(original)):
            if vocab.is_continuation[original[p]] and original[p - 1] not in SPECIAL:
                assert (p in masked) == (p - 1 in masked)
                checked += p in masked
    assert checked > 20


def test_mask_and_nsp_proportions_on_a_larger_corpus(tokenizer_dir, tmp_path):
    rng = random.Random(3)
    tokens_dir = write_tokens(tmp_path / "tokens", tokenizer_dir, {"train": [random_documents(rng, 300)], "validation": [[]]})
    cfg = InstancesConfig(max_seq_length=64, dupe_factor=2, whole_word_mask=False)
    stats = build_instances(cfg, tokens_dir, tmp_path / "out")
    assert stats["train_instances"] > 1500
    assert stats["train_mask_token_fraction"] == pytest.approx(0.8, abs=0.02)
    # A random replacement that happens to draw the original id counts as kept (1 in 85 here).
    assert stats["train_random_fraction"] == pytest.approx(0.1 * 84 / 85, abs=0.015)
    assert stats["train_kept_fraction"] == pytest.approx(0.1 + 0.1 / 85, abs=0.015)
    assert stats["train_mask_rate"] == pytest.approx(0.15, abs=0.02)
    # One-sentence chunks are always random-next (as in Google BERT), so slightly above one half.
    assert 0.45 < stats["train_nsp_random_fraction"] < 0.62
    assert stats["validation_instances"] == 0 and stats["validation_shards"] == 1


def test_one_document_corpus_pairs_within_the_document(tokenizer_dir, tmp_path):
    rng = random.Random(5)
    document = random_documents(rng, 1, max_sentences=30)[0]
    document[5:5] = [[rng.randrange(5, 90) for _ in range(100)]]  # alone fills a chunk: the next sentence is B
    document.append([7, 8, 9])
    lone_sentence = [[10, 11, 12, 13]]
    tokens_dir = write_tokens(tmp_path / "tokens", tokenizer_dir, {"train": [[document]], "validation": [[lone_sentence]]})
    stats = build_instances(CONFIG, tokens_dir, tmp_path / "out")
    rows = read_instances(tmp_path / "out", "train")
    assert rows and all(row["next_sentence_label"] == 0 for row in rows)
    for row in rows:
        check_instance(row, CONFIG, [as_text([t for s in document for t in s])])
    assert stats["train_nsp_random_fraction"] == 0.0
    assert stats["validation_instances"] == 0  # a single one-sentence document has nothing to pair with


def test_empty_documents_and_sentences_are_skipped(tokenizer_dir, tmp_path):
    rng = random.Random(9)
    documents = random_documents(rng, 6)
    documents[1] = []
    documents[2] = [[], [20, 21], []]  # one non-empty sentence
    documents[4] = [[]]
    tokens_dir = write_tokens(tmp_path / "tokens", tokenizer_dir, {"train": [documents], "validation": [[]]})
    split = SplitDocuments(load_token_split(tokens_dir, "train"))
    assert len(split) == 4 and split.sentences(1) == [[20, 21]]
    stats = build_instances(CONFIG, tokens_dir, tmp_path / "out")
    texts = [as_text([t for s in d for t in s]) for d in documents if any(d)]
    for row in read_instances(tmp_path / "out", "train"):
        check_instance(row, CONFIG, texts)
    assert stats["train_instances"] > 0


def test_same_seed_gives_identical_shards_and_resume_reproduces_a_lost_shard(corpus, tmp_path):
    tokens_dir, _ = corpus
    first_stats = build_instances(CONFIG, tokens_dir, tmp_path / "a")
    build_instances(CONFIG, tokens_dir, tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.arrow"))
    snapshot = {p: (tmp_path / "a" / p).read_bytes() for p in files}
    assert {p: (tmp_path / "b" / p).read_bytes() for p in files} == snapshot

    lost = tmp_path / "a" / files[1]
    lost.unlink()
    lost.with_name(lost.name + ".tmp").write_bytes(b"half written")
    assert build_instances(CONFIG, tokens_dir, tmp_path / "a") == first_stats
    assert {p: (tmp_path / "a" / p).read_bytes() for p in files} == snapshot

    other_seed = build_instances(CONFIG.model_copy(update={"seed": 1}), tokens_dir, tmp_path / "c")
    assert (tmp_path / "c" / files[0]).read_bytes() != snapshot[files[0]]
    assert other_seed["train_instances"] > 0


def test_truncate_seq_pair_trims_the_longer_segment_to_contiguous_slices():
    rng = random.Random(0)
    a, b = list(range(100)), list(range(1000, 1010))
    trimmed_a, trimmed_b = truncate_seq_pair(a, b, 30, rng)
    assert len(trimmed_a) + len(trimmed_b) == 30 and trimmed_b == b
    assert trimmed_a == a[trimmed_a[0] : trimmed_a[0] + len(trimmed_a)]
    assert 0 < trimmed_a[0] and trimmed_a[-1] < 99  # trimmed at both ends
    assert truncate_seq_pair([1, 2], [3], 5, rng) == ([1, 2], [3])


def test_random_next_is_never_the_same_document(tokenizer_dir, tmp_path):
    documents = [[[10 + d, 50 + s] for s in range(4)] for d in range(2)]
    tokens_dir = write_tokens(tmp_path / "tokens", tokenizer_dir, {"train": [documents], "validation": [[]]})
    split = SplitDocuments(load_token_split(tokens_dir, "train"))
    vocab, _ = load_vocabulary(tokens_dir / "tokenizer")
    cfg = InstancesConfig(max_seq_length=8, random_next_prob=1.0, short_seq_prob=0.0)
    rng = random.Random(0)
    for _ in range(50):
        for instance in create_instances_from_document(split, 0, cfg, vocab, rng):
            original = list(instance.input_ids)
            for position, label in zip(instance.masked_lm_positions, instance.masked_lm_ids):
                original[position] = label
            segment_b = original[instance.segment_a_length + 2 : -1]
            assert instance.is_random_next and set(segment_b) <= {11, 50, 51, 52, 53}  # document 1, never 0


def test_config_rejects_bad_values():
    with pytest.raises(ValidationError) as error:
        InstancesConfig(max_seq_length=4, masked_lm_prob=0.0, dupe_factr=2)
    message = str(error.value)
    assert "max_seq_length" in message and "masked_lm_prob" in message and "dupe_factr" in message


def test_missing_token_shards_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="train/"):
        build_instances(InstancesConfig(), tmp_path / "nothing", tmp_path / "out")
