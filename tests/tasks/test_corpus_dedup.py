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
