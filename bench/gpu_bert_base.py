"""Throughput and model FLOPs utilisation of BERT-base pretraining steps on one GPU (seq 128, bf16).

The engine's own pieces (sparse-MLM BERT with static shapes, fused AdamW, clipping, bf16 autocast,
torch.compile) on a fixed synthetic batch, so the figure is the GPU's, not the loader's. The batch is
full-length, so, as in the trainer, no attention mask is passed. --attention-mask --dynamic-head
restore the 2026-11-28 configuration (all-ones mask, real-slot head) to attribute a difference.
Prints one line per measurement and a summary; asserts nothing. Needs CUDA unless --device cpu.

    PYTHONPATH=. python bench/gpu_bert_base.py                     # BERT-base, batch 256, seq 128, bf16
    PYTHONPATH=. python bench/gpu_bert_base.py --no-compile
    PYTHONPATH=. python bench/gpu_bert_base.py --device cpu --steps 2 --warmup 1 --size tiny   # dry run
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from model.bert import build_model, count_parameters, train_flops
from model.config import SIZES, PretrainConfig
from model.metrics import GPU_PEAK_FLOPS, gpu_peak_flops
from model.optim import build_optimizer


def synthetic_batch(batch_size: int, seq_len: int, predictions: int, vocab_size: int, device: torch.device) -> dict:
    """A full-length MLM/NSP batch: random ids, `predictions` distinct masked positions per row (never 0)."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, vocab_size, (batch_size, seq_len), generator=generator)
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, seq_len // 2 :] = 1
    positions = torch.rand(batch_size, seq_len - 1, generator=generator).topk(predictions, dim=1).indices + 1
    batch = {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": torch.ones_like(input_ids),
        "masked_lm_positions": positions.sort(dim=1).values,
        "masked_lm_ids": torch.randint(5, vocab_size, positions.shape, generator=generator),
        "masked_lm_weights": torch.ones(positions.shape),
        "next_sentence_label": torch.randint(0, 2, (batch_size,), generator=generator),
    }
    return {name: tensor.to(device) for name, tensor in batch.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="base")
    parser.add_argument("--vocab-size", type=int, default=30_522, help="Google BERT's uncased WordPiece vocab")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--predictions", type=int, default=20, help="masked positions per sequence")
    parser.add_argument("--warmup", type=int, default=15, help="untimed steps (compilation happens here)")
    parser.add_argument("--steps", type=int, default=50, help="timed steps")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--no-compile", action="store_true", help="eager mode instead of torch.compile")
    parser.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune-no-cudagraphs")
    parser.add_argument("--dropout", type=float, default=None, help="override the preset's dropout (0.1)")
    parser.add_argument("--attention-mask", action="store_true",
                        help="pass an all-ones attention mask, as the trainer did before 2026-11-29")
    parser.add_argument("--dynamic-head", action="store_true",
                        help="run the MLM head on the real slots only (a nonzero(): host sync, graph break)")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="after timing, profile this many steps and print the top GPU kernels")
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the GPU's dense bf16 peak")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the measurement; returns the summary figures (also printed)."""
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(
            "gpu_bert_base.py needs a CUDA GPU and torch sees none; for a CPU dry run of the logic use "
            "--device cpu --steps 2 --warmup 1 --size tiny"
        )
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else None
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    dropout = {} if args.dropout is None else {"hidden_dropout_prob": args.dropout, "attention_probs_dropout_prob": args.dropout}
    cfg = PretrainConfig(size=args.size, batch_size=args.batch_size, device=args.device, **dropout)
    torch.manual_seed(0)
    model = build_model(cfg, vocab_size=args.vocab_size, pad_token_id=0, static_shapes=not args.dynamic_head)
    model = model.to(device)
    optimizer = build_optimizer(model, cfg)  # fused AdamW
    batch = synthetic_batch(args.batch_size, args.seq_len, args.predictions, args.vocab_size, device)
    if not args.attention_mask:
        batch["attention_mask"] = None
    compiled = device.type == "cuda" and not args.no_compile
    step_model = torch.compile(model, mode=args.compile_mode) if compiled else model
    flops_per_step = train_flops(model, args.batch_size, args.seq_len, args.batch_size * args.predictions)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else gpu_peak_flops(device)
    mode = f"torch.compile {args.compile_mode or 'default'}" if compiled else "eager"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"torch {torch.__version__} on {name}; BERT-{args.size} {count_parameters(model):,} parameters, vocab "
        f"{args.vocab_size}, batch {args.batch_size} x seq {args.seq_len}, {args.predictions} predictions/seq, "
        f"{'bf16' if dtype else 'fp32'}, {mode}, "
        f"dropout {cfg.hidden_dropout_prob}, attention mask {'all ones' if args.attention_mask else 'none'}, "
        f"MLM head on {'real' if args.dynamic_head else 'all'} slots; "
        f"{flops_per_step / 1e12:.2f} TFLOP/step; peak {peak / 1e12 if peak else float('nan'):.0f} TFLOP/s"
    )

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = step_model(**batch)
        loss = out.mlm_loss + out.nsp_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    started = time.perf_counter()
    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    breaks = sum(torch._dynamo.utils.counters["graph_break"].values())
    print(f"warmup: {args.warmup} steps in {time.perf_counter() - started:.1f} s; {breaks} graph breaks")

    started = time.perf_counter()
    losses = [step() for _ in range(args.steps)]
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    final_loss = losses[-1].item()
    summary = {
        "seconds_per_step": seconds / args.steps,
        "sequences_per_second": args.batch_size * args.steps / seconds,
        "tokens_per_second": args.batch_size * args.seq_len * args.steps / seconds,
        "tflops_per_second": flops_per_step * args.steps / seconds / 1e12,
        "mfu": flops_per_step * args.steps / seconds / peak if peak else float("nan"),
        "final_loss": final_loss,
    }
    if device.type == "cuda":
        summary["max_allocated_gb"] = torch.cuda.max_memory_allocated() / 2**30
    print(
        f"{summary['seconds_per_step'] * 1e3:.1f} ms/step, {summary['sequences_per_second']:,.0f} sequences/s, "
        f"{summary['tokens_per_second']:,.0f} tokens/s, {summary['tflops_per_second']:.1f} TFLOP/s, "
        f"MFU {summary['mfu']:.1%} (known peaks: {', '.join(GPU_PEAK_FLOPS)}), loss {final_loss:.3f}"
    )
    if args.profile:
        print_profile(step, args.profile, device)
    return summary


def print_profile(step, steps: int, device: torch.device) -> None:
    """The kernels that take the most GPU (or CPU) time over `steps` more steps."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort_by, row_limit=30, max_name_column_width=90))


if __name__ == "__main__":
    main()
