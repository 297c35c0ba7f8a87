import numpy as np
import pytest
import torch

from model.data import (
    GlobalBatchSampler,
    InstanceDataset,
    MicroBatchSampler,
    PretrainingCollator,
    epoch_order,
    epoch_permutation,
    ordered_batches,
)
from tests.model.conftest import make_instances, write_shards


@pytest.fixture
def shards(tmp_path):
    rows = make_instances(25, seed=5)
    write_shards(tmp_path, "train", rows, per_shard=10)  # 3 shards: 10, 10, 5 rows
    return tmp_path, rows


def test_dataset_reads_every_row_across_shards(shards):
    root, rows = shards
    dataset = InstanceDataset(root, "train")
    assert len(dataset) == 25
    for index in (0, 9, 10, 19, 24):
        got, want = dataset[index], rows[index]
        assert got.input_ids.tolist() == want["input_ids"]
        assert got.token_type_ids.tolist() == want["token_type_ids"]
        assert got.masked_lm_positions.tolist() == want["masked_lm_positions"]
        assert got.masked_lm_ids.tolist() == want["masked_lm_ids"]
        assert got.next_sentence_label == want["next_sentence_label"]
    assert dataset.max_seq_length() == max(len(r["input_ids"]) for r in rows)
    assert dataset.max_token_id() == max(max(r["input_ids"] + r["masked_lm_ids"]) for r in rows)
    with pytest.raises(IndexError):
        dataset[25]


def test_missing_split_names_the_expected_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="validation/instances-"):
        InstanceDataset(tmp_path, "validation")


def test_collate_pads_to_batch_max(shards):
    root, rows = shards
    dataset = InstanceDataset(root, "train")
    batch = PretrainingCollator(pad_token_id=0)([dataset[i] for i in range(4)])
    seq_len = max(len(rows[i]["input_ids"]) for i in range(4))
    max_predictions = max(len(rows[i]["masked_lm_positions"]) for i in range(4))
    for name in ("input_ids", "token_type_ids", "attention_mask"):
        assert batch[name].shape == (4, seq_len) and batch[name].dtype == torch.int64
    for name in ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights"):
        assert batch[name].shape == (4, max_predictions)
    assert batch["next_sentence_label"].shape == (4,)
    for i in range(4):
        n, p = len(rows[i]["input_ids"]), len(rows[i]["masked_lm_positions"])
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (seq_len - n)
        assert batch["input_ids"][i, n:].eq(0).all()
        assert batch["masked_lm_weights"][i].tolist() == [1.0] * p + [0.0] * (max_predictions - p)
        assert batch["masked_lm_ids"][i, :p].tolist() == rows[i]["masked_lm_ids"]


def take(sampler, count):
    iterator = iter(sampler)
    return [next(iterator) for _ in range(count)]


def test_infinite_sampler_covers_each_epoch_once_and_reshuffles():
    batches = take(GlobalBatchSampler(10, batch_size=5, seed=7), 4)
    # Keys are epoch * num_samples + index.
    epoch0, epoch1 = sum(batches[:2], []), [key - 10 for key in sum(batches[2:], [])]
    assert sorted(epoch0) == list(range(10)) and sorted(epoch1) == list(range(10))
    assert epoch0 != epoch1
    assert epoch0 == epoch_permutation(10, seed=7, epoch=0).tolist()


def test_infinite_sampler_resumes_at_any_sample_offset():
    # Batches of 4 over 10 samples straddle epoch boundaries; resuming after 3 batches (12 samples)
    # must continue exactly where the uninterrupted sequence goes.
    full = take(GlobalBatchSampler(10, batch_size=4, seed=3), 8)
    resumed = take(GlobalBatchSampler(10, batch_size=4, seed=3, start_sample=12), 5)
    assert resumed == full[3:]


def test_sampler_depends_on_seed():
    assert take(GlobalBatchSampler(50, 10, seed=0), 1) != take(GlobalBatchSampler(50, 10, seed=1), 1)


def test_ordered_batches_are_in_storage_order_and_limited():
    assert ordered_batches(7, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert ordered_batches(7, 3, max_batches=2) == [[0, 1, 2], [3, 4, 5]]
    assert np.concatenate(ordered_batches(100, 8)).tolist() == list(range(100))


def test_length_bucketing_is_a_seeded_permutation_with_less_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(8, 128, size=1000)
    plain = epoch_order(1000, seed=4, epoch=0)
    bucketed = epoch_order(1000, seed=4, epoch=0, lengths=lengths, batch_size=10)
    assert sorted(bucketed.tolist()) == list(range(1000))
    assert np.array_equal(bucketed, epoch_order(1000, seed=4, epoch=0, lengths=lengths, batch_size=10))

    def padding(order):
        batches = lengths[order].reshape(-1, 10)
        return int((batches.max(axis=1, keepdims=True) - batches).sum())

    assert padding(bucketed) < padding(plain) / 4


def test_length_bucketing_keeps_its_padding_gain_in_every_epoch_and_resumes_exactly():
    # 1037 instances in batches of 32: global batches cross each epoch boundary at a different offset,
    # so bucket runs must be cut where the batches fall, not from each epoch's start.
    num_samples, batch_size, epochs = 1037, 32, 4
    lengths = np.random.default_rng(0).integers(16, 513, size=num_samples)
    batches = take(GlobalBatchSampler(num_samples, batch_size, seed=0, lengths=lengths), epochs * num_samples // 32)
    real, padded = np.zeros(epochs), np.zeros(epochs)
    for batch in batches:
        batch_lengths = lengths[np.array(batch) % num_samples]
        epoch = batch[0] // num_samples
        real[epoch] += batch_lengths.sum()
        padded[epoch] += batch_lengths.max() * len(batch)
    ratios = real / padded  # real / padded tokens; about 0.5 without bucketing
    assert ratios.min() > 0.9, ratios  # 0.94-0.97; runs cut from each epoch's start gave 0.95, then ~0.75
    keys = sorted(sum(batches, []))
    assert keys[: 3 * num_samples] == list(range(3 * num_samples))  # every instance once per epoch
    for start_batch in (1, 32, 33, 65, 97):  # resumed inside and at the edges of epochs
        resumed = GlobalBatchSampler(num_samples, batch_size, seed=0, start_sample=start_batch * 32, lengths=lengths)
        assert take(resumed, 8) == batches[start_batch : start_batch + 8]


def test_micro_batches_of_all_ranks_make_up_each_global_batch():
    global_batches = take(GlobalBatchSampler(50, batch_size=12, seed=1), 6)
    per_rank = [
        take(MicroBatchSampler(GlobalBatchSampler(50, 12, seed=1), rank=r, world_size=2, accumulation_steps=3), 18)
        for r in range(2)
    ]
    for step, batch in enumerate(global_batches):
        parts = per_rank[0][3 * step : 3 * step + 3] + per_rank[1][3 * step : 3 * step + 3]
        assert all(len(p) == 2 for p in parts)
        assert sum(parts, []) == batch
    with pytest.raises(ValueError, match="batch_size=12 does not split into world_size=5"):
        MicroBatchSampler(GlobalBatchSampler(50, 12, seed=1), rank=0, world_size=5)


def test_dynamic_masking_dataset_masks_per_epoch(tmp_path, tokenizer_dir):
    from transformers import AutoTokenizer

    from model.data import PretrainingDataset
    from model.dynamic_masking import DynamicMasker, MaskingSpec

    rows = make_instances(5, seed=6)
    for row in rows:  # unmasked instances, as the instances stage writes them in dynamic mode
        row["masked_lm_positions"], row["masked_lm_ids"] = [], []
    write_shards(tmp_path, "train", rows, per_shard=5)
    masker = DynamicMasker(MaskingSpec(0.15, 20, False), AutoTokenizer.from_pretrained(str(tokenizer_dir)), seed=0)
    dataset = PretrainingDataset(InstanceDataset(tmp_path, "train"), masker)
    first, second = dataset[2], dataset[5 + 2]  # instance 2 in epochs 0 and 1
    assert len(first.masked_lm_positions) >= 1
    assert np.array_equal(dataset[2].input_ids, first.input_ids)
    assert first.masked_lm_positions.tolist() != second.masked_lm_positions.tolist() or not np.array_equal(
        first.input_ids, second.input_ids
    )
    batch = PretrainingCollator(pad_token_id=0)([dataset[k] for k in range(5)])
    assert batch["masked_lm_weights"].sum() >= 5
