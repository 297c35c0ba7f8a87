"""Tiny tokenizer and instance shards, written per the data contracts, for the model/ tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from transformers import BertTokenizerFast

from model.config import PretrainConfig

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(40)]
CLS, SEP, MASK = 2, 3, 4
FIRST_WORD = len(SPECIAL)

INSTANCE_SCHEMA = pa.schema(
    [
        ("input_ids", pa.list_(pa.uint16())),
        ("token_type_ids", pa.list_(pa.uint8())),
        ("masked_lm_positions", pa.list_(pa.uint16())),
        ("masked_lm_ids", pa.list_(pa.uint16())),
        ("next_sentence_label", pa.int8()),
    ]
)


def make_instances(count: int, seed: int, max_len: int = 24) -> list[dict]:
    """MLM/NSP instances over a Zipf-distributed vocabulary (like text), so MLM loss drops within a few steps.

    Label 0 pairs B with the words that continue A's run, label 1 with an unrelated run.
    """
    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.arange(1, len(WORDS) + 1) ** 1.3
    zipf /= zipf.sum()
    instances = []
    for _ in range(count):
        length = int(rng.integers(10, max_len + 1)) - 3  # tokens left after [CLS] A [SEP] B [SEP]
        len_a = int(rng.integers(2, length - 1))
        len_b = length - len_a
        label = int(rng.integers(0, 2))
        words = rng.choice(len(WORDS), size=length, p=zipf) + FIRST_WORD
        seg_a = words[:len_a].tolist()
        if label == 1:
            words[len_a:] = rng.choice(len(WORDS), size=len_b, p=zipf) + FIRST_WORD
        seg_b = words[len_a:].tolist()
        input_ids = [CLS, *seg_a, SEP, *seg_b, SEP]
        token_type_ids = [0] * (len_a + 2) + [1] * (len_b + 1)
        candidates = [i for i, t in enumerate(input_ids) if t not in (CLS, SEP)]
        num_masked = max(1, round(0.15 * len(candidates)))
        positions = sorted(rng.choice(candidates, size=num_masked, replace=False).tolist())
        masked_ids = [input_ids[p] for p in positions]
        for p in positions:
            draw = rng.random()
            if draw < 0.8:
                input_ids[p] = MASK
            elif draw < 0.9:
                input_ids[p] = FIRST_WORD + int(rng.integers(0, len(WORDS)))
        instances.append(
            {
                "input_ids": input_ids,
                "token_type_ids": token_type_ids,
                "masked_lm_positions": positions,
                "masked_lm_ids": masked_ids,
                "next_sentence_label": label,
            }
        )
    return instances


def write_shards(instances_dir: Path, split: str, instances: list[dict], per_shard: int) -> list[Path]:
    """Write `instances` as `<split>/instances-NNNNN.arrow` Arrow IPC stream shards."""
    (instances_dir / split).mkdir(parents=True, exist_ok=True)
    paths = []
    for shard, start in enumerate(range(0, len(instances), per_shard)):
        rows = instances[start : start + per_shard]
        table = pa.Table.from_pylist(rows, schema=INSTANCE_SCHEMA)
        path = instances_dir / split / f"instances-{shard:05d}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, INSTANCE_SCHEMA) as writer:
            # Two record batches per shard, as a streaming writer would produce.
            half = max(1, table.num_rows // 2)
            writer.write_table(table, max_chunksize=half)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A BertTokenizerFast over the tiny vocabulary, saved as a Hugging Face tokenizer folder."""
    out = tmp_path_factory.mktemp("tokenizer")
    vocab = {token: i for i, token in enumerate(SPECIAL + WORDS)}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    assert len(tokenizer) == len(vocab)
    tokenizer.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def instances_dir(tmp_path_factory) -> Path:
    """Instance shards: 600 train instances in 3 shards, 96 validation instances in 1 shard."""
    root = tmp_path_factory.mktemp("instances")
    write_shards(root, "train", make_instances(600, seed=1), per_shard=200)
    write_shards(root, "validation", make_instances(96, seed=2), per_shard=200)
    return root


def tiny_config(**overrides) -> PretrainConfig:
    """A config small enough to train for tens of steps in seconds on 2 cores."""
    values = dict(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        batch_size=16,
        max_steps=30,
        learning_rate=3e-3,
        warmup_steps=3,
        eval_every=10,
        eval_batches=2,
        checkpoint_every=10,
        log_every=5,
        device="cpu",
    )
    values.update(overrides)
    return PretrainConfig(**values)
