"""The obviously correct instance generator: Google BERT's algorithm in plain Python, for the tests.

It mirrors google-research/bert create_instances_from_document line by line, on token ids, with the
fixes listed in tasks/instances/generate.py, the SOP and MLM-packing objectives, and one change of interface:
every random choice is drawn from a numpy Generator as `rng.random()` doubles, one per decision, in
the order written here (integers come from tasks.instances.masking.draw_index). The numba kernel
(tasks/instances/kernels.py) draws in the same order, so for the same Generator state both produce
identical instances; the stage uses the kernel, the tests compare the two.

Input: `documents` is the whole split as lists of sentences of token ids with empty sentences and
empty documents already removed; `continues` has the same shape and says per token whether it
continues the word of the token before (whole-word masking); instances are made for the documents
in [first, last) of one work unit, but a random next segment may come from any document of the split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.instances.masking import MaskingVocabulary, draw_index, mask_tokens

NO_SENTENCE_LABEL = -100  # next_sentence_label of MLM-only instances: PyTorch's ignore_index


@dataclass(frozen=True)
class ReferenceInstance:
    """One unpadded instance as plain lists."""

    input_ids: list[int]
    type_zero_length: int  # token_type_ids are 0 for the first type_zero_length tokens, then 1
    masked_lm_positions: list[int]
    masked_lm_ids: list[int]
    next_sentence_label: int


@dataclass(frozen=True)
class ReferenceSettings:
    """The instance-making settings the reference needs (a subset of InstancesConfig)."""

    objective: str  # "nsp", "sop" or "mlm"
    static_masking: bool
    max_seq_length: int
    short_seq_prob: float
    random_next_prob: float
    masked_lm_prob: float
    max_predictions_per_seq: int
    whole_word_mask: bool
    cls_id: int
    sep_id: int


def truncate_seq_pair(a: list, b: list, max_num_tokens: int, rng: np.random.Generator) -> tuple[list, list]:
    """Trim the longer segment one token at a time, from the front or back at random, until both fit."""
    a, b = list(a), list(b)
    while len(a) + len(b) > max_num_tokens:
        trunc = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del trunc[0]
        else:
            trunc.pop()
    return a, b


def _finish(tokens: list[tuple[int, bool]], type_zero_length: int, label: int, s: ReferenceSettings,
            vocab: MaskingVocabulary, rng: np.random.Generator) -> ReferenceInstance:
    ids = np.array([t for t, _ in tokens], np.int64)
    if not s.static_masking:
        return ReferenceInstance(ids.tolist(), type_zero_length, [], [], label)
    continues = np.array([c for _, c in tokens], bool) if s.whole_word_mask else None
    masked, positions, labels = mask_tokens(
        ids, rng, vocab, masked_lm_prob=s.masked_lm_prob, max_predictions_per_seq=s.max_predictions_per_seq,
        continues_word=continues,
    )
    return ReferenceInstance(masked.tolist(), type_zero_length, positions.tolist(), labels.tolist(), label)


def pair_instances(documents: list[list[list[tuple[int, bool]]]], index: int, s: ReferenceSettings,
                   vocab: MaskingVocabulary, rng: np.random.Generator) -> list[ReferenceInstance]:
    """NSP or SOP instances of one document for one pass; tokens are (id, continues_word) pairs."""
    document = documents[index]
    max_num_tokens = s.max_seq_length - 3
    target_seq_length = max_num_tokens
    if rng.random() < s.short_seq_prob:
        target_seq_length = 2 + draw_index(rng, max_num_tokens - 1)  # randint(2, max_num_tokens)
    # SOP pairs always come from one document; NSP has no other document to draw from in a 1-document split.
    within_document = s.objective == "sop" or len(documents) == 1
    instances = []
    current_chunk: list[list[tuple[int, bool]]] = []
    current_length = 0
    i = 0
    while i < len(document):
        current_chunk.append(document[i])
        current_length += len(document[i])
        at_end = i == len(document) - 1
        if at_end or current_length >= target_seq_length:
            if within_document and len(current_chunk) == 1:
                if not at_end:
                    i += 1  # the next sentence becomes B
                    continue
                break  # a lone last sentence has nothing in its document to pair with
            a_end = 1 + draw_index(rng, len(current_chunk) - 1) if len(current_chunk) >= 2 else 1
            tokens_a = [t for sentence in current_chunk[:a_end] for t in sentence]
            tokens_b = []
            is_random_next = s.objective == "nsp" and not within_document and (
                len(current_chunk) == 1 or rng.random() < s.random_next_prob)
            if is_random_next:
                target_b_length = target_seq_length - len(tokens_a)
                random_index = draw_index(rng, len(documents) - 1)
                random_index += random_index >= index  # any document but this one
                random_document = documents[random_index]
                for j in range(draw_index(rng, len(random_document)), len(random_document)):
                    tokens_b.extend(random_document[j])
                    if len(tokens_b) >= target_b_length:
                        break
                i -= len(current_chunk) - a_end  # put the unused sentences back
            else:
                tokens_b = [t for sentence in current_chunk[a_end:] for t in sentence]
            label = int(is_random_next)
            if s.objective == "sop" and rng.random() < 0.5:
                tokens_a, tokens_b, label = tokens_b, tokens_a, 1  # swapped order
            tokens_a, tokens_b = truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
            tokens = [(s.cls_id, False), *tokens_a, (s.sep_id, False), *tokens_b, (s.sep_id, False)]
            instances.append(_finish(tokens, len(tokens_a) + 2, label, s, vocab, rng))
            current_chunk, current_length = [], 0
        i += 1
    return instances


def packed_instances(documents: list[list[list[tuple[int, bool]]]], first: int, last: int, s: ReferenceSettings,
                     vocab: MaskingVocabulary, rng: np.random.Generator) -> list[ReferenceInstance]:
    """RoBERTa FULL-SENTENCES: whole sentences packed up to max_seq_length, [SEP] between documents."""
    max_num_tokens = s.max_seq_length - 2
    instances = []
    current: list[tuple[int, bool]] = []

    def emit() -> None:
        tokens = [(s.cls_id, False), *current, (s.sep_id, False)]
        instances.append(_finish(tokens, len(tokens), NO_SENTENCE_LABEL, s, vocab, rng))
        current.clear()

    for index in range(first, last):
        for d_position, sentence in enumerate(documents[index]):
            # A sentence longer than a sequence is cut into sequence-sized pieces: no text is lost.
            for start in range(0, len(sentence), max_num_tokens):
                piece = sentence[start : start + max_num_tokens]
                separator = [(s.sep_id, False)] if current and d_position == 0 and start == 0 else []
                if current and len(current) + len(separator) + len(piece) > max_num_tokens:
                    emit()
                    separator = []
                current.extend(separator + piece)
    if current:
        emit()
    return instances


def reference_unit_instances(documents: list[list[list[int]]], continues: list[list[list[bool]]], first: int,
                             last: int, s: ReferenceSettings, vocab: MaskingVocabulary,
                             rng: np.random.Generator) -> list[ReferenceInstance]:
    """One pass over the documents [first, last) of a split: their instances in order."""
    paired = [[list(zip(sentence, flags)) for sentence, flags in zip(doc, doc_flags)]
              for doc, doc_flags in zip(documents, continues)]
    if s.objective == "mlm":
        return packed_instances(paired, first, last, s, vocab, rng)
    return [x for index in range(first, last) for x in pair_instances(paired, index, s, vocab, rng)]
