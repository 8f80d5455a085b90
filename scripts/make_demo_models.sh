#!/usr/bin/env bash
# Re-train the two shipped demo models from scratch and export their EMA weights into the
# package (src/ddpm_lens/demo/*.safetensors). Both train at once, one CPU thread each, in
# segments of SEGMENT steps (each segment ends in a checkpoint; later ones --resume).
# On a 2-core machine this took about 75 minutes (see README).
#
#   bash scripts/make_demo_models.sh            # or: make demo-models
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs/demo}
STEPS=${STEPS:-1000}
SEGMENT=${SEGMENT:-250}

train() {  # $1: run name, $2: config under src/ddpm_lens/demo/
  local s resume=()
  for ((s = SEGMENT; s <= STEPS; s += SEGMENT)); do
    OMP_NUM_THREADS=1 "$PY" -m ddpm_lens train --config "src/ddpm_lens/demo/$2.json" --chkpt-dir "$RUNS" \
      --name "$1" --seed 0 --max-steps "$s" --device cpu --no-progress --log-every 25 "${resume[@]}"
    resume=(--resume)
  done
  "$PY" -m ddpm_lens export --ckpt "$(ls -t "$RUNS/$1/$1"_*.pt | head -n 1)" \
    --output "src/ddpm_lens/demo/$2.safetensors"
}

train demo_baseline baseline > "${RUNS}_baseline.log" 2>&1 &
train demo_curriculum curriculum > "${RUNS}_curriculum.log" 2>&1 &
wait
echo "demo models written to src/ddpm_lens/demo/"
