"""Instances stage: token shards -> static-masked MLM/NSP pretraining instances.

This is Google BERT's create_pretraining_data.py algorithm, on token ids instead of strings, with its
known bugs fixed:
- The "random next" document is drawn uniformly from the *other* documents of the whole split (the
  reference tried 10 times and could end up pairing a document with itself).
- When the split has a single document there is no other document: a chunk of two or more sentences
  becomes an actual-next pair, a one-sentence chunk takes the following sentence as its B, and a
  one-sentence chunk at the very end of that document is dropped (it has nothing to pair with).
- Empty documents and empty sentences are skipped (the reference crashed on randint(0, -1)).
- Whole-word groups never cross [SEP]: a B that starts with a "##" piece (front truncation) starts a
  new group instead of joining A's last word.
- The random replacement token is drawn from the non-special ids, and no special token ([PAD] [UNK]
  [CLS] [SEP] [MASK]) is ever a masking candidate.
- truncate_seq_pair trims with index windows instead of `del tokens[0]`, which was quadratic on very
  long sentences; it draws the same random numbers.
Kept as in the reference: the short target length is drawn once per document; num_to_predict counts
[CLS] and [SEP]; the 80/10/10 choice is made per token, also inside whole-word groups.
"""

from __future__ import annotations

import itertools
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from tasks.shards import (
    SPLITS,
    TOKENIZER_DIRNAME,
    TokenSplit,
    load_token_split,
    read_stream,
    token_dtype,
    write_stream_atomically,
)
from tasks.tokenizer import CLS, MASK, SEP, is_continuation_table, load_tokenizer, special_token_ids

logger = logging.getLogger(__name__)


class InstancesConfig(BaseModel):
    """Instances stage: NSP pairing and static masking, as in Google BERT's create_pretraining_data."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    max_seq_length: int = Field(default=128, ge=8, le=65536)
    """Longest instance in tokens, [CLS] and both [SEP] included."""
    short_seq_prob: float = Field(default=0.1, ge=0.0, le=1.0)
    """Probability that a document's instances target a random shorter length (2..max_seq_length-3)."""
    masked_lm_prob: float = Field(default=0.15, gt=0.0, lt=1.0)
    """Fraction of an instance's tokens to predict (capped by max_predictions_per_seq)."""
    max_predictions_per_seq: int = Field(default=20, ge=1)
    """Most masked positions per instance."""
    random_next_prob: float = Field(default=0.5, ge=0.0, le=1.0)
    """Probability that segment B comes from a random other document (next_sentence_label 1)."""
    dupe_factor: int = Field(default=5, ge=1)
    """Passes over the data, each with different pairing and masks."""
    whole_word_mask: bool = True
    """Mask all WordPiece pieces of a word together ("##" pieces join the piece before)."""
    seed: int = 12345
    """Seed for document order, pairing and masking; output depends on nothing else."""
    instances_per_shard: int = Field(default=50_000, ge=1)
    """Approximate instances per output shard (documents are grouped by token count)."""


@dataclass(frozen=True)
class Vocabulary:
    """What masking needs to know about the token ids."""

    cls_id: int
    sep_id: int
    mask_id: int
    is_special: np.ndarray  # (vocab_size,) bool
    is_continuation: np.ndarray  # (vocab_size,) bool: a "##" piece
    replacement_ids: list[int]  # ids a 10% "random token" may take: every non-special id


@dataclass
class Instance:
    """One unpadded NSP/MLM example."""

    input_ids: list[int]
    segment_a_length: int  # tokens of A; token_type_ids are 0 for [CLS] A [SEP], 1 for B [SEP]
    masked_lm_positions: list[int]
    masked_lm_ids: list[int]
    is_random_next: bool


class SplitDocuments:
    """A split's non-empty documents of non-empty sentences, with random access to any sentence."""

    def __init__(self, split: TokenSplit) -> None:
        self.ids = split.ids
        keep = np.diff(split.sentence_offsets) > 0
        self.sentence_starts = split.sentence_offsets[:-1][keep]  # (kept sentences,) into ids
        self.sentence_ends = split.sentence_offsets[1:][keep]
        kept_before = np.concatenate([[0], np.cumsum(keep)])  # kept sentences before each sentence index
        first = kept_before[split.document_offsets]  # (documents + 1,) into kept sentences
        counts = np.diff(first)
        nonempty = counts > 0
        self.first_sentence = first[:-1][nonempty]  # (non-empty documents,)
        self.sentence_counts = counts[nonempty].tolist()
        tokens_before = np.concatenate([[0], np.cumsum(self.sentence_ends - self.sentence_starts)])
        self.tokens = np.diff(tokens_before[first])[nonempty].tolist()  # tokens per document

    def __len__(self) -> int:
        return len(self.sentence_counts)

    def sentence(self, index: int, position: int) -> list[int]:
        """Token ids of sentence number position of document number index."""
        s = self.first_sentence[index] + position
        return self.ids[self.sentence_starts[s] : self.sentence_ends[s]].tolist()

    def sentences(self, index: int) -> list[list[int]]:
        """Every sentence of document number index."""
        return [self.sentence(index, position) for position in range(self.sentence_counts[index])]


def truncate_seq_pair(tokens_a: list[int], tokens_b: list[int], max_num_tokens: int, rng: random.Random) -> tuple[list[int], list[int]]:
    """Trim the longer segment one token at a time, from the front or back at random, until both fit."""
    a_start, a_end, b_start, b_end = 0, len(tokens_a), 0, len(tokens_b)
    while (a_end - a_start) + (b_end - b_start) > max_num_tokens:
        trim_a = (a_end - a_start) > (b_end - b_start)
        if rng.random() < 0.5:
            if trim_a:
                a_start += 1
            else:
                b_start += 1
        elif trim_a:
            a_end -= 1
        else:
            b_end -= 1
    return tokens_a[a_start:a_end], tokens_b[b_start:b_end]


def whole_word_groups(tokens: np.ndarray, vocab: Vocabulary, whole_word_mask: bool) -> tuple[list[int], list[int]]:
    """Masking candidates as [start, end) runs: one per word (or per piece), never a special token."""
    candidate = ~vocab.is_special[tokens]  # (seq_len,) bool
    starts = candidate.copy()
    if whole_word_mask:
        # A "##" piece right after another candidate continues that word; after [SEP] it starts a group.
        follows_candidate = np.concatenate([[False], candidate[:-1]])
        starts &= ~(vocab.is_continuation[tokens] & follows_candidate)
    group_starts = np.flatnonzero(starts)
    boundaries = np.flatnonzero(starts | ~candidate)  # a group ends at the next start or non-candidate
    boundaries = np.append(boundaries, len(tokens))
    group_ends = boundaries[np.searchsorted(boundaries, group_starts, side="right")]
    return group_starts.tolist(), group_ends.tolist()


def create_masked_lm_predictions(
    tokens: list[int], cfg: InstancesConfig, vocab: Vocabulary, rng: random.Random
) -> tuple[list[int], list[int], list[int]]:
    """Mask tokens: returns (masked tokens, ascending positions, original ids at those positions)."""
    group_starts, group_ends = whole_word_groups(np.asarray(tokens), vocab, cfg.whole_word_mask)
    groups = list(range(len(group_starts)))
    num_to_predict = min(cfg.max_predictions_per_seq, max(1, int(round(len(tokens) * cfg.masked_lm_prob))))

    output = list(tokens)
    positions: list[int] = []
    # Visit groups in random order: a Fisher-Yates shuffle done lazily, as far as the budget needs.
    for k in range(len(groups)):
        if len(positions) >= num_to_predict:
            break
        j = rng.randrange(k, len(groups))
        groups[k], groups[j] = groups[j], groups[k]
        start, end = group_starts[groups[k]], group_ends[groups[k]]
        # A whole word that would overshoot the budget is skipped; a shorter one may still fit.
        if len(positions) + (end - start) > num_to_predict:
            continue
        for index in range(start, end):
            if rng.random() < 0.8:
                output[index] = vocab.mask_id  # 80%: [MASK]
            elif rng.random() < 0.5:
                pass  # 10%: keep the original token
            else:
                output[index] = vocab.replacement_ids[rng.randrange(len(vocab.replacement_ids))]  # 10%
            positions.append(index)
    positions.sort()
    return output, positions, [tokens[p] for p in positions]


def create_instances_from_document(
    documents: SplitDocuments, document_index: int, cfg: InstancesConfig, vocab: Vocabulary, rng: random.Random
) -> list[Instance]:
    """All instances of one document for one pass (Google's create_instances_from_document)."""
    document = documents.sentences(document_index)
    max_num_tokens = cfg.max_seq_length - 3  # room for [CLS], [SEP], [SEP]
    # Usually fill the sequence; sometimes go shorter to match fine-tuning lengths (once per document).
    target_seq_length = max_num_tokens
    if rng.random() < cfg.short_seq_prob:
        target_seq_length = rng.randint(2, max_num_tokens)
    only_document = len(documents) == 1

    instances: list[Instance] = []
    current_chunk: list[list[int]] = []
    current_length = 0
    i = 0
    while i < len(document):
        current_chunk.append(document[i])
        current_length += len(document[i])
        at_end = i == len(document) - 1
        if at_end or current_length >= target_seq_length:
            if only_document and len(current_chunk) == 1:
                if not at_end:
                    i += 1  # no other document for a random B: the next sentence becomes B
                    continue
                break  # a lone last sentence of the only document has nothing to pair with
            a_end = rng.randint(1, len(current_chunk) - 1) if len(current_chunk) >= 2 else 1
            tokens_a = [t for sentence in current_chunk[:a_end] for t in sentence]
            tokens_b: list[int] = []
            is_random_next = not only_document and (len(current_chunk) == 1 or rng.random() < cfg.random_next_prob)
            if is_random_next:
                target_b_length = target_seq_length - len(tokens_a)
                random_index = rng.randint(0, len(documents) - 2)
                random_index += random_index >= document_index  # uniform over the other documents
                random_length = documents.sentence_counts[random_index]
                for position in range(rng.randint(0, random_length - 1), random_length):
                    tokens_b.extend(documents.sentence(random_index, position))
                    if len(tokens_b) >= target_b_length:
                        break
                # Google BERT puts the unused sentences back so no text is lost.
                i -= len(current_chunk) - a_end
            else:
                tokens_b = [t for sentence in current_chunk[a_end:] for t in sentence]
            tokens_a, tokens_b = truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
            tokens = [vocab.cls_id, *tokens_a, vocab.sep_id, *tokens_b, vocab.sep_id]
            masked, positions, labels = create_masked_lm_predictions(tokens, cfg, vocab, rng)
            instances.append(Instance(masked, len(tokens_a), positions, labels, is_random_next))
            current_chunk, current_length = [], 0
        i += 1
    return instances


def shard_documents(documents: SplitDocuments, cfg: InstancesConfig, split: str) -> list[list[int]]:
    """Documents of each output shard: a seeded shuffle of the split, cut by token count."""
    order = list(range(len(documents)))
    random.Random(f"{cfg.seed}-{split}-order").shuffle(order)
    # Each pass makes about one instance per (max_seq_length - 3) tokens.
    tokens_per_shard = cfg.instances_per_shard * (cfg.max_seq_length - 3) / cfg.dupe_factor
    shards: list[list[int]] = [[]]
    tokens = 0
    for index in order:
        if shards[-1] and tokens >= tokens_per_shard:
            shards.append([])
            tokens = 0
        shards[-1].append(index)
        tokens += documents.tokens[index]
    return shards


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


def _list_array(rows: list[list[int]], dtype: pa.DataType) -> pa.ListArray:
    offsets = np.zeros(len(rows) + 1, np.int32)
    np.cumsum([len(row) for row in rows], out=offsets[1:])
    values = np.fromiter(itertools.chain.from_iterable(rows), dtype.to_pandas_dtype(), int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, dtype))


def instances_table(instances: list[Instance], schema: pa.Schema) -> pa.Table:
    """Instances as an unpadded Arrow table."""
    token_types = [[0] * (x.segment_a_length + 2) + [1] * (len(x.input_ids) - x.segment_a_length - 2) for x in instances]
    return pa.Table.from_arrays([
        _list_array([x.input_ids for x in instances], schema.field("input_ids").type.value_type),
        _list_array(token_types, pa.uint8()),
        _list_array([x.masked_lm_positions for x in instances], pa.uint16()),
        _list_array([x.masked_lm_ids for x in instances], schema.field("masked_lm_ids").type.value_type),
        pa.array([int(x.is_random_next) for x in instances], pa.int8()),
    ], schema=schema)


def instance_shard_counts(table: pa.Table, vocab: Vocabulary) -> dict[str, int]:
    """Counts behind the stage statistics, read back from a written shard."""
    if table.num_rows == 0:
        return dict.fromkeys(("instances", "tokens", "non_special", "masked", "as_mask", "as_random", "as_kept", "random_next"), 0)
    input_ids = table.column("input_ids").combine_chunks()
    positions = table.column("masked_lm_positions").combine_chunks()
    ids = input_ids.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    labels = table.column("masked_lm_ids").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    rows = np.repeat(np.arange(table.num_rows), np.diff(positions.offsets.to_numpy()))
    flat_positions = input_ids.offsets.to_numpy()[rows] + positions.flatten().to_numpy(zero_copy_only=False)
    shown = ids[flat_positions]  # what the model sees at each masked position
    original = ids.copy()
    original[flat_positions] = labels
    special = vocab.is_special[original]
    return {
        "instances": table.num_rows,
        "tokens": len(ids),
        "non_special": int(np.count_nonzero(~special)),
        "masked": len(flat_positions),
        "as_mask": int(np.count_nonzero(shown == vocab.mask_id)),
        # A random replacement that drew the original id is indistinguishable from keeping it.
        "as_random": int(np.count_nonzero((shown != vocab.mask_id) & (shown != labels))),
        "as_kept": int(np.count_nonzero(shown == labels)),
        "random_next": int(np.count_nonzero(table.column("next_sentence_label").to_numpy() == 1)),
    }


def load_vocabulary(tokenizer_dir: Path) -> tuple[Vocabulary, int]:
    """Masking vocabulary and vocabulary size of the token shards' tokenizer."""
    tokenizer = load_tokenizer(tokenizer_dir)
    special = special_token_ids(tokenizer)
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    special_ids = sorted(special.values())
    is_special = np.zeros(size, bool)
    is_special[special_ids] = True
    vocab = Vocabulary(
        cls_id=special[CLS],
        sep_id=special[SEP],
        mask_id=special[MASK],
        is_special=is_special,
        is_continuation=np.array(is_continuation_table(tokenizer), bool),
        replacement_ids=np.flatnonzero(~is_special).tolist(),
    )
    return vocab, size


def build_instances(cfg: InstancesConfig, tokens_dir: Path, out_dir: Path) -> dict[str, int | float]:
    """Make NSP/MLM instances for the train and validation token shards; reuse finished shards."""
    tokens_dir, out_dir = Path(tokens_dir), Path(out_dir)
    if not (tokens_dir / "train").is_dir():
        raise FileNotFoundError(f"tokens_dir {str(tokens_dir)!r} has no train/ folder of token shards")
    vocab, vocab_size = load_vocabulary(tokens_dir / TOKENIZER_DIRNAME)
    schema = instance_schema(vocab_size)
    stats: dict[str, int | float] = {}
    for split in SPLITS:
        totals = _build_split(cfg, tokens_dir, out_dir, split, vocab, schema)
        masked = max(totals["masked"], 1)
        stats[f"{split}_instances"] = totals["instances"]
        stats[f"{split}_shards"] = totals["shards"]
        stats[f"{split}_mean_length"] = totals["tokens"] / max(totals["instances"], 1)
        stats[f"{split}_mask_rate"] = totals["masked"] / max(totals["non_special"], 1)
        stats[f"{split}_mask_token_fraction"] = totals["as_mask"] / masked
        stats[f"{split}_random_fraction"] = totals["as_random"] / masked
        stats[f"{split}_kept_fraction"] = totals["as_kept"] / masked
        stats[f"{split}_nsp_random_fraction"] = totals["random_next"] / max(totals["instances"], 1)
    stats["instances"] = stats["train_instances"] + stats["validation_instances"]
    return stats


def _build_split(
    cfg: InstancesConfig, tokens_dir: Path, out_dir: Path, split: str, vocab: Vocabulary, schema: pa.Schema
) -> dict[str, int]:
    documents = SplitDocuments(load_token_split(tokens_dir, split))
    shards = shard_documents(documents, cfg, split)
    totals: dict[str, int] = {"shards": len(shards)}
    for shard_index, document_indices in enumerate(shards):
        path = out_dir / split / f"instances-{shard_index:05d}.arrow"
        if path.exists():
            logger.info("reusing %s", path)
            table = read_stream(path)
        else:
            # Per-shard seed: a shard's content does not depend on which shards ran before it.
            rng = random.Random(f"{cfg.seed}-{split}-{shard_index}")
            instances: list[Instance] = []
            for _ in range(cfg.dupe_factor):
                for document_index in document_indices:
                    instances.extend(create_instances_from_document(documents, document_index, cfg, vocab, rng))
            rng.shuffle(instances)
            table = instances_table(instances, schema)
            write_stream_atomically(table, path)
            logger.info("%s/%s: %d instances from %d documents", split, path.name, len(instances), len(document_indices))
        for key, value in instance_shard_counts(table, vocab).items():
            totals[key] = totals.get(key, 0) + value
    return totals
