"""Intrinsic evaluation of a pretrained model on held-out instances: MLM accuracy, perplexity, fill-mask.

Held-out means the instances stage's validation split (documents the model never trained on). MLM
metrics use the instances' own static masks; fill-mask examples rebuild the original text of a few
validation instances, mask one whole word and ask a transformers `fill-mask` pipeline for it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from tasks.text import KANA_AND_IDEOGRAPHS

if TYPE_CHECKING:  # imported where instances or a model are read: IntrinsicConfig is part of every config load
    import pyarrow as pa
    import torch


class IntrinsicConfig(BaseModel):
    """Held-out MLM metrics and fill-mask examples of each pretrained model."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Compute MLM accuracy, perplexity and NSP accuracy on the validation instances."""
    max_instances: int = Field(default=2000, ge=1)
    """Validation instances scored at most (the first ones, in shard order)."""
    fill_mask_examples: int = Field(default=5, ge=0)
    """Held-out sentences with one word masked, shown with the model's top guesses."""
    top_k: int = Field(default=5, ge=1, le=50)
    """Guesses shown per fill-mask example."""


def read_validation_instances(instances_dir: Path, limit: int) -> pa.Table | None:
    """Up to `limit` validation instances, or None when the artifact has no validation split."""
    import pyarrow as pa

    files = sorted((Path(instances_dir) / "validation").glob("instances-*.arrow"))
    tables, rows = [], 0
    for path in files:
        with pa.memory_map(str(path), "r") as source:
            table = pa.ipc.open_stream(source).read_all()
        tables.append(table.slice(0, limit - rows))
        rows += len(tables[-1])
        if rows >= limit:
            break
    return pa.concat_tables(tables) if tables and rows else None


def _padded(rows: list[list[int]], device: torch.device) -> torch.Tensor:
    """(batch, longest row) long tensor, 0-padded."""
    import torch

    out = torch.zeros((len(rows), max(map(len, rows))), dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out.to(device)


def mlm_metrics(model_dir: Path, table: pa.Table, batch_size: int = 32) -> dict[str, float]:
    """MLM loss/accuracy/perplexity over every masked position and NSP accuracy, one pass, eval mode."""
    import torch

    with torch.no_grad():
        return _mlm_metrics(model_dir, table, batch_size)


def _mlm_metrics(model_dir: Path, table: pa.Table, batch_size: int) -> dict[str, float]:
    import torch
    from transformers import AutoModelForPreTraining

    model = AutoModelForPreTraining.from_pretrained(model_dir).eval()
    device = next(model.parameters()).device
    columns = {name: table[name].to_pylist() for name in table.column_names}
    loss_sum, correct, predicted, nsp_correct, nsp_total = 0.0, 0, 0, 0, 0
    for start in range(0, len(table), batch_size):
        stop = start + batch_size
        input_ids = _padded(columns["input_ids"][start:stop], device)
        token_types = _padded(columns["token_type_ids"][start:stop], device)
        attention = (input_ids != 0).long()
        encoded = model.bert(input_ids=input_ids, token_type_ids=token_types, attention_mask=attention)
        hidden, pooled = encoded.last_hidden_state, encoded.pooler_output  # (b, seq, hidden), (b, hidden)
        rows = [(i, p, t) for i, (ps, ts) in enumerate(zip(columns["masked_lm_positions"][start:stop],
                                                           columns["masked_lm_ids"][start:stop]))
                for p, t in zip(ps, ts)]
        if rows:
            index = torch.as_tensor([(i, p) for i, p, _ in rows], device=device)
            targets = torch.as_tensor([t for _, _, t in rows], device=device)
            logits = model.cls.predictions(hidden[index[:, 0], index[:, 1]])  # (masked, vocab): head on masks only
            loss_sum += torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum").item()
            correct += int((logits.argmax(-1) == targets).sum())
            predicted += len(rows)
        labels = torch.as_tensor(columns["next_sentence_label"][start:stop], device=device)
        has_nsp = labels >= 0  # -1: an MLM-only instance without a next-sentence label
        if has_nsp.any():
            nsp = model.cls.seq_relationship(pooled).argmax(-1)
            nsp_correct += int((nsp[has_nsp] == labels[has_nsp]).sum())
            nsp_total += int(has_nsp.sum())
    mlm_loss = loss_sum / predicted if predicted else math.nan
    return {
        "instances": float(len(table)),
        "masked_positions": float(predicted),
        "mlm_loss": mlm_loss,
        "mlm_accuracy": correct / predicted if predicted else math.nan,
        "perplexity": math.exp(mlm_loss) if predicted else math.nan,
        "nsp_accuracy": nsp_correct / nsp_total if nsp_total else math.nan,
    }


def _original_tokens(input_ids: list[int], positions: list[int], masked_ids: list[int]) -> list[int]:
    """The instance's tokens before masking: masked positions get their target ids back."""
    tokens = list(input_ids)
    for position, token in zip(positions, masked_ids):
        tokens[position] = token
    return tokens


_IDEOGRAPH = re.compile(f"[{KANA_AND_IDEOGRAPHS}]")  # one CJK character: a whole word to BERT's tokenizer
_EXAMPLE_TOKENS = 64  # tokens of segment A shown in a fill-mask example


def fill_mask_examples(model_dir: Path, table: pa.Table, count: int, top_k: int) -> list[dict[str, Any]]:
    """Up to `count` held-out sentences with their longest whole word masked, and the model's top_k guesses."""
    if count == 0:
        return []
    import numpy as np
    from transformers import AutoTokenizer, pipeline

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    unmasker = pipeline("fill-mask", model=str(model_dir), tokenizer=tokenizer, device=-1, top_k=top_k)
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids)
    # room for [CLS]/[SEP] and a few tokens more if the decoded text re-tokenizes longer
    shown = min(_EXAMPLE_TOKENS, unmasker.model.config.max_position_embeddings - 8)
    examples = []
    # spread the picks through the split rather than taking its first instances
    for row in np.linspace(0, len(table) - 1, min(len(table), 4 * count)).round().astype(int).tolist():
        if len(examples) == count:
            break
        tokens = _original_tokens(*(table[c][row].as_py() for c in ("input_ids", "masked_lm_positions", "masked_lm_ids")))
        segment_a = tokens[1 : tokens.index(tokenizer.sep_token_id)] if tokenizer.sep_token_id in tokens else tokens[1:]
        # Only the shown text is searched: a word past it would leave the pipeline no [MASK] to fill.
        segment_a = segment_a[:shown]
        # whole words: a piece that is not "##"-continued and not followed by a continuation, of 4+ letters or
        # one CJK character (BERT's tokenizer makes every CJK character its own word)
        words = [i for i, t in enumerate(segment_a) if t not in special and vocab[t].isalpha()
                 and (len(vocab[t]) >= 4 or _IDEOGRAPH.fullmatch(vocab[t]))
                 and (i + 1 == len(segment_a) or not vocab[segment_a[i + 1]].startswith("##"))]
        if len(segment_a) < 8 or not words:
            continue
        ideographs = [i for i in words if _IDEOGRAPH.fullmatch(vocab[segment_a[i]])]
        if 2 * len(ideographs) > len(words):  # Chinese or Japanese text: mask a character, not an English word in it
            words = ideographs
        target = max(words, key=lambda i: (len(vocab[segment_a[i]]), -i))
        masked = [*segment_a[:target], tokenizer.mask_token_id, *segment_a[target + 1 :]]
        text = tokenizer.decode(masked)
        guesses = unmasker(text)
        examples.append({
            "text": text,
            "answer": vocab[segment_a[target]],
            "predictions": [{"token": g["token_str"], "score": float(g["score"])} for g in guesses],
        })
    return examples


def intrinsic_evaluation(model_dir: Path, instances_dir: Path | None, cfg: IntrinsicConfig) -> dict[str, Any]:
    """MLM metrics and fill-mask examples, or why they were skipped."""
    if not cfg.enabled:
        return {"skipped": "disabled"}
    table = read_validation_instances(instances_dir, cfg.max_instances) if instances_dir else None
    if table is None:
        return {"skipped": "no validation instances"}
    if not any(table["masked_lm_positions"].to_pylist()):
        # dynamically masked instances carry no masks: scoring them would need the loader's masking
        return {"skipped": "validation instances are unmasked (dynamic masking)",
                "fill_mask": fill_mask_examples(model_dir, table, cfg.fill_mask_examples, cfg.top_k)}
    return {**mlm_metrics(model_dir, table), "fill_mask": fill_mask_examples(model_dir, table, cfg.fill_mask_examples,
                                                                             cfg.top_k)}
