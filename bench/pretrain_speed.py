"""CPU pretraining throughput: this engine vs Hugging Face `Trainer` on `BertForPreTraining`, and the loader's speed.

For each size preset (tiny and mini by default) both train the same BERT config on the same
instance shards with the same batch, AdamW, warmup and clipping: the engine through
`model.train.pretrain` (sparse MLM head), the baseline through `transformers.Trainer` (dense MLM
head over every position), each in its own process. Instances are full length (seq_len tokens,
max_predictions masked), so tokens/s = sequences/s x seq_len for both. Then the engine's loader
alone (read, dynamically mask, pad) is timed against what the engine's training step consumes.
Prints figures; asserts nothing.

    PYTHONPATH=. python bench/pretrain_speed.py                       # tiny + mini, vocab 16k, batch 64, seq 128
    PYTHONPATH=. python bench/pretrain_speed.py --sizes tiny --repeat 1 --steps 10   # quicker

The primary figure is tokens per CPU-second of each training process (every thread), over all steps after
the warmup; wall tokens/s beside it. Each system runs --repeat times, alternating, and the median and the
spread (min-max) are printed; ratios divide medians measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader
from transformers import (
    AutoTokenizer,
    BertForPreTraining,
    BertTokenizerFast,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from model.bert import build_bert_config
from model.config import PretrainConfig
from model.data import GlobalBatchSampler, InstanceDataset, MicroBatchSampler, PretrainingCollator, PretrainingDataset
from model.dynamic_masking import DynamicMasker, MaskingSpec
from model.train import pretrain
from tasks.instances.generate import instance_schema

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

def write_workspace(root: Path, vocab_size: int, count: int, seq_len: int, predictions: int) -> tuple[Path, Path]:
    """A WordPiece tokenizer folder and instance shards (train + validation) of full-length random instances."""
    tokenizer_dir, instances_dir = root / "tokenizer", root / "instances"
    words = [f"w{i}" for i in range(vocab_size - len(SPECIAL))]
    BertTokenizerFast(vocab={t: i for i, t in enumerate(SPECIAL + words)}).save_pretrained(str(tokenizer_dir))
    rng = np.random.default_rng(0)
    for split, rows in (("train", count), ("validation", 64)):
        (instances_dir / split).mkdir(parents=True)
        input_ids = rng.integers(len(SPECIAL), vocab_size, size=(rows, seq_len))
        input_ids[:, 0], input_ids[:, seq_len // 2], input_ids[:, -1] = 2, 3, 3  # [CLS] A [SEP] B [SEP]
        token_type_ids = np.zeros((rows, seq_len), dtype=np.int64)
        token_type_ids[:, seq_len // 2 + 1 :] = 1
        positions = np.sort(rng.permuted(np.tile(np.arange(1, seq_len // 2), (rows, 1)), axis=1)[:, :predictions])
        labels = np.take_along_axis(input_ids, positions, axis=1)
        masked = input_ids.copy()
        np.put_along_axis(masked, positions, 4, axis=1)
        schema = instance_schema(vocab_size)  # the instances stage's own shard schema
        table = pa.table(
            {
                "input_ids": masked.tolist(),
                "token_type_ids": token_type_ids.tolist(),
                "masked_lm_positions": positions.tolist(),
                "masked_lm_ids": labels.tolist(),
                "next_sentence_label": rng.integers(0, 2, size=rows).tolist(),
            },
            schema=schema,
        )
        with pa.OSFile(str(instances_dir / split / "instances-00000.arrow"), "wb") as sink:
            with pa.ipc.new_stream(sink, schema) as writer:
                writer.write_table(table)
    return tokenizer_dir, instances_dir


def _stamp() -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process: every thread, torch's intra-op pool included)."""
    return time.perf_counter(), time.process_time()


def timed_rate(stamps: list[tuple[float, float]], warmup: int, batch_size: int) -> dict[str, float]:
    """Sequences per CPU-second and per wall second over every step after `warmup`, from per-step end stamps.

    CPU time is the primary figure: other load on a shared machine stretches wall time but hardly the CPU
    a step needs. Both are totals over all timed steps, not the fastest step.
    """
    (wall_0, cpu_0), (wall_1, cpu_1) = stamps[warmup - 1], stamps[-1]
    sequences = batch_size * (len(stamps) - warmup)
    return {"seq_per_cpu_s": sequences / (cpu_1 - cpu_0), "seq_per_s": sequences / (wall_1 - wall_0)}


def engine_rate(cfg: PretrainConfig, instances_dir: Path, tokenizer_dir: Path, out_dir: Path,
                warmup: int) -> dict[str, float]:
    """Sequences per CPU-second and per second of model.train.pretrain (stamps from its progress callback)."""
    stamps: list[tuple[float, float]] = []
    pretrain(cfg, instances_dir, tokenizer_dir, out_dir, progress=lambda step, total: stamps.append(_stamp()))
    return timed_rate(stamps, warmup, cfg.batch_size)


class _Stamps(TrainerCallback):
    def __init__(self):
        self.stamps: list[tuple[float, float]] = []

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201  # TrainerCallback API
        self.stamps.append(_stamp())


def hf_trainer_rate(cfg: PretrainConfig, instances_dir: Path, tokenizer_dir: Path, out_dir: Path,
                    warmup: int) -> dict[str, float]:
    """Sequences per CPU-second and per second of transformers.Trainer on BertForPreTraining (dense head), same
    config and data."""
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    dataset = InstanceDataset(instances_dir, "train")
    collator = PretrainingCollator(tokenizer.pad_token_id)

    def collate(indices: list[dict]) -> dict[str, torch.Tensor]:
        batch = collator([dataset[item["index"]] for item in indices])
        labels = torch.full_like(batch["input_ids"], -100)  # dense labels: -100 except at masked positions
        real = batch["masked_lm_weights"] > 0
        rows = torch.arange(labels.shape[0]).unsqueeze(1).expand_as(real)
        labels[rows[real], batch["masked_lm_positions"][real]] = batch["masked_lm_ids"][real]
        return {
            "input_ids": batch["input_ids"],
            "token_type_ids": batch["token_type_ids"],
            "attention_mask": batch["attention_mask"],
            "labels": labels,
            "next_sentence_label": batch["next_sentence_label"],
        }

    torch.manual_seed(cfg.seed)
    model = BertForPreTraining(build_bert_config(cfg, len(tokenizer), tokenizer.pad_token_id))
    args = TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=cfg.batch_size, max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
        adam_beta1=cfg.adam_beta1, adam_beta2=cfg.adam_beta2, adam_epsilon=cfg.adam_epsilon,
        max_grad_norm=cfg.max_grad_norm, lr_scheduler_type="linear", logging_strategy="no", save_strategy="no",
        eval_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0, disable_tqdm=True,
        remove_unused_columns=False, seed=cfg.seed,
    )  # fmt: skip
    stamps = _Stamps()
    rows = [{"index": i} for i in range(len(dataset))]
    Trainer(model=model, args=args, train_dataset=rows, data_collator=collate, callbacks=[stamps]).train()
    return timed_rate(stamps.stamps, warmup, cfg.batch_size)


def loader_rate(instances_dir: Path, tokenizer_dir: Path, batch_size: int, batches: int, dynamic: bool) -> float:
    """Sequences/s the engine's training loader delivers in-process (0 workers): read, (mask,) pad."""
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    masker = DynamicMasker(MaskingSpec(0.15, 20, whole_word_mask=True), tokenizer, seed=0) if dynamic else None
    dataset = PretrainingDataset(InstanceDataset(instances_dir, "train"), masker)
    sampler = MicroBatchSampler(GlobalBatchSampler(len(dataset), batch_size, seed=0))
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=PretrainingCollator(tokenizer.pad_token_id))
    iterator = iter(loader)
    next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - started)


def bench_config(size: str, args: argparse.Namespace) -> PretrainConfig:
    """The pretrain config both systems train with."""
    return PretrainConfig(
        size=size, batch_size=args.batch_size, max_steps=args.steps, warmup_steps=args.warmup,
        eval_every=args.steps, eval_batches=1, checkpoint_every=args.steps, log_every=args.steps,
        device="cpu", max_position_embeddings=max(512, args.seq_len),
    )  # fmt: skip


def run_child(system: str, size: str, root: Path, args: argparse.Namespace, repetition: int) -> dict[str, float]:
    """One system's rates in a fresh process: neither inherits the other's heap or allocator settings."""
    command = [sys.executable, __file__, "--child", system, size, str(root)] + [
        f"--{name.replace('_', '-')}={value}" for name, value in vars(args).items()
        if name not in ("sizes", "child", "repeat")
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(command, stdout=subprocess.PIPE, check=True, text=True, env=env)
    rates = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {size} {system:10s} run {repetition + 1}: {rates['seq_per_cpu_s'] * args.seq_len:9,.0f} tokens/CPU-s, "
          f"{rates['seq_per_s'] * args.seq_len:9,.0f} tokens/s", flush=True)
    return rates


def child(system: str, size: str, root: Path, args: argparse.Namespace) -> None:
    """Train one system on the parent's workspace and print its rates (JSON) as the last line."""
    cfg = bench_config(size, args)
    tokenizer_dir, instances_dir = root / "tokenizer", root / "instances"
    rates = (engine_rate if system == "engine" else hf_trainer_rate)(
        cfg, instances_dir, tokenizer_dir, root / f"{system}-{size}-{os.getpid()}", args.warmup  # fresh: no resume
    )
    print(json.dumps(rates))


def _spread(values: list[float]) -> str:
    """median (min-max) of figures, thousands separated."""
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "mini"])
    parser.add_argument("--vocab-size", type=int, default=16_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--max-predictions", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps at the start of each run")
    parser.add_argument("--steps", type=int, default=30, help="steps per run, warmup included")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each system per size (median and spread)")
    parser.add_argument("--child", nargs=3, metavar=("SYSTEM", "SIZE", "WORKSPACE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        system, size, root = args.child
        child(system, size, Path(root), args)
        return

    results = {}
    with tempfile.TemporaryDirectory(prefix="pretrain-speed-") as tmp:
        root = Path(tmp)
        count = args.batch_size * (args.steps + 2)
        tokenizer_dir, instances_dir = write_workspace(root, args.vocab_size, count, args.seq_len, args.max_predictions)
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads; vocab {args.vocab_size}, batch "
            f"{args.batch_size}, seq {args.seq_len}, {args.max_predictions} predictions/seq, {args.steps} steps "
            f"({args.warmup} untimed); {args.repeat} runs of each system, alternating, each in its own process"
        )
        for size in args.sizes:
            cfg = bench_config(size, args)
            runs: dict[str, list[dict[str, float]]] = {"engine": [], "hf_trainer": []}
            for repetition in range(args.repeat):  # alternating, so slow spells of the machine hit both
                for system in runs:
                    runs[system].append(run_child(system, size, root, args, repetition))
            cpu = {system: [r["seq_per_cpu_s"] * args.seq_len for r in rs] for system, rs in runs.items()}
            wall = {system: [r["seq_per_s"] * args.seq_len for r in rs] for system, rs in runs.items()}
            results[size] = {"tokens_per_cpu_s": cpu, "tokens_per_s": wall}
            print(
                f"{size:6s} ({cfg.num_hidden_layers}x{cfg.hidden_size}), median (min-max) of {args.repeat}: "
                f"tokens per CPU-second: engine {_spread(cpu['engine'])} | HF Trainer {_spread(cpu['hf_trainer'])} | "
                f"ratio {statistics.median(cpu['engine']) / statistics.median(cpu['hf_trainer']):.2f}x; "
                f"tokens/s (wall): engine {_spread(wall['engine'])} | HF Trainer {_spread(wall['hf_trainer'])} | "
                f"ratio {statistics.median(wall['engine']) / statistics.median(wall['hf_trainer']):.2f}x", flush=True
            )
        consumed = max(statistics.median(r["tokens_per_s"]["engine"]) for r in results.values()) / args.seq_len
        for dynamic in (False, True):
            delivered = loader_rate(instances_dir, tokenizer_dir, args.batch_size, 30, dynamic)
            print(
                f"loader ({'dynamic masking' if dynamic else 'static masks'}, 0 workers): {delivered:,.0f} seq/s = "
                f"{delivered / consumed:.0f}x what the engine consumes above (median wall rate, {consumed:.1f} seq/s)"
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
