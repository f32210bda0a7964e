#!/usr/bin/env bash
# One prepared GPU session, sized for a short lease (about 8 minutes of wall time on one GPU):
#   1. the device tests (tests/test_devices.py: CPU/GPU agreement, no host sync in a training step);
#   2. training throughput of every model at batch 256, bf16 and fp32 (benchmarks/train_throughput.py);
#   3. the paper preset of the four Table 1 models on HAM10000, each stopped by SIGTERM after
#      SECONDS_PER_MODEL seconds (the trainer checkpoints the finished step and exits 130; a later
#      `factorlens train ... --resume` continues the same run toward 100k iterations), then Table 1.
# Everything it reports lands in $OUT (at most 8 files: env.txt, tests.txt, throughput.md, train.txt,
# table1.md, table1.csv, summary.md).
#
# On the GPU machine, from the repository root, with the compressed export carried along:
#   factorlens data export ham10000:../shared/data/ham10000 --out .carry/ham64.npz --compress   # here
#   bash benchmarks/gpu_session.sh                                                              # there
# A dry run on a CPU (what CI-less sessions can check):
#   DEVICE=cpu SECONDS_PER_MODEL=20 PYTHON=.venv/bin/python OUT=/tmp/gpu-dry bash benchmarks/gpu_session.sh
# Uses the repository's sources directly (PYTHONPATH=src), so the GPU machine's own torch is used and
# nothing has to be installed there.
set -uo pipefail

DEVICE=${DEVICE:-cuda}
DATA=${DATA:-.carry/ham64.npz}
SECONDS_PER_MODEL=${SECONDS_PER_MODEL:-60}
PY=${PYTHON:-python3}
OUT=${OUT:-runs/gpu-session/out}
RUNS=${RUNS:-runs/gpu-session}
MODELS=(vae btcvae btcvae-resnet btcvae-adv)

export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 FACTORLENS_NO_PROGRESS=1
export FACTORLENS_CACHE=${FACTORLENS_CACHE:-/tmp/factorlens-cache}
mkdir -p "$OUT" "$RUNS"
started=$SECONDS
stage() { echo "== $(date -u +%H:%M:%S) (+$((SECONDS - started)) s) $*" | tee -a "$OUT/train.txt"; }

if [[ ! -f "$DATA" ]]; then
    echo "error: DATA=$DATA not found; write it with: factorlens data export SPEC --out $DATA --compress" >&2
    exit 2
fi

stage "environment"
{
    "$PY" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
           torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    nproc
} >"$OUT/env.txt" 2>&1

stage "device tests"
timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_devices.py >"$OUT/tests.txt" 2>&1
echo "device tests: exit $?" | tee -a "$OUT/train.txt"

stage "throughput"
timeout 180 "$PY" -m benchmarks.train_throughput --device "$DEVICE" --batch-sizes 256 \
    --precisions bf16 fp32 --warmup 10 --steps 40 >"$OUT/throughput.md" 2>&1
echo "throughput: exit $?" | tee -a "$OUT/train.txt"

for model in "${MODELS[@]}"; do
    stage "train $model for ${SECONDS_PER_MODEL} s"
    # --resume: a second session continues the same runs instead of starting over.
    timeout --preserve-status -s TERM -k 30 "$SECONDS_PER_MODEL" "$PY" -m factorlens train --config "paper/$model" \
        --data "npz:$DATA" --out "$RUNS/$model" --resume --set "train.device=$DEVICE" \
        >>"$OUT/train.txt" 2>&1
    echo "train $model: exit $? (130 = stopped by the time limit, checkpoint written)" | tee -a "$OUT/train.txt"
done

stage "Table 1"
runs=()
for model in "${MODELS[@]}"; do [[ -f "$RUNS/$model/checkpoint.json" ]] && runs+=("$RUNS/$model"); done
if ((${#runs[@]})); then
    timeout 240 "$PY" -m factorlens evaluate "${runs[@]}" --out "$RUNS/eval" >>"$OUT/train.txt" 2>&1
    echo "evaluate: exit $?" | tee -a "$OUT/train.txt"
    cp "$RUNS/eval/table1.md" "$RUNS/eval/table1.csv" "$OUT/" 2>/dev/null
fi

stage "summary"
"$PY" - "$RUNS" "$OUT/summary.md" "${MODELS[@]}" <<'EOF' 2>>"$OUT/train.txt"
import json, sys
from pathlib import Path

runs, out, models = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
lines = ["| model | iterations (checkpoint) | last log: iteration | training time (s) | images/s |",
         "|---|---:|---:|---:|---:|"]
for model in models:
    pointer = runs / model / "checkpoint.json"
    if not pointer.exists():
        lines.append(f"| {model} | - | - | - | - |")
        continue
    latest = json.loads(pointer.read_text())["latest"]
    iteration = json.loads((runs / model / latest / "meta.json").read_text())["iteration"]
    log = runs / model / "log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    if records:
        last = records[-1]
        lines.append(f"| {model} | {iteration} | {last['iter']} | {last['time_s']:.0f} | "
                     f"{last['images_per_s']:.0f} |")
    else:
        lines.append(f"| {model} | {iteration} | - | - | - |")
out.write_text("\n".join(lines) + "\n")
EOF
cat "$OUT/summary.md" 2>/dev/null
stage "done"
