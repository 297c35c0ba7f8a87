"""BERT with MLM + NSP pretraining heads whose MLM head runs only at the masked positions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForPreTraining

from model.config import PretrainConfig


def build_bert_config(cfg: PretrainConfig, vocab_size: int, pad_token_id: int) -> BertConfig:
    """The transformers BertConfig for `cfg`, with the vocabulary taken from the tokenizer."""
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        hidden_dropout_prob=cfg.hidden_dropout_prob,
        attention_probs_dropout_prob=cfg.attention_probs_dropout_prob,
        type_vocab_size=2,
        pad_token_id=pad_token_id,
        architectures=["BertForPreTraining"],
        attn_implementation="sdpa",  # fused scaled-dot-product attention (flash / memory-efficient on GPU)
    )


@dataclass
class PretrainingOutput:
    """Losses, logits and correct counts of one pretraining forward pass."""

    loss: torch.Tensor  # scalar: mlm_loss + nsp_loss
    mlm_loss: torch.Tensor  # scalar: mean cross-entropy over the real masked positions
    nsp_loss: torch.Tensor  # scalar: mean cross-entropy over the NSP-labelled sequences (0 when none)
    mlm_loss_sum: torch.Tensor  # scalar: summed cross-entropy, to normalise over a whole global batch
    nsp_loss_sum: torch.Tensor  # scalar
    mlm_logits: torch.Tensor  # (num_predictions, vocab) at the real masked positions; static_shapes: every slot
    nsp_logits: torch.Tensor  # (batch, 2)
    mlm_correct: torch.Tensor  # scalar float: correct predictions at real masked positions
    mlm_count: torch.Tensor  # scalar float: real masked positions in the batch
    nsp_correct: torch.Tensor  # scalar int64
    nsp_count: torch.Tensor  # scalar int64: sequences with an NSP label (0/1) in the batch


class BertForSparsePreTraining(BertForPreTraining):
    """transformers' BertForPreTraining (same parameters, same names, tied decoder) with a sparse MLM head.

    The dense head projects every position onto the vocabulary; on a small model that projection
    dominates the step (FACTS.md: 3.7x slower on 2 cores), yet only ~15% of positions carry a label.
    Here the transform + decoder run on the gathered masked positions only, which gives the same
    logits there. The state dict loads unchanged into BertForPreTraining (see model/export.py).

    `static_shapes=True` (GPU, torch.compile) runs the head on every prediction slot, padded ones
    included, and weights the loss by `masked_lm_weights` as Google's BERT does: no tensor's shape
    depends on the data, so the step has no host sync and compiles to one graph (selecting the real
    slots is a nonzero(), which syncs and breaks the graph). False (CPU eager) skips the padded slots,
    which is less work. Losses, counts and correct counts are the same either way.

    NSP: sequences labelled -1 (MLM-only instances, e.g. RoBERTa-style packing) carry no NSP loss, and
    `nsp=False` drops the NSP loss for all; the NSP head stays in the model so the export keeps its shape.
    """

    def __init__(self, config: BertConfig, nsp: bool = True, static_shapes: bool = False):
        super().__init__(config)
        self.nsp = nsp
        self.static_shapes = static_shapes

    def forward(  # type: ignore[override]  # pretraining batch in, PretrainingOutput out
        self,
        input_ids: torch.Tensor,  # (batch, seq_len) int64
        token_type_ids: torch.Tensor,  # (batch, seq_len) int64
        attention_mask: torch.Tensor | None,  # (batch, seq_len) int64, 1 = real token; None = no padding
        masked_lm_positions: torch.Tensor,  # (batch, max_predictions) int64, indices into seq_len
        masked_lm_ids: torch.Tensor,  # (batch, max_predictions) int64, original token ids
        masked_lm_weights: torch.Tensor,  # (batch, max_predictions) float, 1 = real prediction, 0 = padding
        next_sentence_label: torch.Tensor,  # (batch,) int64, 0 = B follows A, 1 = B is random, -1 = none
    ) -> PretrainingOutput:
        # attention_mask=None lets SDPA pick flash attention; transformers only drops an all-ones mask
        # outside torch.compile (it cannot look at the values while tracing).
        encoded = self.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            return_dict=True,
        )
        sequence_output = encoded.last_hidden_state  # (batch, seq_len, hidden)
        pooled_output = encoded.pooler_output  # (batch, hidden)

        hidden_size = sequence_output.shape[-1]
        index = masked_lm_positions.unsqueeze(-1).expand(-1, -1, hidden_size)  # (batch, max_predictions, hidden)
        masked_hidden = sequence_output.gather(1, index).flatten(0, 1)  # (batch * max_predictions, hidden)
        mlm_targets = masked_lm_ids.flatten()  # (batch * max_predictions,)
        mlm_weights = masked_lm_weights.flatten().float()  # (batch * max_predictions,)
        if not self.static_shapes:  # keep the real slots only: (num_predictions, ...)
            real = mlm_weights > 0
            masked_hidden, mlm_targets, mlm_weights = masked_hidden[real], mlm_targets[real], mlm_weights[real]
        mlm_logits = self.cls.predictions(masked_hidden)  # (slots, vocab)
        token_loss = F.cross_entropy(mlm_logits.float(), mlm_targets, reduction="none")  # (slots,)
        # Sums (not means) so a caller can normalise over a global batch split across micro-batches/ranks.
        mlm_loss_sum = (token_loss * mlm_weights).sum()
        mlm_count = mlm_weights.sum()  # real masked positions, a float tensor
        if mlm_targets.numel() == 0:  # nothing to predict: keep the head in the graph (DDP expects every gradient)
            mlm_loss_sum = mlm_loss_sum + mlm_logits.sum() * 0.0

        nsp_logits = self.cls.seq_relationship(pooled_output)  # (batch, 2)
        nsp_labels = next_sentence_label if self.nsp else torch.full_like(next_sentence_label, -1)
        labelled = nsp_labels >= 0  # (batch,) bool
        nsp_loss_sum = (
            F.cross_entropy(nsp_logits.float(), nsp_labels, ignore_index=-1, reduction="sum") + nsp_logits.sum() * 0.0
        )
        nsp_count = labelled.sum()
        mlm_loss = mlm_loss_sum / mlm_count.clamp(min=1)
        nsp_loss = nsp_loss_sum / nsp_count.clamp(min=1)

        return PretrainingOutput(
            loss=mlm_loss + nsp_loss,
            mlm_loss=mlm_loss,
            nsp_loss=nsp_loss,
            mlm_loss_sum=mlm_loss_sum,
            nsp_loss_sum=nsp_loss_sum,
            mlm_logits=mlm_logits,
            nsp_logits=nsp_logits,
            mlm_correct=((mlm_logits.argmax(-1) == mlm_targets) * mlm_weights).sum(),
            mlm_count=mlm_count,
            nsp_correct=((nsp_logits.argmax(-1) == nsp_labels) & labelled).sum(),
            nsp_count=nsp_count,
        )


def build_model(
    cfg: PretrainConfig, vocab_size: int, pad_token_id: int, static_shapes: bool = False
) -> BertForSparsePreTraining:
    """A freshly initialised (transformers' BERT init, seeded by the caller) pretraining model."""
    return BertForSparsePreTraining(
        build_bert_config(cfg, vocab_size, pad_token_id), nsp=cfg.nsp, static_shapes=static_shapes
    )


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct trainable parameters (the tied decoder weight counts once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train_flops_per_sequence(model: BertForSparsePreTraining, seq_len: int, predictions: int) -> float:
    """Model FLOPs of one training step (forward + backward = 3x forward) for one sequence.

    Matmuls: 2 FLOPs per encoder weight per token, 2 x 2 x seq_len x hidden per token per layer for
    QK^T and attention x V, and the sparse MLM head's transform + decoder at `predictions` positions
    only, so the MFU counts the work this model really does (pooler and NSP head are negligible).
    """
    config = model.config
    encoder_weights = sum(p.numel() for p in model.bert.encoder.parameters() if p.dim() == 2)  # matrices
    attention = 2 * 2 * config.num_hidden_layers * seq_len * config.hidden_size  # per token
    head = 2 * (config.hidden_size * config.hidden_size + config.hidden_size * config.vocab_size)  # per prediction
    forward = seq_len * (2 * encoder_weights + attention) + predictions * head
    return 3.0 * forward


def train_flops(model: BertForSparsePreTraining, batch_size: int, seq_len: int, num_predictions: int) -> float:
    """Model FLOPs of one training micro-batch (padded to seq_len) with `num_predictions` masked positions."""
    return batch_size * train_flops_per_sequence(model, seq_len, 0) + num_predictions * (
        train_flops_per_sequence(model, seq_len, 1) - train_flops_per_sequence(model, seq_len, 0)
    )
