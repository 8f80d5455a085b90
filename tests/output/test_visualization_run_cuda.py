"""The visualizer on a GPU gives the CPU's statistics. Marked ``cuda``: skipped without a GPU."""

import json
from pathlib import Path

import numpy as np
import pytest

from ddpm_lens.cli import main

pytestmark = pytest.mark.cuda
ROOT = Path(__file__).resolve().parents[2]
KEYS = ("mean", "std", "sparsity", "edge_energy", "autocorr")


def command(pair, out, device):
    return [
        "visualize", "--baseline_ckpt", str(pair[0]), "--curriculum_ckpt", str(pair[1]),
        "--config_baseline", str(ROOT / "configs/tiny.json"),
        "--config_curriculum", str(ROOT / "configs/tiny_c.json"),
        "--num_samples", "2", "--timesteps", "100", "500", "900", "--output_dir", str(out),
        "--device", device, "--no_report", "--no_progress",
    ]  # fmt: skip


def test_visualize_on_cuda_matches_the_cpu(tiny_pair, tmp_path):
    assert main(command(tiny_pair, tmp_path / "cpu", "cpu")) == 0
    assert main(command(tiny_pair, tmp_path / "gpu", "cuda:0")) == 0
    assert json.loads((tmp_path / "gpu" / "manifest.json").read_text())["device"] == "cuda:0"
    cpu, gpu = (json.loads((tmp_path / d / "stats.json").read_text())["rows"] for d in ("cpu", "gpu"))
    assert [(r["sample"], r["condition"], r["layer"], r["model"]) for r in gpu] == [
        (r["sample"], r["condition"], r["layer"], r["model"]) for r in cpu
    ]
    for key in KEYS:
        a = np.array([r[key] for r in cpu], dtype=float)
        b = np.array([r[key] for r in gpu], dtype=float)
        np.testing.assert_allclose(b, a, rtol=2e-2, atol=2e-3, err_msg=key)  # TF32 convolutions on the GPU
    pngs = sorted(p.relative_to(tmp_path / "gpu").as_posix() for p in (tmp_path / "gpu").rglob("*.png"))
    assert pngs == sorted(
        p.relative_to(tmp_path / "cpu").as_posix() for p in (tmp_path / "cpu").rglob("*.png")
    )
