import collections
import datetime
import hashlib
import random

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from tasks.parallel import local_map
from tasks.tokens.coverage import unk_rate_warning
from tasks.tokens.sentences import split_document
from tasks.tokens.shards import (
    TokenizeConfig,
    build_token_shards,
    read_stream,
    read_token_documents,
    reuse_stream,
    shard_paths,
    split_of,
    token_dtype,
    token_shard_schema,
)
from tasks.tokens.tokenizer import load_tokenizer, train_wordpiece
from tests.tasks.piece_fixtures import Stopped, assert_rebuilt_as_clean, flip_bytes, stop_after, warnings_of
from tests.tasks.tokens.chinese_text import chinese_sentences

WORDS = "the a python function returns value class method module import string list dict loop error".split()
SNAPSHOT_SCHEMA = pa.schema([
    ("id", pa.string()), ("url", pa.string()), ("source", pa.string()), ("title", pa.string()),
    ("text", pa.string()), ("fetched_at", pa.timestamp("us", tz="UTC")), ("content_hash", pa.string()),
])


def make_text(rng: random.Random, paragraphs: int) -> str:
    lines = []
    for _ in range(paragraphs):
        sentences = [" ".join(rng.choices(WORDS, k=rng.randint(3, 12))).capitalize() + "." for _ in range(rng.randint(1, 4))]
        lines.append(" ".join(sentences))
    return "\n\n".join(lines)


def write_snapshot(directory, texts, rows_per_file=7):
    """A corpus snapshot per the data contract, from inline texts."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    rows = []
    for number, text in enumerate(texts):
        digest = hashlib.sha256(text.encode()).hexdigest()
        rows.append({"id": digest, "url": f"file:///doc{number}.txt", "source": "local", "title": None,
                     "text": text, "fetched_at": now, "content_hash": digest})
    for start in range(0, len(rows), rows_per_file):
        table = pa.Table.from_pylist(rows[start : start + rows_per_file], schema=SNAPSHOT_SCHEMA)
        pq.write_table(table, directory / f"documents-{start // rows_per_file:05d}.parquet")
    return rows


@pytest.fixture()
def snapshot(tmp_path):
    rng = random.Random(0)
    texts = [make_text(rng, rng.randint(1, 5)) + f"\nDocument number {i}." for i in range(40)]
    texts += ["", "  \n \n", "Spells [SEP] and [MASK] literally. 中文句子。第二句！"]
    return tmp_path / "snapshot", write_snapshot(tmp_path / "snapshot", texts)


CONFIG = TokenizeConfig(vocab_size=120, min_frequency=1, validation_fraction=0.3, documents_per_shard=6, batch_size=4)


def shard_bytes(out_dir):
    return {p.relative_to(out_dir): p.read_bytes() for split in ("train", "validation") for p in shard_paths(out_dir, split)}


def test_shards_follow_the_contract(snapshot, tmp_path):
    snapshot_dir, rows = snapshot
    out = tmp_path / "tokens"
    stats = build_token_shards(CONFIG, snapshot_dir, out)

    tokenizer = load_tokenizer(out / "tokenizer")
    seen = {}
    for split in ("train", "validation"):
        paths = shard_paths(out, split)
        assert paths and [p.name for p in paths] == [f"tokens-{i:05d}.arrow" for i in range(len(paths))]
        for path in paths:
            table = read_stream(path)
            assert table.schema.field("doc_id").type == pa.string()
            assert table.schema.field("sentences").type == pa.list_(pa.list_(pa.uint16()))
            assert datasets.Dataset.from_file(str(path)).num_rows == table.num_rows
            for doc_id, sentences in zip(table.column("doc_id").to_pylist(), table.column("sentences").to_pylist()):
                assert doc_id not in seen
                seen[doc_id] = (split, sentences)

    by_id = {row["id"]: row for row in rows}
    assert set(seen) == {row["id"] for row in rows if split_document(row["text"])}  # empty documents dropped
    for doc_id, (split, sentences) in seen.items():
        row = by_id[doc_id]
        assert split == split_of(row["content_hash"], CONFIG.validation_fraction)
        assert all(sentences) and not any(i in (0, 2, 3, 4) for s in sentences for i in s)
        if "[MASK]" not in row["text"]:
            expected = [tokenizer.encode(s, add_special_tokens=False).ids for s in split_document(row["text"])]
            assert sentences == expected

    assert stats["train_documents"] + stats["validation_documents"] == len(seen) == stats["documents"]
    assert stats["train_empty_documents"] + stats["validation_empty_documents"] == 2
    assert stats["validation_documents"] > 0 and stats["train_shards"] > 1
    assert stats["tokens"] == sum(len(s) for _, sents in seen.values() for s in sents)
    assert stats["vocab_size"] == tokenizer.get_vocab_size() <= CONFIG.vocab_size
    assert 0 < stats["vocab_character_tokens"] < stats["vocab_size"]
    assert 0 <= stats["unk_rate"] < 0.2


def test_literal_special_token_text_is_not_a_special_id(snapshot, tmp_path):
    snapshot_dir, rows = snapshot
    build_token_shards(CONFIG, snapshot_dir, tmp_path / "tokens")
    documents = {d: s for split in ("train", "validation") for d, s in zip(
        *(lambda t: (t.column("doc_id").to_pylist(), t.column("sentences").to_pylist()))(
            pa.concat_tables([read_stream(p) for p in shard_paths(tmp_path / "tokens", split)])))}
    literal = next(row["id"] for row in rows if "[MASK]" in row["text"])
    assert len(documents[literal]) == 3  # one English sentence, two CJK sentences
    assert not {2, 3, 4} & {i for s in documents[literal] for i in s}


def test_rerun_and_resume_reproduce_identical_shards(snapshot, tmp_path):
    snapshot_dir, _ = snapshot
    out = tmp_path / "tokens"
    stats = build_token_shards(CONFIG, snapshot_dir, out)
    first = shard_bytes(out)
    tokenizer_mtime = (out / "tokenizer" / "tokenizer.json").stat().st_mtime_ns

    removed = shard_paths(out, "train")[1]
    removed.unlink()
    (out / "train" / "tokens-00002.arrow.tmp").write_bytes(b"partial write of a killed attempt")
    assert build_token_shards(CONFIG, snapshot_dir, out) == stats
    assert shard_bytes(out) == first
    assert (out / "tokenizer" / "tokenizer.json").stat().st_mtime_ns == tokenizer_mtime  # reused, not retrained

    # A fresh run retrains the tokenizer, and tokenizers' WordPiece trainer breaks count ties in hash-map
    # order (huggingface/tokenizers#1794), so ids may differ; documents, splits and sentences may not.
    other = tmp_path / "again"
    again = build_token_shards(CONFIG, snapshot_dir, other)
    for split in ("train", "validation"):
        assert [[len(d) for d in read_token_documents(other, split)]] == [[len(d) for d in read_token_documents(out, split)]]
        assert again[f"{split}_documents"] == stats[f"{split}_documents"]
        assert again[f"{split}_sentences"] == stats[f"{split}_sentences"]


def test_a_damaged_token_shard_is_encoded_again(snapshot, tmp_path, caplog):
    snapshot_dir, _ = snapshot
    clean = build_token_shards(CONFIG, snapshot_dir, tmp_path / "clean")
    # the same tokenizer: a retrained one may break count ties otherwise (see the test above)
    cfg = CONFIG.model_copy(update={"tokenizer_path": tmp_path / "clean" / "tokenizer"})
    out = tmp_path / "tokens"
    with pytest.raises(Stopped):
        build_token_shards(cfg, snapshot_dir, out, run_step=stop_after("encode shards"))  # killed before the end
    damaged = shard_paths(out, "train")[1]
    flip_bytes(damaged)

    assert build_token_shards(cfg, snapshot_dir, out) == clean
    assert shard_bytes(out) == shard_bytes(tmp_path / "clean")
    assert_rebuilt_as_clean(caplog, damaged, out, tmp_path / "clean")


def test_an_unreadable_shard_written_without_a_record_is_written_again(tmp_path, caplog):
    older = tmp_path / "train" / "tokens-00000.arrow"  # as older code left it: no checksum sidecar
    older.parent.mkdir()
    older.write_bytes(b"not an Arrow stream")
    assert reuse_stream(older) is None and not older.exists()
    [warning] = warnings_of(caplog)
    assert str(older) in warning and "cannot be read (ArrowInvalid" in warning and "\n" not in warning


def test_parallel_build_writes_identical_shards(snapshot, tmp_path):
    snapshot_dir, _ = snapshot
    serial = build_token_shards(CONFIG, snapshot_dir, tmp_path / "serial")
    cfg = CONFIG.model_copy(update={"tokenizer_path": tmp_path / "serial" / "tokenizer"})
    parallel = build_token_shards(cfg, snapshot_dir, tmp_path / "parallel", map_shards=local_map(2))
    assert shard_bytes(tmp_path / "parallel") == shard_bytes(tmp_path / "serial")
    assert parallel == serial


def test_given_tokenizer_is_copied_not_retrained(snapshot, tmp_path):
    snapshot_dir, _ = snapshot
    build_token_shards(CONFIG, snapshot_dir, tmp_path / "first")
    cfg = CONFIG.model_copy(update={"tokenizer_path": tmp_path / "first" / "tokenizer", "vocab_size": 5000})
    stats = build_token_shards(cfg, snapshot_dir, tmp_path / "second")
    assert stats["vocab_size"] == load_tokenizer(tmp_path / "first" / "tokenizer").get_vocab_size()
    assert shard_bytes(tmp_path / "second") == shard_bytes(tmp_path / "first")


def test_split_is_by_content_hash():
    assert split_of("0" * 64, 0.05) == "validation"
    assert split_of("f" * 64, 0.05) == "train"
    assert split_of("0" * 64, 0.0) == "train"
    with pytest.raises(ValueError, match="not a hex digest"):
        split_of("not-a-hash", 0.05)


def test_token_dtype_is_smallest_that_fits():
    assert token_dtype(16000) == pa.uint16() and token_dtype(65536) == pa.uint16()
    assert token_dtype(65537) == pa.uint32()


def test_config_rejects_bad_values(tmp_path):
    with pytest.raises(ValidationError) as error:
        TokenizeConfig(tokenizer_path=tmp_path / "missing", validation_fraction=1.5, vocab_sise=10)
    message = str(error.value)
    assert "missing" in message and "validation_fraction" in message and "vocab_sise" in message


def test_missing_snapshot_fails_before_work(tmp_path):
    with pytest.raises(FileNotFoundError, match="documents-"):
        build_token_shards(CONFIG, tmp_path / "nothing", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_documents_encoded_at_once_equal_sentence_by_sentence(snapshot, tmp_path):
    from tasks.tokens.shards import _EncodedDocuments, encode_documents, token_shard_schema

    snapshot_dir, _ = snapshot
    build_token_shards(CONFIG, snapshot_dir, tmp_path / "tokens")
    tokenizer = load_tokenizer(tmp_path / "tokens" / "tokenizer")
    texts = ["Café résumé NAÏVE déjà-vu. Second sentence!\nA new paragraph  with   spaces.",
             "中文字符被单独切分。第二句！", "control\x00chars\u200band\ttabs. Next one.", "\u200b\u200b. Real words.",
             "emoji 🙂 ∑ symbols. a" + "b" * 150 + ".", "", "lowercase [sep] and [cls] are text."]
    for batch in (texts, texts + ["Spells [MASK] literally. Then [SEP]."]):  # the second mixes both paths
        encoded = _EncodedDocuments()
        encode_documents(tokenizer, [str(i) for i in range(len(batch))], batch, encoded)
        table = encoded.to_table(token_shard_schema(tokenizer.get_vocab_size()))
        tokenizer.encode_special_tokens = True
        expected = [[ids for s in split_document(t) if (ids := tokenizer.encode(s, add_special_tokens=False).ids)]
                    for t in batch]
        tokenizer.encode_special_tokens = False
        assert table.column("sentences").to_pylist() == [d for d in expected if d]
        assert table.column("doc_id").to_pylist() == [str(i) for i, d in enumerate(expected) if d]


def test_config_rejects_a_tokenizer_folder_transformers_reads_differently(tmp_path):
    tokenizer = train_wordpiece(["Hello World hello world"] * 5, vocab_size=100, min_frequency=1, lowercase=True,
                                strip_accents=None, limit_alphabet=100)
    (tmp_path / "only_json").mkdir()
    tokenizer.save(str(tmp_path / "only_json" / "tokenizer.json"))
    with pytest.raises(ValidationError, match="AutoTokenizer loads tokenizer folder .* with special token ids"):
        TokenizeConfig(tokenizer_path=tmp_path / "only_json")


def test_document_ids_do_not_depend_on_batch_neighbours_with_extra_special_tokens(tmp_path):
    from tasks.tokens.shards import _EncodedDocuments, encode_documents

    tokenizer = train_wordpiece(["end of sentence eos marker here words"] * 5, vocab_size=100, min_frequency=1,
                                lowercase=True, strip_accents=None, limit_alphabet=100)
    tokenizer.add_special_tokens(["[EOS]"])  # a given tokenizer with one more special token
    (tmp_path / "eos").mkdir()
    tokenizer.save(str(tmp_path / "eos" / "tokenizer.json"))
    tokenizer = load_tokenizer(tmp_path / "eos")
    document, spells_mask = "words here [EOS] end. Next words.", "another document that spells [MASK]."

    def documents(batch):
        encoded = _EncodedDocuments()
        encode_documents(tokenizer, [str(i) for i in range(len(batch))], batch, encoded)
        return encoded.to_table(token_shard_schema(tokenizer.get_vocab_size())).column("sentences").to_pylist()

    alone = documents([document, "plain other document."])[0]
    assert tokenizer.token_to_id("[EOS]") in alone[0] and len(alone) == 2
    mask_alone = documents([spells_mask])[0]
    assert documents([document, spells_mask]) == [alone, mask_alone]
    assert documents([spells_mask, document, spells_mask, "plain."]) == [mask_alone, alone, mask_alone,
                                                                          documents(["plain."])[0]]
    assert tokenizer.encode_special_tokens is False


ZH_CONFIG = TokenizeConfig(vocab_size=2000, validation_fraction=0.2, documents_per_shard=20)


@pytest.fixture()
def chinese_snapshot(tmp_path):
    """150 documents of 8 Chinese sentences each; one train document also holds 3 characters seen nowhere else."""
    sentences = chinese_sentences(1200, seed=1)
    texts = ["".join(sentences[i : i + 8]) for i in range(0, len(sentences), 8)]
    rare = "龘靐齉。"
    with_rare = next(i for i, text in enumerate(texts) if split_of(
        hashlib.sha256((text + rare).encode()).hexdigest(), ZH_CONFIG.validation_fraction) == "train")
    texts[with_rare] += rare
    return tmp_path / "zh-snapshot", write_snapshot(tmp_path / "zh-snapshot", texts)


def test_chinese_text_is_covered_and_the_left_out_characters_are_reported(chinese_snapshot, tmp_path, caplog):
    snapshot_dir, rows = chinese_snapshot
    caplog.set_level("INFO", logger="tasks.tokens.shards")
    stats = build_token_shards(ZH_CONFIG, snapshot_dir, tmp_path / "tokens")
    in_train = [split_of(row["content_hash"], ZH_CONFIG.validation_fraction) == "train" for row in rows]
    counts = collections.Counter("".join(row["text"] for row, train in zip(rows, in_train) if train))
    assert counts["龘"] == counts["靐"] == counts["齉"] == 1
    assert stats["alphabet_seen"] == len(counts) > 400
    assert stats["alphabet_left_out"] == sum(count < 2 for count in counts.values()) >= 3  # 龘靐齉 among them
    left_out = sum(count for count in counts.values() if count < 2)
    assert stats["alphabet_left_out_share"] == pytest.approx(left_out / sum(counts.values()))
    assert stats["train_unk_tokens"] == left_out  # one character, one token: each left-out one is one [UNK]
    assert stats["train_unk_rate"] == pytest.approx(left_out / stats["train_tokens"])
    assert stats["train_unk_rate"] < 0.01
    assert stats["validation_tokens"] > 0 and stats["validation_unk_rate"] < 0.01
    assert not warnings_of(caplog)
    assert any(f"{stats['alphabet_left_out']} of them without a token" in r.getMessage() for r in caplog.records)


def test_a_high_unk_rate_is_warned_about_with_its_cause(chinese_snapshot, tmp_path, caplog):
    snapshot_dir, _ = chinese_snapshot
    capped = ZH_CONFIG.model_copy(update={"limit_alphabet": 100})  # the old fixed cut, scaled down
    stats = build_token_shards(capped, snapshot_dir, tmp_path / "tokens")
    assert stats["validation_unk_rate"] > 0.1 and stats["alphabet_left_out"] == stats["alphabet_seen"] - 100
    [warning] = warnings_of(caplog)
    assert f"{stats['validation_unk_rate']:.2%} of the validation split's tokens" in warning
    assert f"{stats['alphabet_left_out']:,} of the {stats['alphabet_seen']:,} distinct characters" in warning
    assert "tokenize.limit_alphabet (100)" in warning and "tokenize.alphabet_min_frequency (2)" in warning


def _unk_stats(train: float, validation: float, left_out_share: float) -> dict:
    return {"train_unk_rate": train, "validation_unk_rate": validation, "alphabet_seen": 500,
            "alphabet_left_out": 40, "alphabet_left_out_share": left_out_share}


def test_unk_rate_warning_names_the_likely_cause(tmp_path):
    assert unk_rate_warning(_unk_stats(0.01, 0.009, 0.01), CONFIG) is None  # at most 1%: no warning
    alphabet = unk_rate_warning(_unk_stats(0.15, 0.16, 0.14), CONFIG)
    assert alphabet.startswith("[UNK] is 15.00% of the train split's tokens and 16.00% of the validation split's")
    assert "40 of the 500 distinct characters" in alphabet and "alphabet_min_frequency (2)" in alphabet
    assert "limit_alphabet" not in alphabet  # not set: nothing to raise
    floor_of_one = unk_rate_warning(_unk_stats(0.15, 0.16, 0.14), CONFIG.model_copy(update={"alphabet_min_frequency": 1}))
    assert "lower" not in floor_of_one and "check the corpus text" in floor_of_one
    held_out = unk_rate_warning(_unk_stats(0.001, 0.05, 0.0001), CONFIG)
    assert "validation split" in held_out and "train split" not in held_out
    assert "characters that the training text lacks" in held_out and "max_training_bytes" in held_out
    long_words = unk_rate_warning(_unk_stats(0.03, 0.03, 0.0), CONFIG)
    assert "longer than 100 characters" in long_words
    given = CONFIG.model_copy(update={"tokenizer_path": tmp_path})  # copied without validation: any folder
    assert "tokenize.tokenizer_path" in unk_rate_warning(_unk_stats(0.2, 0.2, 0.1), given)


def test_old_configs_with_limit_alphabet_still_validate():
    assert TokenizeConfig().limit_alphabet is None and TokenizeConfig().alphabet_min_frequency == 2
    assert TokenizeConfig.model_validate({"limit_alphabet": 1000}).limit_alphabet == 1000
    with pytest.raises(ValidationError) as error:
        TokenizeConfig.model_validate({"limit_alphabet": 0, "alphabet_min_frequency": 0})
    assert "limit_alphabet" in str(error.value) and "alphabet_min_frequency" in str(error.value)
