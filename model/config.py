"""The pretrain stage's one typed config: BERT architecture, optimisation and run bookkeeping."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PretrainConfig(BaseModel):
    """BERT pretraining (MLM + NSP) on instance shards; vocab_size comes from the tokenizer."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    # Architecture (BERT-tiny by default: 2 layers x 128 hidden).
    hidden_size: int = Field(default=128, ge=8)
    """Width of the token representations."""
    num_hidden_layers: int = Field(default=2, ge=1)
    """Number of transformer encoder layers."""
    num_attention_heads: int = Field(default=2, ge=1)
    """Attention heads per layer; must divide hidden_size."""
    intermediate_size: int = Field(default=512, ge=1)
    """Width of the feed-forward layer inside each encoder layer."""
    max_position_embeddings: int = Field(default=512, ge=8)
    """Longest sequence (in tokens) the position embeddings cover."""
    hidden_dropout_prob: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout on embeddings and on every residual branch."""
    attention_probs_dropout_prob: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout on the attention probabilities."""

    # Optimisation.
    batch_size: int = Field(default=64, ge=1)
    """Sequences per optimizer step."""
    max_steps: int = Field(default=1000, ge=1)
    """Optimizer steps to train for; the learning rate reaches 0 here."""
    learning_rate: float = Field(default=1e-3, gt=0.0)
    """Peak learning rate, reached at the end of warmup."""
    warmup_steps: int = Field(default=100, ge=0)
    """Steps of linear warmup from ~0 to learning_rate before the linear decay to 0."""
    weight_decay: float = Field(default=0.01, ge=0.0)
    """Decoupled AdamW weight decay; biases and LayerNorm weights are never decayed."""
    adam_beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    """AdamW first-moment decay."""
    adam_beta2: float = Field(default=0.999, ge=0.0, lt=1.0)
    """AdamW second-moment decay."""
    adam_epsilon: float = Field(default=1e-6, gt=0.0)
    """AdamW denominator epsilon (Google BERT uses 1e-6)."""
    max_grad_norm: float = Field(default=1.0, ge=0.0)
    """Clip the global gradient L2 norm to this value; 0 disables clipping."""

    # Bookkeeping.
    eval_every: int = Field(default=200, ge=1)
    """Evaluate on the validation split every this many steps (and always at the end)."""
    eval_batches: int = Field(default=20, ge=0)
    """Validation batches per evaluation (the same leading batches each time); 0 = the whole split."""
    checkpoint_every: int = Field(default=200, ge=1)
    """Write a resumable checkpoint every this many steps (and always at the end)."""
    keep_checkpoints: int = Field(default=2, ge=1)
    """How many of the most recent checkpoints to keep on disk."""
    log_every: int = Field(default=20, ge=1)
    """Report training metrics every this many steps, averaged over the window."""
    seed: int = Field(default=0, ge=0)
    """Seed for weight init, dropout and the training data order."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: auto = cuda when available, else cpu."""
    num_workers: int = Field(default=0, ge=0)
    """DataLoader worker processes for batch collation; 0 = collate in the training process."""

    @model_validator(mode="after")
    def _check_consistency(self) -> PretrainConfig:
        problems = []
        if self.hidden_size % self.num_attention_heads:
            problems.append(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                f"{self.num_attention_heads}; pick heads that divide the hidden size"
            )
        if self.warmup_steps > self.max_steps:
            problems.append(
                f"warmup_steps={self.warmup_steps} exceeds max_steps={self.max_steps}; "
                f"valid: 0 <= warmup_steps <= max_steps"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self
