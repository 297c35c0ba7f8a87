"""Dynamic masking: Google BERT's MLM masking applied in the loader, fresh each epoch, seeded per instance.

The instances stage can write unmasked instances (masking: dynamic); then every epoch masks each
instance anew with a generator seeded by (seed, epoch, instance index), so the masks do not depend
on worker processes or on where a resumed run starts, and a resumed run sees the same masks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class MaskingSpec:
    """How to mask: the instances stage's settings (read from its manifest)."""

    masked_lm_prob: float  # fraction of tokens to predict
    max_predictions_per_seq: int
    whole_word_mask: bool  # mask every "##" piece of a word together


def read_masking_spec(instances_dir: Path) -> MaskingSpec | None:
    """The dynamic-masking settings of an instances artifact, or None when its instances come masked.

    Reads `manifest.json` -> `config` (masking, masked_lm_prob, max_predictions_per_seq,
    whole_word_mask); a folder without a manifest, or with `masking: static`, holds masked instances.
    """
    manifest_path = Path(instances_dir) / "manifest.json"
    if not manifest_path.is_file():
        return None
    config = json.loads(manifest_path.read_text()).get("config", {})
    masking = config.get("masking", "static")
    if masking == "static":
        return None
    missing = [k for k in ("masked_lm_prob", "max_predictions_per_seq", "whole_word_mask") if k not in config]
    if masking != "dynamic" or missing:
        raise ValueError(
            f"{manifest_path}: config.masking={masking!r} with missing fields {missing}; valid: masking 'static', "
            f"or 'dynamic' with masked_lm_prob, max_predictions_per_seq and whole_word_mask"
        )
    return MaskingSpec(
        masked_lm_prob=float(config["masked_lm_prob"]),
        max_predictions_per_seq=int(config["max_predictions_per_seq"]),
        whole_word_mask=bool(config["whole_word_mask"]),
    )


class DynamicMasker:
    """Masks one unmasked instance: 80% [MASK], 10% a random token, 10% unchanged; never special tokens."""

    def __init__(self, spec: MaskingSpec, tokenizer: PreTrainedTokenizerBase, seed: int):
        self.spec = spec
        self.seed = seed
        vocab_size = len(tokenizer)
        tokens = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
        special = set(tokenizer.all_special_ids)
        self.is_special = np.array([i in special for i in range(vocab_size)])  # (vocab,) bool
        self.is_continuation = np.array([t.startswith("##") for t in tokens])  # (vocab,) bool: "##" word pieces
        self.random_ids = np.flatnonzero(~self.is_special)  # replacements are ordinary tokens
        self.mask_token_id = tokenizer.mask_token_id
        if self.mask_token_id is None:
            raise ValueError("dynamic masking needs a tokenizer with a mask token ([MASK]); this one has none")

    def word_groups(self, input_ids: np.ndarray) -> list[list[int]]:
        """Candidate positions grouped into words ("##" pieces join the word before when whole_word_mask)."""
        groups: list[list[int]] = []
        for position, token in enumerate(input_ids.tolist()):
            if self.is_special[token]:
                continue
            if self.spec.whole_word_mask and groups and self.is_continuation[token] and groups[-1][-1] == position - 1:
                groups[-1].append(position)
            else:
                groups.append([position])
        return groups

    def __call__(
        self, input_ids: np.ndarray, epoch: int, index: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(masked input_ids, masked_lm_positions sorted, masked_lm_ids) for instance `index` in `epoch`."""
        rng = np.random.default_rng([self.seed, epoch, index])
        spec = self.spec
        num_to_predict = min(
            spec.max_predictions_per_seq, max(1, round(len(input_ids) * spec.masked_lm_prob))
        )
        groups = self.word_groups(input_ids)
        chosen: list[int] = []
        for group_index in rng.permutation(len(groups)).tolist():
            group = groups[group_index]
            if len(chosen) + len(group) > num_to_predict:
                continue  # as Google BERT: skip a word that would overshoot, try the next
            chosen.extend(group)
            if len(chosen) == num_to_predict:
                break
        positions = np.array(sorted(chosen), dtype=np.int64)
        masked = input_ids.astype(np.int64)  # a copy
        labels = masked[positions].copy()
        draws = rng.random(len(positions))
        replacements = self.random_ids[rng.integers(0, len(self.random_ids), size=len(positions))]
        masked[positions] = np.where(draws < 0.8, self.mask_token_id, np.where(draws < 0.9, replacements, labels))
        return masked, positions, labels
