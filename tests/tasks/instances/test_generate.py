import random

import datasets
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tasks.instances.generate import InstancesConfig, UnitSpec, build_instances, make_unit_instances, unit_seeds
from tasks.instances.masking import masking_vocabulary
from tasks.instances.reference import ReferenceSettings, reference_unit_instances, truncate_seq_pair
from tasks.instances.token_index import build_split_index
from tasks.parallel import local_map
from tasks.tokens.shards import read_stream, token_shard_schema, write_stream_atomically
from tasks.tokens.tokenizer import save_tokenizer, train_wordpiece
from tests.tasks.piece_fixtures import Stopped, assert_rebuilt_as_clean, flip_bytes, stop_after

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


def write_tokens(tokens_dir, tokenizer_dir, splits, rows_per_batch=1024):
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
            write_stream_atomically(table, tokens_dir / split / f"tokens-{index:05d}.arrow", rows_per_batch)
    return tokens_dir


def random_documents(rng, count, vocab_size=90, max_sentences=12, max_len=40, low=5):
    return [
        [[rng.randrange(low, vocab_size) for _ in range(rng.randint(1, max_len))] for _ in range(rng.randint(1, max_sentences))]
        for _ in range(count)
    ]


def read_instances(out_dir, split):
    tables = [read_stream(p) for p in sorted((out_dir / split).glob("instances-*.arrow"))]
    return pa.concat_tables(tables).to_pylist() if tables else []


def unmasked(row):
    original = list(row["input_ids"])
    for position, label in zip(row["masked_lm_positions"], row["masked_lm_ids"]):
        original[position] = label
    return original


def as_text(ids):
    return "," + ",".join(map(str, ids)) + ","


def whole_words(ids, is_continuation):
    """Google's whole-word candidates: [CLS]/[SEP] skipped, a "##" piece joins the candidate before it."""
    words = []
    for i, token in enumerate(ids):
        if token in (CLS, SEP):
            continue
        if words and is_continuation[token]:
            words[-1].append(i)
        else:
            words.append([i])
    return words


def check_instance(row, cfg, documents_text, masked=True, vocab=None):
    ids, types = row["input_ids"], row["token_type_ids"]
    assert 5 <= len(ids) <= cfg.max_seq_length and len(types) == len(ids)
    first_sep = types.index(1) - 1
    assert ids[0] == CLS and ids[first_sep] == SEP and ids[-1] == SEP
    assert ids.count(CLS) == 1 and ids.count(SEP) == 2 and types == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)
    positions = row["masked_lm_positions"]
    assert positions == sorted(set(positions)) and len(positions) == len(row["masked_lm_ids"])
    if not masked:
        assert not positions
    elif positions:
        assert len(positions) <= cfg.max_predictions_per_seq
    else:  # faithful to Google: whole-word masking skips every word longer than the number to predict
        assert cfg.whole_word_mask and vocab is not None
        wanted = min(cfg.max_predictions_per_seq, max(1, round(len(ids) * cfg.masked_lm_prob)))
        assert all(len(word) > wanted for word in whole_words(ids, vocab.is_continuation))
    assert not {0, first_sep, len(ids) - 1} & set(positions)
    assert not SPECIAL & set(row["masked_lm_ids"])
    assert all(ids[p] == MASK or ids[p] not in SPECIAL for p in positions)
    original = unmasked(row)
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


def document_texts(documents):
    return [as_text([t for s in d for t in s]) for d in documents]


@pytest.fixture(scope="module")
def corpus(tokenizer_dir, tmp_path_factory):
    rng = random.Random(7)
    train = [random_documents(rng, 40), random_documents(rng, 40)]
    train[0][3] = [[rng.randrange(5, 90) for _ in range(300)]]  # one sentence longer than max_seq_length
    validation = [random_documents(rng, 15)]
    tokens_dir = write_tokens(tmp_path_factory.mktemp("corpus") / "tokens", tokenizer_dir,
                              {"train": train, "validation": validation}, rows_per_batch=16)
    return tokens_dir, {"train": [d for s in train for d in s], "validation": validation[0]}


CONFIG = InstancesConfig(max_seq_length=64, dupe_factor=3, instances_per_shard=150, max_predictions_per_seq=10)


def shard_bytes(out_dir):
    return {p.relative_to(out_dir): p.read_bytes() for p in sorted(out_dir.rglob("*.arrow"))}


def test_instances_follow_the_contract_and_bert_invariants(corpus, tmp_path):
    tokens_dir, documents = corpus
    vocab = masking_vocabulary(tokens_dir / "tokenizer")
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
        rows = read_instances(tmp_path / "out", split)
        for row in rows:
            check_instance(row, CONFIG, document_texts(documents[split]), vocab=vocab)
        assert stats[f"{split}_instances"] == len(rows) > 0
        assert stats[f"{split}_mean_length"] == pytest.approx(np.mean([len(r["input_ids"]) for r in rows]))
        histogram = [value for key, value in stats.items() if key.startswith(f"{split}_length_")]
        assert len(histogram) == 8 and sum(histogram) == len(rows)
    assert stats["train_shards"] > 1
    assert not (tmp_path / "out" / "_token_index").exists()  # scratch index removed


def test_whole_word_masking_masks_every_piece_of_a_word(corpus, tmp_path, tokenizer_dir):
    tokens_dir, _ = corpus
    vocab = masking_vocabulary(tokenizer_dir)
    build_instances(CONFIG, tokens_dir, tmp_path / "out")
    checked = 0
    for row in read_instances(tmp_path / "out", "train"):
        original = unmasked(row)
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
    assert 0.45 < stats["train_label_1_fraction"] < 0.62
    assert stats["validation_instances"] == 0 and stats["validation_shards"] == 1


def test_one_document_corpus_pairs_within_the_document(tokenizer_dir, tmp_path, caplog):
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
        check_instance(row, CONFIG, document_texts([document]), vocab=masking_vocabulary(tokenizer_dir))
    assert stats["train_label_1_fraction"] == 0.0
    assert stats["validation_instances"] == 0  # a single one-sentence document has nothing to pair with
    warnings = [r.getMessage() for r in caplog.records
                if r.levelname == "WARNING" and r.name == "tasks.instances.generate"]
    assert len(warnings) == 1 and "validation split has 1 documents but gave 0 instances" in warnings[0]
    assert "1 of them have one sentence each" in warnings[0]


def test_train_split_of_one_sentence_documents_fails_clearly_under_sop(tokenizer_dir, tmp_path):
    rng = random.Random(13)
    one_sentence_documents = [[sentence] for sentence in random_documents(rng, 1, max_sentences=1)[0] * 8]
    tokens_dir = write_tokens(tmp_path / "tokens", tokenizer_dir,
                              {"train": [one_sentence_documents], "validation": [random_documents(rng, 4)]})
    with pytest.raises(ValueError) as error:
        build_instances(InstancesConfig(objective="sop", dupe_factor=1), tokens_dir, tmp_path / "out")
    message = str(error.value)
    assert "train split has 8 documents but gave 0 instances with objective='sop'" in message
    assert "8 of them have one sentence each" in message and "sentence splitting" in message
    assert "objective='mlm'" in message
    assert not (tmp_path / "out" / "_token_index").exists()


def test_empty_documents_and_blank_sentences_are_skipped(tokenizer_dir, tmp_path):
    rng = random.Random(9)
    documents = random_documents(rng, 6)
    documents[1] = []
    documents[2] = [[], [20, 21], []]  # one non-empty sentence
    documents[4] = [[]]
    tokens_dir = write_tokens(tmp_path / "tokens", tokenizer_dir, {"train": [documents], "validation": [[]]}, rows_per_batch=2)
    arrays = build_split_index(tokens_dir, "train", tmp_path / "index", np.zeros(90, bool))
    assert arrays.num_documents == 4 and np.diff(arrays.document_offsets).tolist()[1] == 1
    assert arrays.ids[arrays.sentence_offsets[arrays.document_offsets[1]] :][:2].tolist() == [20, 21]
    stats = build_instances(CONFIG, tokens_dir, tmp_path / "out")
    for row in read_instances(tmp_path / "out", "train"):
        check_instance(row, CONFIG, document_texts([d for d in documents if any(d)]), vocab=masking_vocabulary(tokenizer_dir))
    assert stats["train_instances"] > 0


def test_random_next_comes_from_other_shards_never_the_same_document(tokenizer_dir, tmp_path):
    # Shard 0's documents use ids 5..44, shard 1's 45..89: units cover one shard's documents each.
    rng = random.Random(11)
    shards = [random_documents(rng, 20, vocab_size=45), random_documents(rng, 20, low=45)]
    tokens_dir = write_tokens(tmp_path / "tokens", tokenizer_dir, {"train": shards, "validation": [[]]})
    cfg = InstancesConfig(max_seq_length=64, dupe_factor=1, random_next_prob=1.0, instances_per_shard=40,
                          masking="dynamic")
    build_instances(cfg, tokens_dir, tmp_path / "out")
    texts = document_texts(shards[0] + shards[1])
    crossing = 0
    for row in read_instances(tmp_path / "out", "train"):
        first_sep = row["token_type_ids"].index(1) - 1
        a, b = row["input_ids"][1:first_sep], row["input_ids"][first_sep + 1 : -1]
        assert row["next_sentence_label"] == 1
        assert not any(as_text(a) in text and as_text(b) in text for text in texts)  # never its own document
        crossing += (max(a) < 45) != (max(b) < 45)
    assert crossing > 20


def test_same_seed_gives_identical_bytes_for_any_worker_count_and_resume(corpus, tmp_path):
    tokens_dir, _ = corpus
    first_stats = build_instances(CONFIG, tokens_dir, tmp_path / "a")
    two_workers = build_instances(CONFIG, tokens_dir, tmp_path / "b", map_shards=local_map(2))
    snapshot = shard_bytes(tmp_path / "a")
    assert len(snapshot) > 2 and shard_bytes(tmp_path / "b") == snapshot and two_workers == first_stats

    files = sorted(snapshot)
    lost = tmp_path / "a" / files[1]
    lost.unlink()
    lost.with_name(lost.name + ".tmp").write_bytes(b"half written")
    assert build_instances(CONFIG, tokens_dir, tmp_path / "a") == first_stats
    assert shard_bytes(tmp_path / "a") == snapshot

    other_seed = build_instances(CONFIG.model_copy(update={"seed": 1}), tokens_dir, tmp_path / "c")
    assert (tmp_path / "c" / files[0]).read_bytes() != snapshot[files[0]]
    assert other_seed["train_instances"] > 0


def test_a_damaged_instance_shard_is_made_again(corpus, tmp_path, caplog):
    tokens_dir, _ = corpus
    clean = build_instances(CONFIG, tokens_dir, tmp_path / "clean")
    out = tmp_path / "out"
    with pytest.raises(Stopped):  # killed with every shard written, before the end
        build_instances(CONFIG, tokens_dir, out, run_step=stop_after("generate validation instances"))
    damaged = out / "train" / "instances-00001.arrow"
    flip_bytes(damaged)

    assert build_instances(CONFIG, tokens_dir, out) == clean
    assert shard_bytes(out) == shard_bytes(tmp_path / "clean")
    assert_rebuilt_as_clean(caplog, damaged, out, tmp_path / "clean")


def test_dupe_passes_mask_differently(corpus, tmp_path):
    tokens_dir, _ = corpus
    build_instances(CONFIG.model_copy(update={"short_seq_prob": 0.0}), tokens_dir, tmp_path / "out")
    by_text: dict[tuple, set] = {}
    for row in read_instances(tmp_path / "out", "train"):
        by_text.setdefault(tuple(unmasked(row)), set()).add(tuple(row["masked_lm_positions"]))
    repeated = [masks for masks in by_text.values() if len(masks) > 1]
    assert len(repeated) > 10  # the same pair made in two passes got different masks


def test_sentence_order_prediction_swaps_half_of_the_pairs(tokenizer_dir, tmp_path):
    rng = random.Random(13)
    documents = [[[rng.randrange(5, 90) for _ in range(rng.randint(3, 20))] for _ in range(rng.randint(2, 10))]
                 for _ in range(60)]
    tokens_dir = write_tokens(tmp_path / "tokens", tokenizer_dir, {"train": [documents], "validation": [[]]})
    cfg = InstancesConfig(objective="sop", max_seq_length=64, dupe_factor=4, masking="dynamic")
    stats = build_instances(cfg, tokens_dir, tmp_path / "out")
    texts = document_texts(documents)
    checked = 0
    for row in read_instances(tmp_path / "out", "train"):
        first_sep = row["token_type_ids"].index(1) - 1
        a, b = row["input_ids"][1:first_sep], row["input_ids"][first_sep + 1 : -1]
        if min(len(a), len(b)) < 3:
            continue  # too short to place unambiguously
        first, second = (b, a) if row["next_sentence_label"] == 1 else (a, b)
        # both from one document, in document order once a swapped pair is swapped back
        assert any(as_text(first) in t and as_text(second) in t[t.index(as_text(first)) + 1 :] for t in texts)
        checked += 1
    assert checked > 250
    assert 0.4 < stats["train_label_1_fraction"] < 0.6


def test_mlm_packing_keeps_every_token_in_order(corpus, tokenizer_dir, tmp_path):
    tokens_dir, documents = corpus
    cfg = InstancesConfig(objective="mlm", max_seq_length=64, dupe_factor=1, instances_per_shard=10_000)
    stats = build_instances(cfg, tokens_dir, tmp_path / "out")
    vocab = masking_vocabulary(tokenizer_dir)
    spec = UnitSpec(cfg, vocab, CLS, SEP, tmp_path / "index", "train", 0, 0, 80, tmp_path / "unused.arrow", 0)
    build_split_index(tokens_dir, "train", tmp_path / "index", vocab.is_continuation)
    arrays = make_unit_instances(spec)  # unshuffled
    ids, offsets = arrays["input_ids"].copy(), arrays["instance_offsets"]
    for k in range(len(offsets) - 1):
        span = slice(arrays["mask_offsets"][k], arrays["mask_offsets"][k + 1])
        ids[offsets[k] + arrays["masked_lm_positions"][span].astype(np.int64)] = arrays["masked_lm_ids"][span]
    assert ids[offsets[:-1]].tolist() == [CLS] * (len(offsets) - 1) and ids[offsets[1:] - 1].tolist() == [SEP] * (len(offsets) - 1)
    assert np.diff(offsets).max() <= 64
    text = [int(t) for t in ids if t != CLS]  # documents in order, [SEP] between documents and instances
    expected = [t for d in documents["train"] for t in [*(t for s in d for t in s), SEP]]
    assert [t for t in text if t != SEP] == [t for t in expected if t != SEP]
    rows = read_instances(tmp_path / "out", "train")
    assert all(row["next_sentence_label"] == -100 and set(row["token_type_ids"]) == {0} for row in rows)
    assert stats["train_instances"] == len(rows) == len(offsets) - 1
    assert stats["train_mean_length"] > 45  # whole sentences (1-40 tokens) packed into 62-token slots


def test_dynamic_masking_writes_unmasked_instances(corpus, tmp_path):
    tokens_dir, documents = corpus
    cfg = CONFIG.model_copy(update={"masking": "dynamic"})
    stats = build_instances(cfg, tokens_dir, tmp_path / "out")
    rows = read_instances(tmp_path / "out", "train")
    assert rows and all(not row["masked_lm_positions"] and not row["masked_lm_ids"] for row in rows)
    assert MASK not in {t for row in rows for t in row["input_ids"]}
    for row in rows[:50]:
        check_instance(row, cfg, document_texts(documents["train"]), masked=False)
    assert stats["train_mask_rate"] == 0.0


def test_truncate_seq_pair_trims_the_longer_segment_at_either_end():
    rng = np.random.default_rng(0)
    a, b = list(range(100)), list(range(1000, 1010))
    trimmed_a, trimmed_b = truncate_seq_pair(a, b, 30, rng)
    assert len(trimmed_a) + len(trimmed_b) == 30 and trimmed_b == b
    assert trimmed_a == a[trimmed_a[0] : trimmed_a[0] + len(trimmed_a)]
    assert 0 < trimmed_a[0] and trimmed_a[-1] < 99  # trimmed at both ends
    assert truncate_seq_pair([1, 2], [3], 5, rng) == ([1, 2], [3])


def _kernel_rows(arrays):
    offsets, mask_offsets = arrays["instance_offsets"], arrays["mask_offsets"]
    return [
        (arrays["input_ids"][offsets[k] : offsets[k + 1]].tolist(), int(arrays["type_zero_lengths"][k]),
         arrays["masked_lm_positions"][mask_offsets[k] : mask_offsets[k + 1]].tolist(),
         arrays["masked_lm_ids"][mask_offsets[k] : mask_offsets[k + 1]].tolist(), int(arrays["labels"][k]))
        for k in range(len(offsets) - 1)
    ]


documents_strategy = st.lists(  # documents of sentences of ids; empty ones included on purpose
    st.lists(st.lists(st.integers(5, 89), max_size=45), max_size=8), min_size=1, max_size=12
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    documents=documents_strategy,
    objective=st.sampled_from(["nsp", "sop", "mlm"]),
    static=st.booleans(),
    whole_word=st.booleans(),
    max_seq_length=st.integers(8, 70),
    short_seq_prob=st.sampled_from([0.0, 0.1, 0.7]),
    max_predictions=st.integers(1, 20),
    dupe_factor=st.integers(1, 3),
    seed=st.integers(0, 2**32),
    data=st.data(),
)
def test_kernel_equals_the_plain_python_reference(tokenizer_dir, tmp_path_factory, documents, objective, static,
                                                  whole_word, max_seq_length, short_seq_prob, max_predictions,
                                                  dupe_factor, seed, data):
    """Equivalence with the obviously correct reference, defined exactly: both implementations draw
    every random decision as one `Generator.random()` double, in the same order, so for the same seed
    they must produce identical instances (ids, token types, masked positions and labels, NSP label),
    in the same order. Hypothesis varies the documents (empty documents and sentences, sentences
    longer than a sequence, one-document splits), the objective, masking, lengths and seeds."""
    tmp = tmp_path_factory.mktemp("equivalence")
    tokens_dir = write_tokens(tmp / "tokens", tokenizer_dir, {"train": [documents]}, rows_per_batch=3)
    vocab = masking_vocabulary(tokenizer_dir)
    build_split_index(tokens_dir, "train", tmp / "index", vocab.is_continuation)
    kept = [d for d in ([s for s in doc if s] for doc in documents) if d]
    if not kept:
        return
    first = data.draw(st.integers(0, len(kept) - 1))
    last = data.draw(st.integers(first + 1, len(kept)))
    cfg = InstancesConfig(objective=objective, masking="static" if static else "dynamic", whole_word_mask=whole_word,
                          max_seq_length=max_seq_length, short_seq_prob=short_seq_prob, dupe_factor=1 if objective == "mlm" and not static else dupe_factor,
                          max_predictions_per_seq=max_predictions, seed=seed)
    spec = UnitSpec(cfg, vocab, CLS, SEP, tmp / "index", "train", 3, first, last, tmp / "unused.arrow", 0)
    settings_ = ReferenceSettings(objective, static, max_seq_length, short_seq_prob, cfg.random_next_prob,
                                  cfg.masked_lm_prob, max_predictions, whole_word, CLS, SEP)
    continues = [[vocab.is_continuation[np.array(s)].tolist() for s in doc] for doc in kept]
    expected = []
    for pass_seed in unit_seeds(seed, "train", 3, cfg.dupe_factor)[:-1]:
        instances = reference_unit_instances(kept, continues, first, last, settings_, vocab, np.random.default_rng(pass_seed))
        expected += [(x.input_ids, x.type_zero_length, x.masked_lm_positions, x.masked_lm_ids, x.next_sentence_label)
                     for x in instances]
    assert _kernel_rows(make_unit_instances(spec)) == expected


def test_config_rejects_bad_values_and_combinations():
    with pytest.raises(ValidationError) as error:
        InstancesConfig(max_seq_length=4, masked_lm_prob=0.0, dupe_factr=2)
    message = str(error.value)
    assert "max_seq_length" in message and "masked_lm_prob" in message and "dupe_factr" in message
    with pytest.raises(ValidationError, match="identical copies"):
        InstancesConfig(objective="mlm", masking="dynamic", dupe_factor=2)
    with pytest.raises(ValidationError) as error:
        InstancesConfig(chinese_word_segmentation=True, whole_word_mask=False, masking="dynamic")
    assert "whole_word_mask=true" in str(error.value) and "masking='static'" in str(error.value)
    with pytest.raises(ValidationError, match="objective"):
        InstancesConfig(objective="nsp+sop")


def test_missing_token_shards_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="train/"):
        build_instances(InstancesConfig(), tmp_path / "nothing", tmp_path / "out")


def test_missing_jieba_fails_at_config_time(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "jieba" else find_spec(name, *args))
    with pytest.raises(ValidationError, match=r"pip install 'pretrainflow\[chinese\]'"):
        InstancesConfig(chinese_word_segmentation=True)
    assert InstancesConfig().chinese_word_segmentation is False
