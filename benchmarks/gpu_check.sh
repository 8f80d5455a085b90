#!/usr/bin/env bash
# The GPU check: one script, under 8 minutes on one GPU, that ends with one table.
#
#   1. the CUDA tests (pytest -m cuda): train step fp32 vs bf16/fp16 autocast, channels_last,
#      torch.compile; the visualizer on cuda; DDIM sampling; FID features
#   2. training throughput, configs/celeba.json at batch 128: the plain ddpm-torch-style fp32 step
#      vs ours in fp32, bf16 + channels_last, and that + torch.compile (benchmarks/train_throughput.py)
#   3. the seed study's visualization job on cuda (two full-size CelebA-64 trainer checkpoints of
#      random weights), and the same with --stats_samples 1000
#   4. FID's costs on the GPU: Inception feature throughput, DDIM sampling of a CelebA-size model
#
# Run it from anywhere: bash benchmarks/gpu_check.sh   (PYTHON=... picks the interpreter; the
# default is .venv/bin/python if present, else python3). Each stage has its own time limit; a
# stage that fails or runs out of time is marked in the table and the others still run. On a
# machine without CUDA it says so, lists the CUDA tests as skipped and exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
TABLE="$WORK/table.tsv"
row() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$TABLE"; }
started=$(date +%s)

if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: torch sees no CUDA device ($("$PYTHON" -c 'import torch; print("torch", torch.__version__)')):" \
       "skipping the CUDA tests and the GPU benchmarks"
  "$PYTHON" -m pytest -q -p no:cacheprovider -m cuda -rs tests | tail -n 12
  echo "gpu_check: nothing was measured (no GPU)"
  exit 0
fi

"$PYTHON" - <<'EOF' | tee "$WORK/device.txt"
import torch
p = torch.cuda.get_device_properties(0)
print(f"device: {p.name}, {p.total_memory / 2**30:.0f} GiB; torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF
row "device" "$(cut -d';' -f1 "$WORK/device.txt" | sed 's/^device: //')" "$(cut -d';' -f2 "$WORK/device.txt")"

# run NAME SECONDS CMD...: the command's output to $WORK/NAME.log (shown), its status in the table
run() {
  local name=$1 limit=$2
  shift 2
  local tic=$(date +%s)
  timeout "$limit" "$@" >"$WORK/$name.log" 2>&1
  local rc=$?
  cat "$WORK/$name.log"
  local took=$(( $(date +%s) - tic ))
  if [ $rc -eq 124 ]; then echo "[$name: stopped after ${limit} s]"; fi
  echo "$rc $took" >"$WORK/$name.rc"
  return $rc
}

echo "== 1. CUDA tests"
run tests 150 "$PYTHON" -m pytest -q -p no:cacheprovider -m cuda -rs tests
read -r rc took <"$WORK/tests.rc"
summary=$(grep -E "passed|failed|error|skipped" "$WORK/tests.log" | tail -n 1)
row "pytest -m cuda" "${summary:-no summary (rc $rc)}" "${took} s"

echo "== 2. training throughput, configs/celeba.json, batch 128"
run train 150 "$PYTHON" benchmarks/train_throughput.py --device cuda --config configs/celeba.json --batch 128 --steps 10
read -r rc took <"$WORK/train.rc"
grep -E "img/s" "$WORK/train.log" | while IFS= read -r line; do
  row "train $(echo "$line" | sed -E 's/ {2,}.*//')" "$(echo "$line" | grep -oE '[0-9.]+ img/s')" \
      "$(echo "$line" | grep -oE '[0-9.]+x$') of the reference"
done
[ "$rc" -eq 0 ] || row "train throughput" "FAILED (rc $rc)" "${took} s, see the log above"

echo "== 3. the seed job on cuda"
run seed 130 "$PYTHON" - "$WORK" <<'EOF'
import subprocess, sys, time
from pathlib import Path

sys.path.insert(0, "benchmarks")
from visualize_speed import make_trainer_checkpoint, ours_command

work = Path(sys.argv[1])
ckpts = [work / "celeba_20251219_113720_16.pt", work / "celeba64_c_20251219_132723_16.pt"]
for seed, path in enumerate(ckpts):
    make_trainer_checkpoint(path, seed)
for label, stats in (("seed job (5 samples, 140 PNGs)", None), ("seed job --stats_samples 1000", 1000)):
    cmd = ours_command(ckpts, work / f"out_{stats}", 5, stats)
    cmd[cmd.index("--device") + 1] = "cuda:0"
    if stats:
        cmd += ["--batch_size", "50"]
    tic = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=100)
    except subprocess.TimeoutExpired:
        print(f"RESULT\t{label}\tdid not finish in 100 s\t", flush=True)
        continue
    took = time.perf_counter() - tic
    status = "ok" if done.returncode == 0 else f"FAILED rc {done.returncode}: {done.stderr.strip()[-300:]}"
    print(f"RESULT\t{label}\t{took:.1f} s wall\t{status}", flush=True)
EOF
read -r rc took <"$WORK/seed.rc"
grep -E "^RESULT" "$WORK/seed.log" | cut -f2- >>"$TABLE"
[ "$rc" -eq 0 ] || row "seed job" "FAILED or stopped (rc $rc)" "${took} s, see the log above"

echo "== 4. FID on the GPU: Inception features and DDIM sampling"
if ! "$PYTHON" -c "from ddpm_lens.analysis.inception_features import weights_path; weights_path()" 2>"$WORK/weights.err"; then
  row "FID features" "skipped" "$(sed 's/^error: //' "$WORK/weights.err" | tail -n 1)"
fi
run fid 60 "$PYTHON" - <<'EOF'
import time
import torch
from ddpm_lens.analysis.image_sources import open_source, sampled_source
from ddpm_lens.analysis.inception_features import InceptionFeatures
from ddpm_lens.core.config import load_config
from ddpm_lens.core.diffusion import GaussianDiffusion
from ddpm_lens.core.unet import build_unet

def timed(fn):
    torch.cuda.synchronize(); tic = time.perf_counter(); fn(); torch.cuda.synchronize()
    return time.perf_counter() - tic

images = open_source("dataset:synthetic-faces:test", num=1000, resolution=64).images(range(1000))
try:
    net = InceptionFeatures("cuda")
except Exception as exc:  # not installed here: the table says so
    net = None
    print(f"no Inception network: {exc}")
for batch in (50, 200) if net is not None else ():
    net(images[:batch])  # warm-up of this shape
    took = timed(lambda: [net(images[i : i + batch]) for i in range(0, 1000, batch)])
    print(f"RESULT\tInception features, 64 -> 299, batch {batch}\t{1000 / took:.0f} img/s\t1000 images in {took:.1f} s", flush=True)
cfg = load_config("configs/celeba.json")
model = build_unet(cfg.model).cuda().eval()
diffusion = GaussianDiffusion.from_config(cfg.diffusion).to("cuda")
source = sampled_source(model, diffusion, cfg, num=256, steps=50, seed=0, device="cuda", spec="celeba-size")
source.images(range(8))  # warm-up
took = timed(lambda: [source.images(range(i, i + 128)) for i in (0, 128)])
print(f"RESULT\tDDIM 50 steps, CelebA-64 model, batch 128\t{256 / took:.1f} img/s\t256 images in {took:.1f} s", flush=True)
EOF
read -r rc took <"$WORK/fid.rc"
grep -E "^RESULT" "$WORK/fid.log" | cut -f2- >>"$TABLE"
[ "$rc" -eq 0 ] || row "FID throughput" "FAILED or stopped (rc $rc)" "${took} s, see the log above"

row "total" "$(( $(date +%s) - started )) s" "wall time of this script"
echo
echo "== GPU check"
"$PYTHON" - "$TABLE" <<'EOF'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
widths = [max(len(r[i]) if i < len(r) else 0 for r in rows) for i in range(3)]
for r in rows:
    print("  ".join((r[i] if i < len(r) else "").ljust(widths[i]) for i in range(3)).rstrip())
EOF
