#!/usr/bin/env bash
# One prepared GPU session, sized for a short lease: the whole script stops itself after DEADLINE
# seconds of wall time (default 480, inside a 10-minute command limit with time to spare):
#   1. the CUDA cases of tests/test_devices.py (CPU/GPU agreement, no host sync in a training step);
#   2. training throughput of every model at batch 256, bf16 and fp32 (benchmarks/train_throughput.py);
#   3. the paper preset of the four Table 1 models on HAM10000, each stopped by SIGTERM after
#      SECONDS_PER_MODEL seconds (the trainer checkpoints the finished step and exits 130), then
#      Table 1 on what they reached.
# What it reports lands in $OUT, at most 8 files: env.txt, tests.txt, throughput.md, train.txt,
# logs.jsonl, summary.md, table1.md, table1.csv. The runs themselves stay on the GPU machine (the
# checkpoints with optimizer state are ~60 MiB together); calling the script again on the same,
# still-warm machine resumes them.
#
# Here, once: factorlens data export ham10000:../shared/data/ham10000 --out .carry/ham64.npz --compress
# There:      bash benchmarks/gpu_session.sh           (carry .carry/ham64.npz, 46 MiB)
# Dry run on a CPU:
#   DEVICE=cpu SECONDS_PER_MODEL=15 PYTHON=.venv/bin/python OUT=/tmp/gpu-dry/out RUNS=/tmp/gpu-dry \
#       bash benchmarks/gpu_session.sh
# The repository's sources are used directly (PYTHONPATH=src): the GPU machine's own torch runs them
# and nothing has to be installed there.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

DEVICE=${DEVICE:-cuda}
DATA=${DATA:-.carry/ham64.npz}
SECONDS_PER_MODEL=${SECONDS_PER_MODEL:-60}
DEADLINE=${DEADLINE:-480}
PY=${PYTHON:-python3}
OUT=${OUT:-runs/gpu-session/out}
RUNS=${RUNS:-runs/gpu-session}
MODELS=(vae btcvae btcvae-resnet btcvae-adv)

export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 FACTORLENS_NO_PROGRESS=1
export FACTORLENS_CACHE=${FACTORLENS_CACHE:-/tmp/factorlens-cache}
mkdir -p "$OUT" "$RUNS"
started=$SECONDS
stage() { echo "== $(date -u +%H:%M:%S) (+$((SECONDS - started)) s) $*" | tee -a "$OUT/train.txt"; }
# Seconds a stage may take: its own cap, but never past the script's deadline (at least 1).
budget() {
    local left=$((DEADLINE - (SECONDS - started)))
    ((left < $1)) && echo $((left > 1 ? left : 1)) || echo "$1"
}

write_summary() {
    "$PY" - "$RUNS" "$OUT" "${MODELS[@]}" <<'EOF' 2>>"$OUT/train.txt"
import json, sys
from pathlib import Path

runs, out, models = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
lines = ["| model | iterations (checkpoint) | last log: iteration | training time (s) | images/s |",
         "|---|---:|---:|---:|---:|"]
logs = []
for model in models:
    pointer = runs / model / "checkpoint.json"
    if not pointer.exists():
        lines.append(f"| {model} | - | - | - | - |")
        continue
    latest = json.loads(pointer.read_text())["latest"]
    iteration = json.loads((runs / model / latest / "meta.json").read_text())["iteration"]
    log = runs / model / "log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    logs += [json.dumps({"model": model, **record}) for record in records]
    if records:
        last = records[-1]
        lines.append(f"| {model} | {iteration} | {last['iter']} | {last['time_s']:.0f} | "
                     f"{last['images_per_s']:.0f} |")
    else:
        lines.append(f"| {model} | {iteration} | - | - | - |")
(out / "summary.md").write_text("\n".join(lines) + "\n")
(out / "logs.jsonl").write_text("".join(line + "\n" for line in logs))
EOF
}

if [[ ! -f "$DATA" ]]; then
    echo "error: DATA=$DATA not found; write it with: factorlens data export SPEC --out $DATA --compress" >&2
    exit 2
fi

stage "environment"
{
    "$PY" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
           torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"
    "$PY" -c "from PIL import features; print('Pillow WebP:', features.check('webp'))"
    "$PY" -c "from factorlens.environment import machine_line; print(machine_line())"  # CPU, GPU, oneDNN
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    echo "CPU cores: $(nproc)"
} >"$OUT/env.txt" 2>&1

stage "device tests"
# The CPU cases run in every `make test`; here only the CUDA ones.
timeout "$(budget 150)" "$PY" -m pytest -q -p no:cacheprovider tests/test_devices.py -k "cuda or gpu" \
    >"$OUT/tests.txt" 2>&1
echo "device tests: exit $?" | tee -a "$OUT/train.txt"

stage "throughput"
timeout "$(budget 120)" "$PY" -m benchmarks.train_throughput --device "$DEVICE" --batch-sizes 256 \
    --precisions bf16 fp32 --warmup 10 --steps 40 >"$OUT/throughput.md" 2>&1
echo "throughput: exit $?" | tee -a "$OUT/train.txt"

# What is left before Table 1 (~60 s) is shared by the models still to train.
for index in "${!MODELS[@]}"; do
    model=${MODELS[$index]}
    remaining=$((${#MODELS[@]} - index))
    share=$(((DEADLINE - (SECONDS - started) - 60) / remaining))
    seconds=$((share < SECONDS_PER_MODEL ? share : SECONDS_PER_MODEL))
    if ((seconds < 15)); then
        stage "skip $model: ${seconds} s left for it"
        continue
    fi
    stage "train $model for ${seconds} s"
    timeout --preserve-status -s TERM -k 20 "$seconds" "$PY" -m factorlens train --config "paper/$model" \
        --data "npz:$DATA" --out "$RUNS/$model" --resume --set "train.device=$DEVICE" \
        >>"$OUT/train.txt" 2>&1
    echo "train $model: exit $? (130 = stopped by the time limit, checkpoint written)" | tee -a "$OUT/train.txt"
done

stage "summary"
write_summary
cat "$OUT/summary.md"

stage "Table 1"
runs=()
for model in "${MODELS[@]}"; do [[ -f "$RUNS/$model/checkpoint.json" ]] && runs+=("$RUNS/$model"); done
if ((${#runs[@]})); then
    timeout "$(budget 240)" "$PY" -m factorlens evaluate "${runs[@]}" --out "$RUNS/eval" >>"$OUT/train.txt" 2>&1
    echo "evaluate: exit $?" | tee -a "$OUT/train.txt"
    cp "$RUNS/eval/table1.md" "$RUNS/eval/table1.csv" "$OUT/" 2>/dev/null
fi
stage "done"
