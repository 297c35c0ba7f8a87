"""Seconds per pretraining step (forward + backward + AdamW) of our sparse-MLM BERT vs transformers' dense head.

Synthetic full-length batches (every sequence seq_len tokens, max_predictions masked positions), so the
figure is the worst case per step for that shape. Prints one line per variant; asserts nothing.

    PYTHONPATH=. python bench/pretrain_speed.py                    # BERT-tiny, vocab 16k, batch 64, seq 128
    PYTHONPATH=. python bench/pretrain_speed.py --hidden-size 256 --layers 4 --heads 4 --no-dense
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import BertForPreTraining

from model.bert import build_model, count_parameters
from model.config import PretrainConfig
from model.optim import build_optimizer


def synthetic_batch(batch_size: int, seq_len: int, max_predictions: int, vocab_size: int) -> dict[str, torch.Tensor]:
    """A full-length MLM/NSP batch with random ids and `max_predictions` distinct masked positions per row."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, vocab_size, (batch_size, seq_len), generator=generator)
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, seq_len // 2 :] = 1
    # Distinct positions per row, never [CLS] at 0: (batch, max_predictions).
    scores = torch.rand(batch_size, seq_len - 1, generator=generator)
    masked_lm_positions = scores.topk(max_predictions, dim=1).indices.sort(dim=1).values + 1
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": torch.ones_like(input_ids),
        "masked_lm_positions": masked_lm_positions,
        "masked_lm_ids": torch.randint(5, vocab_size, masked_lm_positions.shape, generator=generator),
        "masked_lm_weights": torch.ones(masked_lm_positions.shape),
        "next_sentence_label": torch.randint(0, 2, (batch_size,), generator=generator),
    }


def dense_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same batch in BertForPreTraining's form: labels (-100 = not masked) over every position."""
    labels = torch.full_like(batch["input_ids"], -100)
    labels.scatter_(1, batch["masked_lm_positions"], batch["masked_lm_ids"])
    return {
        "input_ids": batch["input_ids"],
        "token_type_ids": batch["token_type_ids"],
        "attention_mask": batch["attention_mask"],
        "labels": labels,
        "next_sentence_label": batch["next_sentence_label"],
    }


def seconds_per_step(model: torch.nn.Module, inputs: dict, cfg: PretrainConfig, warmup: int, steps: int) -> list[float]:
    """Wall seconds of each timed training step after `warmup` untimed ones."""
    optimizer = build_optimizer(model, cfg)
    model.train()
    times = []
    for i in range(warmup + steps):
        started = time.perf_counter()
        loss = model(**inputs).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=16_000)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--max-predictions", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--no-dense", action="store_true", help="skip the dense-head baseline")
    args = parser.parse_args()

    cfg = PretrainConfig(
        hidden_size=args.hidden_size,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=4 * args.hidden_size,
        batch_size=args.batch_size,
    )
    batch = synthetic_batch(args.batch_size, args.seq_len, args.max_predictions, args.vocab_size)
    torch.manual_seed(0)
    sparse = build_model(cfg, vocab_size=args.vocab_size, pad_token_id=0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.layers}x{args.hidden_size} "
        f"BERT, {count_parameters(sparse):,} parameters, vocab {args.vocab_size}, batch {args.batch_size}, "
        f"seq {args.seq_len}, {args.max_predictions} predictions/seq"
    )
    variants = [("sparse MLM head (model.bert)", sparse, batch)]
    if not args.no_dense:
        dense = BertForPreTraining(sparse.config)
        dense.load_state_dict(sparse.state_dict())
        variants.append(("dense MLM head (transformers)", dense, dense_inputs(batch)))
    for name, model, inputs in variants:
        times = seconds_per_step(model, inputs, cfg, args.warmup, args.steps)
        median = statistics.median(times)
        print(
            f"{name:32s} {median:.3f} s/step median (min {min(times):.3f}, max {max(times):.3f}), "
            f"{args.batch_size / median:.0f} sequences/s"
        )


if __name__ == "__main__":
    main()
