import numpy as np
import pyarrow as pa

from tasks.corpus_dedup import _exact_duplicates, _matches_other_url, _pairs_with_other_url, global_order


def test_global_order_merges_sorted_shards_into_one_ranking() -> None:
    rows = [("b", "h1", 5), ("a", "h2", 0), ("c", "h0", 1), ("a", "h1", 3), ("b", "h1", 2), ("d", "h9", 4)]
    shards = [rows[:2], rows[2:5], rows[5:]]
    tables = [pa.table({"url": [r[0] for r in sorted(shard)], "content_hash": [r[1] for r in sorted(shard)],
                        "seq": [r[2] for r in sorted(shard)]}) for shard in shards]
    shard_of_rank, row_of_rank, ranks_by_shard = global_order(tables)
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
    import tasks.corpus_dedup as corpus_dedup
    from tasks.corpus_clean import cleaned_path

    monkeypatch.setattr(corpus_dedup, "_MERGE_BATCH", 7)  # several batches per shard
    rng = np.random.default_rng(1)
    rows = []
    for shard in range(50):
        urls = sorted(f"https://e.org/{u:05d}" for u in rng.integers(0, 10_000, 20))
        table = pa.table({"url": urls, "content_hash": ["h"] * 20, "seq": list(range(shard * 20, shard * 20 + 20))})
        with pa.OSFile(str(cleaned_path(tmp_path, shard)), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
            w.write_table(table)
        rows += zip(urls, table.column("seq").to_pylist())

    mapped = []

    class Shards(corpus_dedup._CleanedShards):
        def __getitem__(self, shard: int) -> pa.Table:
            with open("/proc/self/maps") as maps:
                mapped.append(sum(str(tmp_path) in line for line in maps))
            return super().__getitem__(shard)

    shard_of_rank, row_of_rank, _ = global_order(Shards(tmp_path, 50))
    assert [rows[s * 20 + r] for s, r in zip(shard_of_rank, row_of_rank)] == sorted(rows)
    assert max(mapped) <= 1  # maps held while another shard is opened
