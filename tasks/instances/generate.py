"""Instances stage: token shards -> MLM/NSP (or SOP, or MLM-only packed) pretraining instances.

Google BERT's create_pretraining_data.py algorithm on token ids, compiled with numba
(tasks/instances/kernels.py; tasks/instances/reference.py is the plain-Python twin the tests compare it
with), with the reference's known bugs fixed:
- The "random next" document is drawn uniformly from the *other* documents of the whole split, from
  any token shard (the reference tried 10 times and could pair a document with itself).
- A one-document split has no other document: a chunk of two or more sentences becomes an actual-next
  pair, a one-sentence chunk takes the following sentence as its B, and a one-sentence chunk at the
  very end of that document is dropped (it has nothing to pair with).
- Empty documents and blank sentences are skipped (the reference crashed on randint(0, -1)).
- Whole-word groups never cross [SEP]; no special token ([PAD] [UNK] [CLS] [SEP] [MASK]) is ever a
  masking candidate, and the random replacement is drawn from the non-special ids.
Kept as in the reference: the short target length is drawn once per document; num_to_predict counts
[CLS] and [SEP]; the 80/10/10 choice is made per token, also inside whole-word groups.

Work is cut into units: contiguous runs of the split's documents of about instances_per_shard
instances. Each unit is one output shard `<split>/instances-NNNNN.arrow`, made by one `map_shards`
call from seeds derived from (seed, split, unit, pass) only, so the bytes never depend on the number of
workers. Workers map the split's tokens read-only (tasks/instances/token_index.py) and hold one unit in memory.
A rerun after a crash reuses the finished shards, each checked first against the size and sha256 recorded
in a sidecar when it was written (tasks/pieces.py): a damaged one is made again. The sidecars go when
the stage's work is done, with the token index.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.artifacts import remove_tree
from tasks.instances.masking import MaskingVocabulary, masking_vocabulary
from tasks.instances.token_index import build_split_index, numpy_values, open_split_index
from tasks.parallel import ShardMap, StepRunner, run_inline, serial_map
from tasks.pieces import forget_digests, record_piece
from tasks.tokens.shards import (
    SPLITS,
    TOKENIZER_DIRNAME,
    read_stream,
    reuse_stream,
    token_dtype,
    write_stream_atomically,
)
from tasks.tokens.tokenizer import CLS, SEP, load_tokenizer, special_token_ids

logger = logging.getLogger(__name__)

INDEX_DIRNAME = "_token_index"  # scratch beside the shards while the stage runs; removed at the end
HISTOGRAM_BINS = 8  # instance length histogram: 8 equal bins up to max_seq_length


class InstancesConfig(BaseModel):
    """Instances stage: pairing objective and masking, as in Google BERT's create_pretraining_data."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    objective: Literal["nsp", "sop", "mlm"] = "nsp"
    """nsp: BERT next-sentence pairs (label 1 = B is random); sop: ALBERT sentence order (label 1 =
    swapped); mlm: RoBERTa FULL-SENTENCES packing, one segment, next_sentence_label -100 (ignored)."""
    masking: Literal["static", "dynamic"] = "static"
    """static: masks written into the shards (dupe_factor passes, each masked anew); dynamic: shards hold
    unmasked instances and the data loader masks each epoch (tasks.instances.masking.mask_tokens)."""
    max_seq_length: int = Field(default=128, ge=8, le=65536)
    """Longest instance in tokens, [CLS] and [SEP]s included."""
    short_seq_prob: float = Field(default=0.1, ge=0.0, le=1.0)
    """Probability that a document's pairs target a random shorter length (2..max_seq_length-3)."""
    masked_lm_prob: float = Field(default=0.15, gt=0.0, lt=1.0)
    """Fraction of an instance's tokens to predict (capped by max_predictions_per_seq)."""
    max_predictions_per_seq: int = Field(default=20, ge=1)
    """Most masked positions per instance."""
    random_next_prob: float = Field(default=0.5, ge=0.0, le=1.0)
    """nsp: probability that segment B comes from a random other document (next_sentence_label 1)."""
    dupe_factor: int = Field(default=5, ge=1)
    """Passes over the data, each with different pairing and masks."""
    whole_word_mask: bool = True
    """Mask all pieces of a word together ("##" WordPiece pieces join the piece before)."""
    chinese_word_segmentation: bool = False
    """Whole-word masking of Chinese: CJK characters of one jieba word are masked together (needs jieba)."""
    seed: int = Field(default=12345, ge=0)
    """Seed for pairing, masking and shuffling; the output depends on nothing else."""
    instances_per_shard: int = Field(default=20_000, ge=1)
    """Approximate instances per output shard, and so per parallel work unit."""

    @model_validator(mode="after")
    def _options_fit_together(self) -> InstancesConfig:
        problems = []
        if self.chinese_word_segmentation:
            if importlib.util.find_spec("jieba") is None:
                problems.append("chinese_word_segmentation=true needs the optional dependency jieba, which is not "
                                "installed: pip install 'pretrainflow[chinese]' (or set it to false)")
            if not self.whole_word_mask:
                problems.append("chinese_word_segmentation=true only changes whole-word masking: set whole_word_mask=true")
            if self.masking == "dynamic":
                problems.append("chinese_word_segmentation=true needs masking='static': the data loader sees only "
                                "token ids, not the segmenter's word boundaries")
        if self.objective == "mlm" and self.masking == "dynamic" and self.dupe_factor > 1:
            problems.append(f"dupe_factor={self.dupe_factor} with objective='mlm' and masking='dynamic' writes identical "
                            "copies (packing has no randomness): use dupe_factor=1")
        if problems:
            raise ValueError("; ".join(problems))
        return self


@dataclass(frozen=True)
class UnitSpec:
    """One output shard's work: small and picklable, so any worker (local or Dask) can run it."""

    cfg: InstancesConfig
    vocab: MaskingVocabulary
    cls_id: int
    sep_id: int
    index_dir: Path
    split: str
    unit: int
    first_document: int
    last_document: int
    out_path: Path
    tokens: int  # in the unit's documents: its work is dupe_factor passes over them

    @property
    def estimated_seconds(self) -> float:
        """CPU seconds this unit takes on one core (for choosing the number of workers: tasks.parallel.workers_for)."""
        return self.tokens * self.cfg.dupe_factor / TOKEN_PASSES_PER_CPU_SECOND


# Instance generation speed: ~18.7 M tokens x passes per CPU second for a 20,000-instance unit of the Python docs
# (seq 128, whole-word masking; kernels loaded, shard written and counted), on a 2-core x86 machine.
TOKEN_PASSES_PER_CPU_SECOND = 15e6


def unit_seeds(seed: int, split: str, unit: int, dupe_factor: int) -> list[np.random.SeedSequence]:
    """One seed per pass plus one for the shuffle, from (seed, split, unit) only, never from a worker."""
    return np.random.SeedSequence(seed, spawn_key=(SPLITS.index(split), unit)).spawn(dupe_factor + 1)


def plan_units(document_tokens: np.ndarray, cfg: InstancesConfig) -> list[tuple[int, int]]:
    """[first, last) document ranges of about instances_per_shard instances each (by token count)."""
    if len(document_tokens) == 0:
        return [(0, 0)]
    # Each pass makes about one instance per max_seq_length - 3 tokens.
    tokens_per_unit = cfg.instances_per_shard * (cfg.max_seq_length - 3) / cfg.dupe_factor
    ends = np.cumsum(document_tokens)
    cuts = np.searchsorted(ends, np.arange(tokens_per_unit, ends[-1], tokens_per_unit), side="left") + 1
    bounds = np.unique(np.concatenate([[0], cuts, [len(document_tokens)]]))
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def make_unit_instances(spec: UnitSpec) -> dict[str, np.ndarray]:
    """Every pass over one unit, in pass order, unshuffled: flat arrays of the instances."""
    from tasks.instances import kernels  # numba: ~0.35 CPU-s to import, which loading a config must not pay
    cfg, vocab = spec.cfg, spec.vocab
    split = open_split_index(spec.index_dir, spec.split)
    sentence_offsets, document_offsets = split.sentence_offsets, split.document_offsets
    first, last = spec.first_document, spec.last_document
    sentences = int(document_offsets[last] - document_offsets[first])
    tokens = int(sentence_offsets[document_offsets[last]] - sentence_offsets[document_offsets[first]])
    # Upper bounds (np.empty only reserves address space; untouched pages cost no memory). A pair
    # consumes at least one sentence; packing cuts at most one piece per sentence or full sequence.
    per_pass = sentences + (tokens // (cfg.max_seq_length - 2) + 1 if cfg.objective == "mlm" else 0)
    capacity = per_pass * cfg.dupe_factor
    out = (
        np.empty(capacity * cfg.max_seq_length, split.ids.dtype),  # out_ids
        np.zeros(capacity + 1, np.int64),  # instance_offsets
        np.empty(capacity, np.int32),  # type_zero_lengths
        np.empty(capacity, np.int8),  # labels
        np.empty(capacity * cfg.max_predictions_per_seq if cfg.masking == "static" else 0, np.uint16),
        np.empty(capacity * cfg.max_predictions_per_seq if cfg.masking == "static" else 0, split.ids.dtype),
        np.zeros(capacity + 1, np.int64),  # mask_offsets
        np.zeros(3, np.int64),  # counts: instances, tokens, masked
    )
    scratch = (
        split.ids, split.continues, vocab.is_special, vocab.replacement_ids, spec.cls_id, spec.sep_id, vocab.mask_id,
        cfg.masking == "static", cfg.whole_word_mask, cfg.masked_lm_prob, cfg.max_predictions_per_seq,
        np.empty(cfg.max_seq_length, np.int64), np.empty(cfg.max_seq_length, np.int64),
        np.empty(cfg.max_seq_length, np.int64),
    )
    cont_scratch = np.empty(cfg.max_seq_length, np.bool_)
    pieces = np.zeros((cfg.max_seq_length, 2), np.int64)  # an instance as id ranges and special tokens
    seeds = unit_seeds(cfg.seed, spec.split, spec.unit, cfg.dupe_factor)
    for pass_seed in seeds[:-1]:
        rng = np.random.default_rng(pass_seed)
        if cfg.objective == "mlm":
            kernels.packed_pass(first, last, sentence_offsets, document_offsets, cfg.max_seq_length, pieces, cont_scratch,
                                scratch, rng, out)
        else:
            kernels.pair_pass(first, last, sentence_offsets, document_offsets, kernels.OBJECTIVE_CODES[cfg.objective],
                              cfg.max_seq_length, cfg.short_seq_prob, cfg.random_next_prob, pieces, cont_scratch, scratch,
                              rng, out)
    instances, used_tokens, masked = (int(c) for c in out[7])
    return {
        "input_ids": out[0][:used_tokens], "instance_offsets": out[1][: instances + 1],
        "type_zero_lengths": out[2][:instances], "labels": out[3][:instances],
        "masked_lm_positions": out[4][:masked], "masked_lm_ids": out[5][:masked], "mask_offsets": out[6][: instances + 1],
    }


def instance_schema(vocab_size: int) -> pa.Schema:
    """Arrow schema of an instance shard."""
    id_type = token_dtype(vocab_size)
    return pa.schema([
        ("input_ids", pa.list_(id_type)),
        ("token_type_ids", pa.list_(pa.uint8())),
        ("masked_lm_positions", pa.list_(pa.uint16())),
        ("masked_lm_ids", pa.list_(id_type)),
        ("next_sentence_label", pa.int8()),
    ])


def instances_table(arrays: dict[str, np.ndarray], order: np.ndarray, schema: pa.Schema) -> pa.Table:
    """Unpadded instances, row k being instance order[k], as an Arrow table."""
    from tasks.instances import kernels  # numba: ~0.35 CPU-s to import, which loading a config must not pay
    id_type = schema.field("input_ids").type.value_type
    rows, tokens, masked = len(order), len(arrays["input_ids"]), len(arrays["masked_lm_ids"])
    out_ids, out_types = np.empty(tokens, arrays["input_ids"].dtype), np.empty(tokens, np.uint8)
    out_positions, out_masked_ids = np.empty(masked, np.uint16), np.empty(masked, arrays["masked_lm_ids"].dtype)
    out_offsets, out_mask_offsets = np.zeros(rows + 1, np.int32), np.zeros(rows + 1, np.int32)
    kernels.gather_instances(order, arrays["input_ids"], arrays["instance_offsets"], arrays["type_zero_lengths"],
                             arrays["masked_lm_positions"], arrays["masked_lm_ids"], arrays["mask_offsets"],
                             out_ids, out_types, out_offsets, out_positions, out_masked_ids, out_mask_offsets)
    offsets, mask_offsets = pa.array(out_offsets), pa.array(out_mask_offsets)
    return pa.Table.from_arrays([
        pa.ListArray.from_arrays(offsets, pa.array(out_ids, id_type)),
        pa.ListArray.from_arrays(offsets, pa.array(out_types, pa.uint8())),
        pa.ListArray.from_arrays(mask_offsets, pa.array(out_positions, pa.uint16())),
        pa.ListArray.from_arrays(mask_offsets, pa.array(out_masked_ids, id_type)),
        pa.array(arrays["labels"][order], pa.int8()),
    ], schema=schema)


def make_instance_shard(spec: UnitSpec) -> dict[str, int]:
    """Write one unit's shuffled instance shard (unless already there); its counts, read back from it."""
    table = reuse_stream(spec.out_path)
    if table is None:
        arrays = make_unit_instances(spec)
        shuffle_seed = unit_seeds(spec.cfg.seed, spec.split, spec.unit, spec.cfg.dupe_factor)[-1]
        order = np.random.default_rng(shuffle_seed).permutation(len(arrays["labels"]))
        vocab_size = len(spec.vocab.is_special)
        write_stream_atomically(instances_table(arrays, order, instance_schema(vocab_size)), spec.out_path)
        record_piece(spec.out_path)
        table = read_stream(spec.out_path)
    return instance_shard_counts(table, spec.vocab, spec.cfg.max_seq_length)


COUNT_KEYS = ("instances", "tokens", "non_special", "masked", "as_mask", "as_random", "as_kept", "label_1", "label_0",
              *(f"length_bin_{b}" for b in range(HISTOGRAM_BINS)))


def instance_shard_counts(table: pa.Table, vocab: MaskingVocabulary, max_seq_length: int) -> dict[str, int]:
    """Counts behind the stage statistics (see COUNT_KEYS), read back from a written shard."""
    from tasks.instances import kernels  # numba: ~0.35 CPU-s to import, which loading a config must not pay
    counts = np.zeros(len(COUNT_KEYS), np.int64)
    for batch in table.to_batches():
        input_ids, positions, masked_ids = (batch.column(name) for name in ("input_ids", "masked_lm_positions", "masked_lm_ids"))
        kernels.shard_counts(
            numpy_values(input_ids.values), numpy_values(input_ids.offsets), numpy_values(positions.values),
            numpy_values(masked_ids.values), numpy_values(positions.offsets),
            numpy_values(batch.column("next_sentence_label")), vocab.is_special, vocab.mask_id, HISTOGRAM_BINS,
            max_seq_length, counts,
        )
    return dict(zip(COUNT_KEYS, counts.tolist()))


def split_statistics(split: str, totals: dict[str, int], shards: int, cfg: InstancesConfig) -> dict[str, int | float]:
    """Manifest statistics of one split from its summed shard counts."""
    instances, masked = totals["instances"], max(totals["masked"], 1)
    stats: dict[str, int | float] = {
        f"{split}_instances": instances,
        f"{split}_shards": shards,
        f"{split}_mean_length": totals["tokens"] / max(instances, 1),
        # measured on the shards: 0 with dynamic masking (the loader masks)
        f"{split}_mask_rate": totals["masked"] / max(totals["non_special"], 1),
        f"{split}_mask_token_fraction": totals["as_mask"] / masked,
        f"{split}_random_fraction": totals["as_random"] / masked,
        f"{split}_kept_fraction": totals["as_kept"] / masked,
        # next_sentence_label 1: B is random (nsp) or A and B are swapped (sop); mlm has none (-100)
        f"{split}_label_1_fraction": totals["label_1"] / max(totals["label_0"] + totals["label_1"], 1),
    }
    width = cfg.max_seq_length / HISTOGRAM_BINS
    for b in range(HISTOGRAM_BINS):
        stats[f"{split}_length_{int(b * width) + 1:05d}_{int((b + 1) * width):05d}"] = totals[f"length_bin_{b}"]
    return stats


def no_instances_message(split: str, document_sentences: np.ndarray, cfg: InstancesConfig) -> str:
    """Why a split with documents gave no instances, and what to change; document_sentences: (documents,)."""
    one_sentence = int(np.count_nonzero(document_sentences <= 1))
    pairing = {"sop": "SOP needs two sentences in a document to make a pair",
               "nsp": "NSP needs two sentences, or another document, to make a pair",
               "mlm": "packing needs tokens"}[cfg.objective]
    return (f"the {split} split has {len(document_sentences)} documents but gave 0 instances with "
            f"objective={cfg.objective!r}: {one_sentence} of them have one sentence each ({pairing}). Likely cause: "
            "the tokenize stage's sentence splitting found no sentence ends in this text (a script or punctuation "
            "it does not split on, or text without any); check the token shards' sentences per document, or use "
            "objective='mlm', which needs no sentence pairs")


def _segmenter(cfg: InstancesConfig, tokenizer_dir: Path):
    if not cfg.chinese_word_segmentation:
        return None
    from tasks.instances.chinese_words import jieba_segmenter

    return jieba_segmenter(tokenizer_dir)


def build_instances(cfg: InstancesConfig, tokens_dir: Path, out_dir: Path, *,
                    map_shards: ShardMap = serial_map, run_step: StepRunner = run_inline) -> dict[str, int | float]:
    """Make instances for the train and validation token shards; finished shards are reused.

    run_step runs two steps per split: index its tokens, generate its instances.
    """
    tokens_dir, out_dir = Path(tokens_dir), Path(out_dir)
    if not (tokens_dir / "train").is_dir():
        raise FileNotFoundError(f"tokens_dir {str(tokens_dir)!r} has no train/ folder of token shards")
    tokenizer_dir = tokens_dir / TOKENIZER_DIRNAME
    vocab = masking_vocabulary(tokenizer_dir)
    special = special_token_ids(load_tokenizer(tokenizer_dir))
    segmenter = _segmenter(cfg, tokenizer_dir)
    index_dir = out_dir / INDEX_DIRNAME
    stats: dict[str, int | float] = {}
    for split in SPLITS:
        arrays = run_step(f"index {split} tokens",
                          partial(build_split_index, tokens_dir, split, index_dir, vocab.is_continuation, segmenter))
        sentence_tokens = np.asarray(arrays.sentence_offsets)[np.asarray(arrays.document_offsets)]
        units = plan_units(np.diff(sentence_tokens), cfg)
        specs = [
            UnitSpec(cfg, vocab, special[CLS], special[SEP], index_dir, split, unit, first, last,
                     out_dir / split / f"instances-{unit:05d}.arrow", int(sentence_tokens[last] - sentence_tokens[first]))
            for unit, (first, last) in enumerate(units)
        ]
        totals: dict[str, int] = {}
        shard_counts = run_step(f"generate {split} instances", partial(map_shards, make_instance_shard, specs),
                                sharded=True)
        for counts in shard_counts:
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value
        logger.info("%s: %d instances in %d shards", split, totals["instances"], len(specs))
        document_sentences = np.diff(np.asarray(arrays.document_offsets))
        if totals["instances"] == 0 and len(document_sentences):
            if split == "train":
                remove_tree(index_dir)
                raise ValueError(no_instances_message(split, document_sentences, cfg))
            logger.warning("%s", no_instances_message(split, document_sentences, cfg))
        stats.update(split_statistics(split, totals, len(specs), cfg))
    stats["instances"] = stats["train_instances"] + stats["validation_instances"]
    remove_tree(index_dir)
    for split in SPLITS:
        forget_digests(out_dir / split)  # every shard is done: the output holds only the shards
    return stats
