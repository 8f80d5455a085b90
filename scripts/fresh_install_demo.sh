#!/usr/bin/env bash
# What a new user does: a fresh venv, `pip install torch==2.13.0`, `pip install .`, then
# `ddpm-lens demo`, run outside the checkout so that the installed package (its declared
# dependencies and package data, not src/) is what runs. CI runs this after the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q torch==2.13.0  # the CPU wheel, as the README says
"$tmp/venv/bin/pip" install -q .
cd "$tmp"
"$tmp/venv/bin/ddpm-lens" demo --output_dir "$tmp/demo" --device cpu --no_progress
test -f "$tmp/demo/index.html"
echo "fresh-install demo: ok"
