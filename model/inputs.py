"""Load and cross-check the pretrain stage's inputs (tokenizer, both instance splits, masking) before any work."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from model.config import PretrainConfig
from model.data import InstanceDataset, PretrainingDataset
from model.dynamic_masking import DynamicMasker, MaskingSpec, read_masking_spec


@dataclass
class PretrainInputs:
    """The tokenizer and the train/validation datasets (dynamically masked when the instances are unmasked)."""

    tokenizer: PreTrainedTokenizerBase
    train: PretrainingDataset
    validation: PretrainingDataset
    masking: MaskingSpec | None  # None: the instances came masked (static masking)


def load_inputs(cfg: PretrainConfig, instances_dir: Path, tokenizer_dir: Path) -> PretrainInputs:
    """Load tokenizer and both splits, and check them against each other and the config, reporting all problems."""
    problems: list[str] = []
    tokenizer = None
    splits: dict[str, InstanceDataset] = {}
    if not tokenizer_dir.is_dir():
        problems.append(f"tokenizer_dir={tokenizer_dir} is not a directory; pass the tokenize stage's tokenizer/")
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        except (OSError, ValueError) as exc:
            problems.append(f"tokenizer_dir={tokenizer_dir} does not hold a Hugging Face tokenizer ({exc})")
        else:
            if tokenizer.pad_token_id is None:
                problems.append(f"tokenizer in {tokenizer_dir} has no pad token; BERT tokenizers define [PAD]")
                tokenizer = None
    masking = None
    try:
        masking = read_masking_spec(instances_dir)
    except ValueError as exc:
        problems.append(str(exc))
    for split in ("train", "validation"):
        try:
            dataset = InstanceDataset(instances_dir, split)
        except (FileNotFoundError, ValueError) as exc:
            problems.append(str(exc))
            continue
        if len(dataset) == 0:
            problems.append(f"the {split!r} split of {instances_dir} has no instances")
            continue
        splits[split] = dataset
        problems.extend(_check_split(cfg, dataset, split, tokenizer, tokenizer_dir, masking, instances_dir))
    if problems:
        raise ValueError("cannot pretrain: " + "; ".join(problems))
    masker = DynamicMasker(masking, tokenizer, cfg.seed) if masking else None
    return PretrainInputs(
        tokenizer=tokenizer,
        train=PretrainingDataset(splits["train"], masker),
        validation=PretrainingDataset(splits["validation"], masker),
        masking=masking,
    )


def _check_split(
    cfg: PretrainConfig,
    dataset: InstanceDataset,
    split: str,
    tokenizer: PreTrainedTokenizerBase | None,
    tokenizer_dir: Path,
    masking: MaskingSpec | None,
    instances_dir: Path,
) -> list[str]:
    problems = []
    if dataset.max_seq_length() > cfg.max_position_embeddings:
        problems.append(
            f"{split} instances reach {dataset.max_seq_length()} tokens but max_position_embeddings="
            f"{cfg.max_position_embeddings}; raise it or build shorter instances"
        )
    if dataset.max_value("token_type_ids") > 1:
        problems.append(
            f"{split} instances hold token_type_id {dataset.max_value('token_type_ids')}; BERT segments are 0 and 1"
        )
    if dataset.max_next_sentence_label() > 1:
        problems.append(
            f"{split} instances hold next_sentence_label {dataset.max_next_sentence_label()}; valid: 0 (B follows "
            f"A), 1 (B is random) or -1 (no NSP label)"
        )
    if tokenizer is not None and dataset.max_token_id() >= len(tokenizer):
        problems.append(
            f"{split} instances hold token id {dataset.max_token_id()} but the tokenizer in {tokenizer_dir} "
            f"has only {len(tokenizer)} tokens; were the instances built with this tokenizer?"
        )
    if masking is None and dataset.max_value("masked_lm_positions") < 0:
        problems.append(
            f"{split} instances in {instances_dir} hold no masked positions but no manifest.json says "
            f"config.masking='dynamic'; pass the instances stage's artifact folder (with its manifest)"
        )
    return problems
