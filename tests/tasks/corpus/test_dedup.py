import numpy as np
import pyarrow as pa

from tasks.corpus.clean_shard import cleaned_path
from tasks.corpus.dedup import (
    _CleanedShards,
    _exact_duplicates,
    _matches_other_url,
    _pairs_with_other_url,
    global_order,
)


def _write_cleaned(work, shard: int, table: pa.Table, batch_rows: int = 256) -> None:
    with pa.OSFile(str(cleaned_path(work, shard)), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=batch_rows)


def test_global_order_merges_sorted_shards_into_one_ranking(tmp_path) -> None:
    rows = [("b", "h1", 5), ("a", "h2", 0), ("c", "h0", 1), ("a", "h1", 3), ("b", "h1", 2), ("d", "h9", 4)]
    shards = [rows[:2], rows[2:5], rows[5:]]
    for shard, shard_rows in enumerate(shards):
        _write_cleaned(tmp_path, shard, pa.table({"url": [r[0] for r in sorted(shard_rows)],
                                                  "content_hash": [r[1] for r in sorted(shard_rows)],
                                                  "seq": [r[2] for r in sorted(shard_rows)]}), batch_rows=1)
    shard_of_rank, row_of_rank, ranks_by_shard = global_order(_CleanedShards(tmp_path, 3))
    ordered = [sorted(shards[s])[r] for s, r in zip(shard_of_rank, row_of_rank)]
    assert ordered == sorted(rows)
    for shard, ranks in enumerate(ranks_by_shard):
        assert [ordered[rank] for rank in ranks] == sorted(shards[shard])


def test_exact_duplicates_keep_the_smallest_rank() -> None:
    keys = np.array([7, 3, 7, 3, 9, 7], np.uint64)
    alive = np.array([0, 1, 2, 3, 5])  # rank 4 was dropped by an earlier step
    assert _exact_duplicates(alive, keys).tolist() == [3, 2, 5]


def test_matches_against_reference_entries_of_another_url_only() -> None:
    rng = np.random.default_rng(0)
    keys, urls = rng.integers(0, 6, 200).astype(np.uint64), rng.integers(0, 4, 200).astype(np.uint64)
    ref_keys, ref_urls = rng.integers(0, 6, 50).astype(np.uint64), rng.integers(0, 4, 50).astype(np.uint64)
    expected = [any(rk == k and ru != u for rk, ru in zip(ref_keys, ref_urls)) for k, u in zip(keys, urls)]
    assert _matches_other_url(keys, urls, ref_keys, ref_urls).tolist() == expected
    mine, theirs = _pairs_with_other_url(keys, urls, ref_keys, ref_urls)
    pairs = {(i, j) for i in range(200) for j in range(50) if keys[i] == ref_keys[j] and urls[i] != ref_urls[j]}
    assert set(zip(mine.tolist(), theirs.tolist())) == pairs and len(mine) == len(pairs)


def test_global_order_maps_one_shard_at_a_time(tmp_path, monkeypatch) -> None:
    """Pages read from a memory map stay in RSS until it is unmapped, so the merge must not hold them all."""
    import tasks.corpus.dedup as corpus_dedup

    monkeypatch.setattr(corpus_dedup, "_MERGE_BATCH", 7)  # several reads per shard
    rng = np.random.default_rng(1)
    rows = []
    for shard in range(50):
        urls = sorted(f"https://e.org/{u:05d}" for u in rng.integers(0, 10_000, 20))
        seqs = list(range(shard * 20, shard * 20 + 20))
        _write_cleaned(tmp_path, shard, pa.table({"url": urls, "content_hash": ["h"] * 20, "seq": seqs}), batch_rows=3)
        rows += zip(urls, seqs)

    mapped = []

    class Shards(_CleanedShards):
        def rows(self, shard, columns, rows_per_read):
            for piece in super().rows(shard, columns, rows_per_read):
                with open("/proc/self/maps") as maps:
                    mapped.append(sum(str(tmp_path) in line for line in maps))
                yield piece

    shard_of_rank, row_of_rank, _ = global_order(Shards(tmp_path, 50))
    assert [rows[s * 20 + r] for s, r in zip(shard_of_rank, row_of_rank)] == sorted(rows)
    # 20 rows in reads of >= 7: 9, 9, 2. A closed map can linger a moment (on a busy machine, 2 of the 150
    # reads still saw the one just closed, as Arrow's I/O threads let go of it), but maps never pile up.
    assert len(mapped) == 50 * 3 and max(mapped) <= 1
