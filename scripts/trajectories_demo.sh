#!/usr/bin/env bash
# The across-training study, end to end on the CPU: train the tiny Baseline, C, CS and CR models
# (configs/tiny_study.json, tiny_study_c.json, tiny_cs.json, tiny_cr.json: 64 synthetic faces at
# 32 px, 5 epochs of 4 steps, a checkpoint each epoch), then `ddpm-lens trajectories` on their
# 20 checkpoints. An illustration of the command, not a finding: the models are tiny and barely
# trained. Two trainings run at once, one thread each; a rerun skips the trainings already done
# and reads every checkpoint's measures from the cache.
#
#   bash scripts/trajectories_demo.sh [OUT]      # default OUT: runs/trajectories_demo
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-runs/trajectories_demo}

train() {  # $1: config stem; skipped when its run folder already holds the 5 checkpoints
  if [ "$(ls "$OUT/chkpts/$1"/"$1"_*.pt 2>/dev/null | wc -l)" -ge 5 ]; then return; fi
  rm -f "$OUT/chkpts/$1"/"$1"_*.pt  # a run killed part-way: start it again
  OMP_NUM_THREADS=1 "$PY" -m ddpm_lens train --config "configs/$1.json" --chkpt-dir "$OUT/chkpts" \
    --seed 0 --device cpu --no-progress > "$OUT/train_$1.log" 2>&1
}

mkdir -p "$OUT"
SECONDS=0
train tiny_study & train tiny_study_c & wait
train tiny_cs & train tiny_cr & wait
echo "trained in ${SECONDS}s"
"$PY" -m ddpm_lens trajectories \
  --arm "Baseline=$OUT/chkpts/tiny_study" --arm "C=$OUT/chkpts/tiny_study_c" \
  --arm "CS=$OUT/chkpts/tiny_cs" --arm "CR=$OUT/chkpts/tiny_cr" \
  --loss_num 32 --loss_timesteps 0 10 50 100 700 --stats_num 8 --stats_timesteps 100 \
  --output_dir "$OUT/study" --no_progress
echo "done in ${SECONDS}s: open $OUT/study/index.html"
