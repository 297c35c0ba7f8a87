"""Instance shards (Arrow IPC stream, unpadded) as a torch Dataset, a padding collate, and samplers.

Sampling works on keys `epoch * num_instances + index`: the key tells the dataset which instance to
read and which epoch's dynamic mask to draw, so a batch is a pure function of the seed and the
number of samples consumed, whatever the worker processes or the point a run resumed from.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import Dataset, Sampler

from model.dynamic_masking import DynamicMasker

logger = logging.getLogger(__name__)

LIST_COLUMNS = ("input_ids", "token_type_ids", "masked_lm_positions", "masked_lm_ids")
COLUMNS = (*LIST_COLUMNS, "next_sentence_label")


def shard_paths(instances_dir: Path, split: str) -> list[Path]:
    """The instance shards of one split, in shard order (`<split>/instances-00000.arrow`, ...)."""
    return sorted((Path(instances_dir) / split).glob("instances-*.arrow"))


@dataclass(frozen=True)
class Instance:
    """One unpadded pretraining instance as numpy arrays (token ids keep their on-disk uint width)."""

    input_ids: np.ndarray  # (seq_len,)
    token_type_ids: np.ndarray  # (seq_len,)
    masked_lm_positions: np.ndarray  # (num_predictions,)
    masked_lm_ids: np.ndarray  # (num_predictions,)
    next_sentence_label: int


class _Shard:
    """One shard's list columns kept as flat values + offsets, so a row is two slices, not a Python list."""

    def __init__(self, path: Path):
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_stream(source).read_all()
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise ValueError(f"instance shard {path} lacks columns {missing}; it has {table.column_names}")
        self.num_rows = table.num_rows
        self.values: dict[str, np.ndarray] = {}
        self.offsets: dict[str, np.ndarray] = {}
        for name in LIST_COLUMNS:
            column = table.column(name).combine_chunks()  # ListArray
            self.offsets[name] = column.offsets.to_numpy()  # (num_rows + 1,) int32
            self.values[name] = column.values.to_numpy(zero_copy_only=False)  # (total_len,) uint8/16/32
        labels = table.column("next_sentence_label").to_numpy().astype(np.int64)
        # any negative label means "no NSP label" (the instances stage writes -100 for MLM-only packing)
        self.next_sentence_label = np.where(labels < 0, -1, labels)

    def row(self, i: int) -> Instance:
        lists = {name: self.values[name][self.offsets[name][i] : self.offsets[name][i + 1]] for name in LIST_COLUMNS}
        return Instance(**lists, next_sentence_label=int(self.next_sentence_label[i]))


class InstanceDataset(Dataset[Instance]):
    """All instances of one split (`train` or `validation`) of an instance shards dir, random access."""

    def __init__(self, instances_dir: Path, split: str):
        paths = shard_paths(instances_dir, split)
        if not paths:
            raise FileNotFoundError(
                f"no instance shards matching {Path(instances_dir) / split / 'instances-*.arrow'}; "
                f"expected the instances stage output with a {split!r} split"
            )
        self.split = split
        self.shards = [_Shard(p) for p in paths]
        # Global row index -> (shard, row) through cumulative row counts.
        self._starts = np.cumsum([0] + [s.num_rows for s in self.shards])
        logger.info("loaded %d %s instances from %d shards", len(self), split, len(paths))

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> Instance:
        if not 0 <= index < len(self):
            raise IndexError(f"instance {index} out of range for {len(self)} {self.split} instances")
        shard = int(np.searchsorted(self._starts, index, side="right")) - 1
        return self.shards[shard].row(index - int(self._starts[shard]))

    def max_value(self, column: str) -> int:
        """Largest value of a list column over the split (-1 when empty), e.g. to check ids against a vocab."""
        return max((int(s.values[column].max()) for s in self.shards if s.values[column].size), default=-1)

    def max_next_sentence_label(self) -> int:
        """Largest NSP label in the split (0 = next, 1 = random, -1 = none; -1 when empty)."""
        return max((int(s.next_sentence_label.max()) for s in self.shards if s.next_sentence_label.size), default=-1)

    def max_token_id(self) -> int:
        """Largest token id in input_ids and masked_lm_ids (to check against the tokenizer's vocab)."""
        return max(self.max_value("input_ids"), self.max_value("masked_lm_ids"))

    def lengths(self) -> np.ndarray:
        """Tokens per instance, (num_instances,) int64, in storage order."""
        return np.concatenate([np.diff(s.offsets["input_ids"]) for s in self.shards]).astype(np.int64)

    def max_seq_length(self) -> int:
        """Longest input_ids in the split, in tokens."""
        return max((int(np.diff(s.offsets["input_ids"]).max(initial=0)) for s in self.shards), default=0)


class PretrainingCollator:
    """Pads a list of instances to the batch's longest sequence and most predictions."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, instances: list[Instance]) -> dict[str, torch.Tensor]:
        batch_size = len(instances)
        seq_len = max(len(x.input_ids) for x in instances)
        max_predictions = max(len(x.masked_lm_positions) for x in instances)
        input_ids = np.full((batch_size, seq_len), self.pad_token_id, dtype=np.int64)
        token_type_ids = np.zeros((batch_size, seq_len), dtype=np.int64)
        attention_mask = np.zeros((batch_size, seq_len), dtype=np.int64)
        # Padded predictions point at position 0 with id 0 and weight 0, so they gather harmlessly.
        masked_lm_positions = np.zeros((batch_size, max_predictions), dtype=np.int64)
        masked_lm_ids = np.zeros((batch_size, max_predictions), dtype=np.int64)
        masked_lm_weights = np.zeros((batch_size, max_predictions), dtype=np.float32)
        for row, x in enumerate(instances):
            n, p = len(x.input_ids), len(x.masked_lm_positions)
            input_ids[row, :n] = x.input_ids
            token_type_ids[row, :n] = x.token_type_ids
            attention_mask[row, :n] = 1
            masked_lm_positions[row, :p] = x.masked_lm_positions
            masked_lm_ids[row, :p] = x.masked_lm_ids
            masked_lm_weights[row, :p] = 1.0
        return {
            "input_ids": torch.from_numpy(input_ids),  # (batch, seq_len)
            "token_type_ids": torch.from_numpy(token_type_ids),  # (batch, seq_len)
            "attention_mask": torch.from_numpy(attention_mask),  # (batch, seq_len)
            "masked_lm_positions": torch.from_numpy(masked_lm_positions),  # (batch, max_predictions)
            "masked_lm_ids": torch.from_numpy(masked_lm_ids),  # (batch, max_predictions)
            "masked_lm_weights": torch.from_numpy(masked_lm_weights),  # (batch, max_predictions)
            "next_sentence_label": torch.tensor([x.next_sentence_label for x in instances], dtype=torch.int64),
        }


class PretrainingDataset(Dataset[Instance]):
    """Instances addressed by key = epoch * len + index, masked per epoch when a masker is given."""

    def __init__(self, instances: InstanceDataset, masker: DynamicMasker | None = None):
        self.instances = instances
        self.masker = masker

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, key: int) -> Instance:
        epoch, index = divmod(int(key), len(self.instances))
        instance = self.instances[index]
        if self.masker is None:
            return instance
        input_ids, positions, labels = self.masker(instance.input_ids, epoch, index)
        return Instance(input_ids, instance.token_type_ids, positions, labels, instance.next_sentence_label)


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """The training order of one epoch: a permutation that depends only on (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(num_samples)


BUCKET_BATCHES = 64  # length bucketing sorts windows of this many batches


def epoch_order(
    num_samples: int, seed: int, epoch: int, lengths: np.ndarray | None = None, batch_size: int = 1
) -> np.ndarray:
    """One epoch's order: a seeded permutation, optionally length-bucketed.

    Bucketing cuts the epoch where the global batches fall: global batches run across epoch
    boundaries, so the first `head` instances finish the batch the previous epoch started and the
    last `tail` start the next epoch's first batch. In between, each window of BUCKET_BATCHES x
    batch_size shuffled instances is sorted by length, cut into batch-sized runs and the runs are
    shuffled, so a batch holds similar lengths (less padding) in every epoch, while the order stays
    a pure function of (seed, epoch).
    """
    order = epoch_permutation(num_samples, seed, epoch)
    if lengths is None:
        return order
    rng = np.random.default_rng([seed, epoch, 1])
    head = min(num_samples, -epoch * num_samples % batch_size)  # samples owed to the batch epoch-1 began
    tail = (num_samples - head) % batch_size  # samples that begin the batch epoch+1 finishes
    pieces = [order[:head]]
    window = BUCKET_BATCHES * batch_size
    for start in range(head, num_samples - tail, window):
        chunk = order[start : min(start + window, num_samples - tail)]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        runs = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]  # all full
        pieces.extend(runs[i] for i in rng.permutation(len(runs)))
    pieces.append(order[num_samples - tail :])
    return np.concatenate(pieces)


_KEYS_PER_CHUNK = 1 << 16  # sample keys turned into Python ints at a time


class GlobalBatchSampler:
    """Keys of global batches forever, epoch after epoch, starting after `start_sample` samples.

    The order is a pure function of (seed, samples consumed), so a resumed run that starts at
    `steps_done * batch_size` draws exactly the batches the uninterrupted run would have drawn,
    without reading the ones before. Batches run across epoch boundaries so every batch is full.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int,
        start_sample: int = 0,
        lengths: np.ndarray | None = None,
    ):
        if num_samples < 1:
            raise ValueError(f"cannot sample batches from {num_samples} instances; need at least 1")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.start_sample = start_sample
        self.lengths = lengths

    def __iter__(self) -> Iterator[list[int]]:
        epoch, position = divmod(self.start_sample, self.num_samples)
        batch: list[int] = []
        while True:
            order = epoch_order(self.num_samples, self.seed, epoch, self.lengths, self.batch_size)
            # Python ints a chunk at a time: a whole epoch's list cost ~46 bytes per instance (~0.9 GB at 20 M)
            for start in range(position, self.num_samples, _KEYS_PER_CHUNK):
                for index in order[start : start + _KEYS_PER_CHUNK].tolist():
                    batch.append(epoch * self.num_samples + index)
                    if len(batch) == self.batch_size:
                        yield batch
                        batch = []
            epoch, position = epoch + 1, 0


class MicroBatchSampler(Sampler[list[int]]):
    """This process's micro-batches of each global batch: rank r takes slices r*accum .. r*accum+accum-1.

    Each global batch splits into world_size x accumulation_steps equal micro-batches; with
    `sort_by_length` (bucketing) a global batch is sorted first so each micro-batch pads less.
    """

    def __init__(
        self,
        batches: GlobalBatchSampler,
        rank: int = 0,
        world_size: int = 1,
        accumulation_steps: int = 1,
        sort_by_length: bool = False,
    ):
        parts = world_size * accumulation_steps
        if batches.batch_size % parts:
            raise ValueError(
                f"batch_size={batches.batch_size} does not split into world_size={world_size} x "
                f"gradient_accumulation_steps={accumulation_steps} equal micro-batches; make it a multiple of {parts}"
            )
        self.batches = batches
        self.rank = rank
        self.accumulation_steps = accumulation_steps
        self.micro_batch_size = batches.batch_size // parts
        self.sort_by_length = sort_by_length and batches.lengths is not None

    def __iter__(self) -> Iterator[list[int]]:
        size, n = self.micro_batch_size, self.batches.num_samples
        for batch in self.batches:
            if self.sort_by_length:
                batch = sorted(batch, key=lambda key: int(self.batches.lengths[key % n]))
            first = self.rank * self.accumulation_steps
            for part in range(first, first + self.accumulation_steps):
                yield batch[part * size : (part + 1) * size]


def ignore_sigterm(worker_id: int) -> None:
    """DataLoader worker_init_fn: a SIGTERM sent to the whole process group is the trainer's to handle.

    torch's workers die on a SIGTERM that their parent did not send, and the trainer's next batch then
    fails before it can write its stop checkpoint; ignoring it lets the trainer finish the step,
    checkpoint and shut its workers down itself.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def ordered_batches(num_samples: int, batch_size: int, max_batches: int = 0) -> list[list[int]]:
    """Index batches in storage order for evaluation; the first `max_batches` only if it is > 0."""
    batches = [list(range(start, min(start + batch_size, num_samples))) for start in range(0, num_samples, batch_size)]
    return batches[:max_batches] if max_batches > 0 else batches
