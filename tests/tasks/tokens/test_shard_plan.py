"""Token shards and encode batches sized by text bytes; the tokenizer training sample bounded in bytes."""

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.tokens.shards import (
    TOKENIZE_BYTES_PER_CPU_SECOND,
    TokenizeConfig,
    _split_rows,
    _TrainingTexts,
    build_token_shards,
    plan_token_shards,
    read_token_documents,
    split_of,
    text_byte_lengths,
)
from tests.tasks.tokens.test_shards import make_text, shard_bytes, write_snapshot

ROWS_PER_FILE = 7


@pytest.fixture()
def sized_snapshot(tmp_path):
    """40 documents of 50-1,100 UTF-8 bytes (some with 2- and 3-byte characters), two empty, one of 4,998 bytes."""
    rng = random.Random(1)
    texts = [make_text(rng, rng.randint(1, 8)) + (" Café 中文。" if i % 5 == 0 else "") + f" Number {i}."
             for i in range(40)]
    texts[13] = ""
    texts[29] = ""
    texts[21] = "A long document. " * 294  # 4,998 bytes: longer than the shard limit below
    rows = write_snapshot(tmp_path / "snapshot", texts, rows_per_file=ROWS_PER_FILE)
    return tmp_path / "snapshot", rows


def spec_rows(spec, rows):
    """Global row numbers a spec reads: its ranges' rows that belong to its split, in order."""
    numbers = []
    for path, start, end in spec.row_ranges:
        file_index = int(path.rsplit("documents-", 1)[1].split(".")[0])
        for row in range(start, end):
            number = file_index * ROWS_PER_FILE + row
            if split_of(rows[number]["content_hash"], spec.validation_fraction) == spec.split:
                numbers.append(number)
    return numbers


def assert_greedy_partition(specs, rows, cfg):
    """Every split's rows, in snapshot order, cut into shards that are each as full as the two limits allow;
    (closed by documents_per_shard, closed by shard_text_bytes) of every shard that another one follows."""
    size = [len(row["text"].encode()) for row in rows]
    closings = []
    for split in ("train", "validation"):
        shards = [spec_rows(spec, rows) for spec in specs if spec.split == split]
        expected = [n for n, row in enumerate(rows) if split_of(row["content_hash"], cfg.validation_fraction) == split]
        assert [n for shard in shards for n in shard] == expected  # each row once, in order, never cut
        for spec, shard in zip([s for s in specs if s.split == split], shards):
            assert spec.text_bytes == sum(size[n] for n in shard)
            assert len(shard) <= cfg.documents_per_shard
            assert spec.text_bytes <= cfg.shard_text_bytes or len(shard) == 1  # a longer document alone
        for shard, following in zip(shards, shards[1:]):  # a shard closed only when the next row did not fit
            closed_by_count = len(shard) == cfg.documents_per_shard
            closed_by_bytes = sum(size[n] for n in shard) + size[following[0]] > cfg.shard_text_bytes
            assert closed_by_count or closed_by_bytes
            closings.append((closed_by_count, closed_by_bytes))
    return closings


def test_shards_are_cut_by_text_bytes(sized_snapshot, tmp_path):
    snapshot_dir, rows = sized_snapshot
    cfg = TokenizeConfig(validation_fraction=0.2, shard_text_bytes=4_000)
    specs, documents = plan_token_shards(cfg, snapshot_dir, tmp_path / "tokens")
    total = sum(len(row["text"].encode()) for row in rows)
    assert total > 5 * cfg.shard_text_bytes and sum(spec.text_bytes for spec in specs) == total
    assert sum(spec.split == "train" for spec in specs) >= 5
    assert documents["train"] + documents["validation"] == len(rows)
    assert_greedy_partition(specs, rows, cfg)
    [long_shard] = [spec for spec in specs if 21 in spec_rows(spec, rows)]
    assert spec_rows(long_shard, rows) == [21] and long_shard.text_bytes == 4_998


def test_a_shard_takes_documents_up_to_exactly_its_limit(tmp_path):
    texts = [f"Document {i:03d} " + "x" * 87 for i in range(10)]  # 100 bytes each
    write_snapshot(tmp_path / "snapshot", texts, rows_per_file=4)
    cfg = TokenizeConfig(validation_fraction=0.0, shard_text_bytes=300)
    specs, _ = plan_token_shards(cfg, tmp_path / "snapshot", tmp_path / "tokens")
    assert [spec.text_bytes for spec in specs if spec.split == "train"] == [300, 300, 300, 100]
    assert [spec.row_ranges for spec in specs[:2]] == [
        ((str(tmp_path / "snapshot" / "documents-00000.parquet"), 0, 3),),
        ((str(tmp_path / "snapshot" / "documents-00000.parquet"), 3, 4),
         (str(tmp_path / "snapshot" / "documents-00001.parquet"), 0, 2)),
    ]


@pytest.mark.parametrize("documents_per_shard,shard_text_bytes", [(3, 2_500), (2, 10**9), (10**6, 1), (10**6, 10**9)])
def test_a_shard_closes_at_either_limit(sized_snapshot, tmp_path, documents_per_shard, shard_text_bytes):
    snapshot_dir, rows = sized_snapshot
    cfg = TokenizeConfig(validation_fraction=0.2, documents_per_shard=documents_per_shard,
                         shard_text_bytes=shard_text_bytes)
    specs, _ = plan_token_shards(cfg, snapshot_dir, tmp_path / "tokens")
    closings = assert_greedy_partition(specs, rows, cfg)
    if (documents_per_shard, shard_text_bytes) == (3, 2_500):  # each limit alone closes some shards here
        assert (True, False) in closings and (False, True) in closings
    if shard_text_bytes == 1:  # every document alone
        assert all(len(spec_rows(spec, rows)) == 1 for spec in specs)


def test_plan_is_deterministic_and_estimates_cpu_seconds(sized_snapshot, tmp_path):
    snapshot_dir, _ = sized_snapshot
    cfg = TokenizeConfig(validation_fraction=0.2, shard_text_bytes=3_000)
    first, documents = plan_token_shards(cfg, snapshot_dir, tmp_path / "tokens")
    assert plan_token_shards(cfg, snapshot_dir, tmp_path / "tokens") == (first, documents)
    for spec in first:
        assert spec.estimated_seconds == spec.text_bytes / TOKENIZE_BYTES_PER_CPU_SECOND > 0


def test_shards_cut_by_bytes_hold_the_same_documents_byte_identically_on_rerun(sized_snapshot, tmp_path):
    snapshot_dir, _ = sized_snapshot
    by_count = TokenizeConfig(vocab_size=150, min_frequency=1, validation_fraction=0.2)
    build_token_shards(by_count, snapshot_dir, tmp_path / "one")
    by_bytes = by_count.model_copy(update={"tokenizer_path": tmp_path / "one" / "tokenizer", "shard_text_bytes": 3_000,
                                           "documents_per_shard": 5, "batch_text_bytes": 700})
    stats = build_token_shards(by_bytes, snapshot_dir, tmp_path / "many")
    assert stats["train_shards"] > 5
    for split in ("train", "validation"):
        many, one = read_token_documents(tmp_path / "many", split), read_token_documents(tmp_path / "one", split)
        assert list(many) == list(one)
    build_token_shards(by_bytes, snapshot_dir, tmp_path / "again")
    assert shard_bytes(tmp_path / "again") == shard_bytes(tmp_path / "many")


def test_encode_batches_are_bounded_in_text_bytes(sized_snapshot):
    snapshot_dir, rows = sized_snapshot
    path = snapshot_dir / "documents-00003.parquet"  # rows 21..27: the 4,998-byte document first
    batches = list(_split_rows(path, 0, ROWS_PER_FILE, "train", 0.0, 100, 3_000))
    assert [doc_id for ids, _ in batches for doc_id in ids] == [row["id"] for row in rows[21:28]]
    for _, texts in batches:
        assert len(texts) == 1 or sum(len(text.encode()) for text in texts) <= 3_000


def test_rows_are_read_the_same_from_files_of_several_row_groups(sized_snapshot, tmp_path):
    snapshot_dir, rows = sized_snapshot
    cfg = TokenizeConfig(vocab_size=150, min_frequency=1, validation_fraction=0.2, shard_text_bytes=3_000)
    build_token_shards(cfg, snapshot_dir, tmp_path / "one_group")
    grouped = tmp_path / "grouped"
    grouped.mkdir()
    for path in sorted(snapshot_dir.glob("documents-*.parquet")):
        pq.write_table(pq.ParquetFile(path).read(), grouped / path.name, row_group_size=2)
    assert pq.ParquetFile(grouped / "documents-00000.parquet").metadata.num_row_groups == 4
    path = grouped / "documents-00001.parquet"  # rows 7..13
    for start, end in [(0, 7), (1, 2), (2, 5), (3, 7), (6, 7)]:
        batches = list(_split_rows(path, start, end, "train", 0.0, 3, 10**9))
        assert [doc_id for ids, _ in batches for doc_id in ids] == [row["id"] for row in rows[7 + start : 7 + end]]
    given = cfg.model_copy(update={"tokenizer_path": tmp_path / "one_group" / "tokenizer"})
    build_token_shards(given, grouped, tmp_path / "several_groups")
    assert shard_bytes(tmp_path / "several_groups") == shard_bytes(tmp_path / "one_group")


def test_text_byte_lengths_count_utf8_bytes():
    array = pa.array(["ab", None, "é中", "", "xyz"])
    assert text_byte_lengths(array).tolist() == [2, 0, 5, 0, 3]
    assert text_byte_lengths(array.slice(2, 3)).tolist() == [5, 0, 3]
    assert text_byte_lengths(pa.array(["é中", "a"], pa.large_string())).tolist() == [5, 1]
    assert text_byte_lengths(pa.array([], pa.string())).tolist() == []


def test_tokenizer_training_sample_is_bounded_in_bytes(sized_snapshot):
    snapshot_dir, rows = sized_snapshot
    train = [row["text"] for row in rows if split_of(row["content_hash"], 0.2) == "train"]
    sizes = [len(text.encode()) for text in train]
    bound = sum(sizes[:6]) - 1  # reached by the sixth document, which is kept
    sample = _TrainingTexts(TokenizeConfig(validation_fraction=0.2, max_training_bytes=bound), snapshot_dir)
    assert list(sample) == train[:6] and list(sample) == train[:6]  # the same texts on every iteration
    by_documents = TokenizeConfig(validation_fraction=0.2, max_training_bytes=bound, max_training_documents=4)
    assert list(_TrainingTexts(by_documents, snapshot_dir)) == train[:4]
    assert list(_TrainingTexts(TokenizeConfig(validation_fraction=0.2), snapshot_dir)) == train
