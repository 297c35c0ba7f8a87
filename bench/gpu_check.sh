#!/usr/bin/env bash
# One short GPU session: BERT-base MFU (bench/gpu_bert_base.py) and the real trainer on one GPU.
#
#   bash bench/gpu_check.sh DATA_DIR OUT_DIR [all|figures|trainer]
#
# figures: the MFU runs of gpu_bert_base.py (~6 min); trainer: the real trainer, then the no-dropout
# reference (~5 min); all (default): both. A lent device allows 10 minutes per command, so a session
# can run the two parts as two commands.
#
# DATA_DIR holds `tokenizer/` and `instances/` (train/, validation/) from the tokenize and instances
# stages, e.g. copies of data/tokenize/<id>/tokenizer and data/instances/<id>. Prints figures and
# writes logs, metrics and stats under OUT_DIR; asserts nothing. Runs from the repo root, with the
# repo on PYTHONPATH. About 10 minutes on an H100/H200, most of it torch.compile (max-autotune the longest).
set -uo pipefail
data=${1:?usage: bash bench/gpu_check.sh DATA_DIR OUT_DIR [all|figures|trainer]}
out=${2:?usage: bash bench/gpu_check.sh DATA_DIR OUT_DIR [all|figures|trainer]}
part=${3:-all}
case $part in all|figures|trainer) ;; *) echo "part must be all, figures or trainer, not $part" >&2; exit 2 ;; esac
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
python3 - <<'EOF'
import torch, transformers
print(f"torch {torch.__version__}, transformers {transformers.__version__}, cuda {torch.version.cuda}, "
      f"{torch.cuda.get_device_name()}")
EOF
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader

bench() {  # name, args...
    local name=$1; shift
    echo "== gpu_bert_base $name: $*"
    timeout 240 python3 bench/gpu_bert_base.py "$@" 2>&1 | tee "$out/bert_base_$name.log" \
        | grep -v -i "warn\|softmax\|^$"
}
# 2026-11-28 on an H200: compiled b256 32.8% MFU, compiled b512 34.8%, eager b256 24.1% (bench/README.md),
# with an all-ones attention mask and the real-slot MLM head (3 graph breaks, a host sync in each).
# Runs go in order of what they tell, so a run cut by the device's time limit is the least needed.
if [ "$part" != trainer ]; then
    bench compiled_b256 --profile 3          # the figure the target is about, then its top kernels
    bench compiled_b512 --batch-size 512     # the target names no batch size; b512 was 2 points higher on 11-28
    bench before_b256 --attention-mask --dynamic-head      # the 2026-11-28 configuration, for attribution
    bench autotune_b256 --compile-mode max-autotune-no-cudagraphs   # Triton GEMMs, fused epilogues; compiles for minutes
fi
[ "$part" = figures ] && exit 0

train() {  # name, extra --set args...
    local name=$1; shift
    echo "== model.launch $name: $*"
    rm -rf "/tmp/run_$name"
    timeout 360 python3 -m model.launch --instances "$data/instances" --tokenizer "$data/tokenizer" \
        --out "/tmp/run_$name" --set device=cuda --set eval_every=1000 \
        --metrics-file "$out/metrics_$name.jsonl" --stats-file "$out/stats_$name.json" "$@" \
        >"$out/train_$name.log" 2>&1
    echo "exit $? ; metrics:"
    cat "$out/metrics_$name.jsonl" 2>/dev/null
    tail -n 3 "$out/train_$name.log"
    cat "$out/stats_$name.json" 2>/dev/null; echo
    ls "/tmp/run_$name/model" 2>/dev/null | tr '\n' ' '; echo
}
# The trainer's own path: bf16 autocast, fused AdamW, MFU metric, checkpoints, export; compiled, with
# length bucketing so most batches are unpadded (no attention mask). Batch shapes vary, so torch.compile
# compiles about 3 times (seen on CPU): the early windows include it, the last ones do not.
# (fp16 + loss scaler ran on 2026-11-28: BERT-mini, 60 steps, finite losses.)
train base_bf16_compiled --set size=base --set precision=bf16 --set batch_size=256 --set max_steps=80 \
    --set warmup_steps=10 --set log_every=20 --set checkpoint_every=40 --set compile=true \
    --set length_bucketing=true --set num_workers=4

bench no_dropout_b256 --dropout 0        # Cramming's and MosaicBERT's pretraining setting, for reference
