"""BERT masked-LM masking of one instance: plain numpy and Python, importable by data loaders.

    mask_tokens(input_ids, rng, vocab, *, masked_lm_prob, max_predictions_per_seq, continues_word=None)
        -> (masked_input_ids, masked_lm_positions, masked_lm_ids)

- input_ids: (seq_len,) integer array, the unmasked instance ([CLS] A [SEP] B [SEP] or [CLS] text [SEP]).
- rng: a numpy Generator; only `rng.random()` is drawn, one double per decision, in the order below.
- vocab: a MaskingVocabulary (`masking_vocabulary(tokenizer_dir)` builds it from a tokenizer folder).
- continues_word: (seq_len,) bool, True where a token continues the word of the token before it, so
  whole-word masking takes them together. None = no whole-word grouping; `word_continuation(input_ids,
  vocab)` gives the WordPiece grouping ("##" pieces join the piece before).
- returns: a masked copy of input_ids (same dtype), the masked positions ascending (int64) and the
  original ids there (input_ids' dtype).

The rules are Google BERT's create_masked_lm_predictions: num_to_predict = min(max_predictions_per_seq,
max(1, round(seq_len * masked_lm_prob))) (Python's round, [CLS]/[SEP] counted in seq_len); words are
visited in random order (a lazy Fisher-Yates shuffle, one draw per visited word) and a word that would
overshoot the budget is skipped; each token of a chosen word becomes [MASK] when a draw is < 0.8, else
stays unchanged when a second draw is < 0.5, else becomes a random non-special id picked by a third
draw. Special tokens ([PAD] [UNK] [CLS] [SEP] [MASK]) are never masked, and a word never continues
across a special token. The numba kernel in tasks/instances/kernels.py draws in exactly this order, so
the same Generator state gives the same masks (tests/tasks/instances/test_generate.py checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MASK_TOKEN_PROB = 0.8  # of the chosen tokens, this fraction becomes [MASK]
KEEP_GIVEN_NOT_MASK_PROB = 0.5  # of the rest, half stay unchanged, half become a random id


@dataclass(frozen=True)
class MaskingVocabulary:
    """What masking needs to know about the token ids."""

    mask_id: int
    is_special: np.ndarray  # (vocab_size,) bool: [PAD] [UNK] [CLS] [SEP] [MASK]
    is_continuation: np.ndarray  # (vocab_size,) bool: a "##" WordPiece piece
    replacement_ids: np.ndarray  # (non-special ids,) int64: what a 10% "random token" may become


def masking_vocabulary(tokenizer_dir: Path) -> MaskingVocabulary:
    """The masking vocabulary of a saved BERT tokenizer folder."""
    from tasks.tokens.tokenizer import MASK, is_continuation_table, load_tokenizer, special_token_ids

    tokenizer = load_tokenizer(tokenizer_dir)
    is_special = np.zeros(tokenizer.get_vocab_size(with_added_tokens=True), bool)
    special = special_token_ids(tokenizer)
    is_special[list(special.values())] = True
    return MaskingVocabulary(
        mask_id=special[MASK],
        is_special=is_special,
        is_continuation=np.array(is_continuation_table(tokenizer), bool),
        replacement_ids=np.flatnonzero(~is_special).astype(np.int64),
    )


def word_continuation(input_ids: np.ndarray, vocab: MaskingVocabulary) -> np.ndarray:
    """(seq_len,) bool: True for "##" pieces, which whole-word masking joins to the token before."""
    return vocab.is_continuation[np.asarray(input_ids)]


def num_to_predict(seq_len: int, masked_lm_prob: float, max_predictions_per_seq: int) -> int:
    """Masked positions wanted in an instance of seq_len tokens."""
    return min(max_predictions_per_seq, max(1, round(seq_len * masked_lm_prob)))


def draw_index(rng: np.random.Generator, size: int) -> int:
    """A uniform index in [0, size) from one double (the rule the numba kernel uses too)."""
    return min(int(rng.random() * size), size - 1)


def word_groups(input_ids: np.ndarray, continues_word: np.ndarray | None, vocab: MaskingVocabulary) -> list[tuple[int, int]]:
    """Masking candidates as [start, end) runs of one word each; special tokens are in none."""
    groups: list[tuple[int, int]] = []
    previous_candidate = False
    for position, token in enumerate(np.asarray(input_ids).tolist()):
        candidate = not vocab.is_special[token]
        if candidate and previous_candidate and continues_word is not None and continues_word[position]:
            groups[-1] = (groups[-1][0], position + 1)
        elif candidate:
            groups.append((position, position + 1))
        previous_candidate = candidate
    return groups


def mask_tokens(
    input_ids: np.ndarray,
    rng: np.random.Generator,
    vocab: MaskingVocabulary,
    *,
    masked_lm_prob: float,
    max_predictions_per_seq: int,
    continues_word: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask one instance: (masked input_ids, ascending masked_lm_positions, original masked_lm_ids)."""
    input_ids = np.asarray(input_ids)
    groups = word_groups(input_ids, continues_word, vocab)
    budget = num_to_predict(len(input_ids), masked_lm_prob, max_predictions_per_seq)
    output = input_ids.copy()
    positions: list[int] = []
    order = list(range(len(groups)))
    for k in range(len(groups)):
        if len(positions) >= budget:
            break
        j = k + draw_index(rng, len(groups) - k)
        order[k], order[j] = order[j], order[k]
        start, end = groups[order[k]]
        if len(positions) + (end - start) > budget:
            continue  # a whole word that would overshoot is skipped; a shorter one may still fit
        for position in range(start, end):
            if rng.random() < MASK_TOKEN_PROB:
                output[position] = vocab.mask_id
            elif rng.random() < KEEP_GIVEN_NOT_MASK_PROB:
                pass
            else:
                output[position] = vocab.replacement_ids[draw_index(rng, len(vocab.replacement_ids))]
            positions.append(position)
    positions.sort()
    masked_positions = np.array(positions, np.int64)
    return output, masked_positions, input_ids[masked_positions]
