"""The pretrain stage's config (one section of tasks/config.py's PipelineConfig): BERT size, optimisation, precision."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ModelSize = Literal["tiny", "mini", "small", "medium", "base", "large"]

# Google's BERT miniatures (layers x hidden) plus base and large; heads = hidden / 64, FFN = 4 x hidden.
SIZES: dict[str, dict[str, int]] = {
    name: {
        "num_hidden_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": hidden // 64,
        "intermediate_size": 4 * hidden,
    }
    for name, layers, hidden in (
        ("tiny", 2, 128),
        ("mini", 4, 256),
        ("small", 4, 512),
        ("medium", 8, 512),
        ("base", 12, 768),
        ("large", 24, 1024),
    )
}
DEFAULT_SIZE: ModelSize = "tiny"
SHAPE_FIELDS = tuple(SIZES[DEFAULT_SIZE])  # the fields a size preset fills


def override_size(fields: dict[str, Any], overridden: set[str]) -> dict[str, Any]:
    """Pretrain fields after overrides: when `size` is among the overridden fields, the shape fields a
    config file named are dropped (those overridden too are kept), so `--set pretrain.size=base` on a preset
    with hidden_size etc. trains base rather than being silently outvoted by the preset's shape."""
    if "size" not in overridden:
        return fields
    return {k: v for k, v in fields.items() if k not in SHAPE_FIELDS or k in overridden}


class PretrainConfig(BaseModel):
    """BERT pretraining (MLM, plus NSP unless off) on instance shards; vocab_size comes from the tokenizer."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    # Architecture: a size preset, any field named explicitly overrides it (an overridden size drops the
    # shape a config file named: override_size).
    size: ModelSize = DEFAULT_SIZE
    """Size preset (Google's BERT miniatures, base, large) filling the four shape fields not given explicitly."""
    hidden_size: int = Field(default=SIZES[DEFAULT_SIZE]["hidden_size"], ge=8)
    """Width of the token representations (default: from `size`)."""
    num_hidden_layers: int = Field(default=SIZES[DEFAULT_SIZE]["num_hidden_layers"], ge=1)
    """Number of transformer encoder layers (default: from `size`)."""
    num_attention_heads: int = Field(default=SIZES[DEFAULT_SIZE]["num_attention_heads"], ge=1)
    """Attention heads per layer; must divide hidden_size (default: from `size`)."""
    intermediate_size: int = Field(default=SIZES[DEFAULT_SIZE]["intermediate_size"], ge=1)
    """Width of the feed-forward layer inside each encoder layer (default: from `size`)."""
    max_position_embeddings: int = Field(default=512, ge=8)
    """Longest sequence (in tokens) the position embeddings cover."""
    hidden_dropout_prob: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout on embeddings and on every residual branch."""
    attention_probs_dropout_prob: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout on the attention probabilities."""

    # Objective.
    nsp: bool = True
    """Train the next-sentence head; false = MLM only (instances labelled -1 never count for NSP either)."""

    # Optimisation.
    batch_size: int = Field(default=64, ge=1)
    """Sequences per optimizer step, over all processes and accumulation micro-steps (the global batch)."""
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    """Micro-batches per optimizer step in each process; batch_size must divide by world_size x this."""
    max_steps: int = Field(default=1000, ge=1)
    """Optimizer steps to train for; the learning rate schedule ends here."""
    optimizer: Literal["adamw", "lamb"] = "adamw"
    """AdamW (torch's fused kernel) or LAMB (layer-wise trust ratio, for large batches as in NVIDIA's BERT)."""
    learning_rate: float = Field(default=1e-3, gt=0.0)
    """Peak learning rate, reached at the end of warmup."""
    lr_schedule: Literal["linear", "cosine", "inverse_sqrt"] = "linear"
    """Decay after warmup: linear to 0, cosine to 0, or peak x sqrt(warmup / step)."""
    warmup_steps: int = Field(default=100, ge=0)
    """Steps of linear warmup from ~0 to learning_rate before the decay."""
    weight_decay: float = Field(default=0.01, ge=0.0)
    """Decoupled weight decay; biases and LayerNorm weights are never decayed."""
    adam_beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    """First-moment decay (AdamW and LAMB)."""
    adam_beta2: float = Field(default=0.999, ge=0.0, lt=1.0)
    """Second-moment decay (AdamW and LAMB)."""
    adam_epsilon: float = Field(default=1e-6, gt=0.0)
    """Denominator epsilon (Google BERT uses 1e-6)."""
    max_grad_norm: float = Field(default=1.0, ge=0.0)
    """Clip the global gradient L2 norm to this value; 0 disables clipping (the norm is still reported)."""

    # Speed.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Autocast dtype: auto = bf16 on GPUs that compute it (Ampere on), fp16 on older ones, fp32 on CPU; fp16
    adds a gradient scaler; bf16/fp16 need a GPU."""
    compile: bool = False
    """Wrap the model in torch.compile (worth it for long GPU runs; recompiles per batch shape)."""
    length_bucketing: bool = False
    """Group instances of similar length into the same batches (less padding); the order stays seeded."""
    num_workers: int = Field(default=0, ge=0)
    """DataLoader worker processes reading, masking and collating batches; 0 = in the training process."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: auto = cuda when available, else cpu."""
    cuda_device: int | None = Field(default=None, ge=0)
    """Which GPU of this node one training process uses (a sweep sets it to train variants side by side, one
    per GPU); None = the process's local rank (0 outside torchrun). Ignored under torchrun and on CPU."""
    num_threads: int | None = Field(default=None, ge=1)
    """torch's intra-op threads in the training process (torch.set_num_threads); None = torch's default (one
    per core). On a shared CPU fewer threads can be faster per step; results may differ in the last bits."""

    # Bookkeeping.
    eval_every: int = Field(default=200, ge=1)
    """Evaluate on the validation split every this many steps (and always at the end)."""
    eval_batches: int = Field(default=20, ge=0)
    """Validation batches of batch_size sequences per evaluation (the same leading ones each time; run on
    rank 0 in micro-batches of the training micro-batch size); 0 = the whole split."""
    checkpoint_every: int = Field(default=200, ge=1)
    """Write a resumable checkpoint every this many steps (and always at the end, and on SIGTERM)."""
    keep_checkpoints: int = Field(default=2, ge=1)
    """How many of the most recent checkpoints to keep on disk."""
    log_every: int = Field(default=20, ge=1)
    """Report training metrics every this many steps, averaged over the window."""
    seed: int = Field(default=0, ge=0)
    """Seed for weight init, dropout, dynamic masking and the training data order (any non-negative int)."""

    @model_validator(mode="before")
    @classmethod
    def _fill_from_size(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("size", DEFAULT_SIZE) in SIZES:
            return {**SIZES[data.get("size", DEFAULT_SIZE)], **data}
        return data  # an unknown size is reported by the field validation

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
        if self.batch_size % self.gradient_accumulation_steps:
            problems.append(
                f"batch_size={self.batch_size} is not divisible by gradient_accumulation_steps="
                f"{self.gradient_accumulation_steps}; the global batch splits into equal micro-batches"
            )
        if self.precision in ("bf16", "fp16") and self.device == "cpu":
            problems.append(f"precision={self.precision!r} needs a GPU but device='cpu'; valid on CPU: 'auto', 'fp32'")
        if problems:
            raise ValueError("; ".join(problems))
        return self
