"""`ddpm-lens demo`, the README's main command, end to end on the shipped models (CPU)."""

import json
from pathlib import Path

import pytest
from PIL import Image

from ddpm_lens.cli import main
from ddpm_lens.cli.demo import demo_models
from ddpm_lens.core.checkpoint import load_weights


def test_shipped_models_are_a_trained_baseline_and_curriculum_pair():
    paths = demo_models()
    weights = [load_weights(p) for p in paths]
    assert all(w.which == "ema" and w.config is not None for w in weights)
    assert "curriculum" not in weights[0].config and weights[1].config["curriculum"]["kind"] == "clusters"
    assert weights[0].config["model"] == weights[1].config["model"]
    assert all(Path(p).stat().st_size < 8 * 2**20 for p in paths)  # "a few MB each"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo_output"
    assert main(["demo", "--output_dir", str(out), "--device", "cpu", "--no_progress"]) == 0
    return out


def test_demo_writes_the_full_tree_stats_and_report(demo_run):
    pngs = [p for p in demo_run.glob("sample_*/**/*.png")]
    assert len(pngs) == 140
    assert len(list(demo_run.glob("sample_*/*/*_baseline_vs_curriculum.png"))) == 120
    for name in (
        "stats.csv",
        "stats.json",
        "cka.csv",
        "cka.json",
        "loss_by_t.csv",
        "loss_by_t.json",
        "manifest.json",
        "README.md",
        "summary.csv",
        "summary.json",
        "hypotheses.json",
        "index.html",
    ):
        assert (demo_run / name).is_file(), name
    plots = {p.name for p in (demo_run / "plots").glob("*.png")}
    assert {
        "sparsity_by_layer.png",
        "sparsity_by_timestep.png",
        "cka_heatmap.png",
        "cka_by_timestep.png",
        "loss_by_timestep.png",
        "hoyer_by_layer.png",
    } <= plots
    hypotheses = json.loads((demo_run / "hypotheses.json").read_text())["hypotheses"]
    assert [h["id"] for h in hypotheses] == ["H1", "H2", "H3", "H4"]
    # 5 samples cannot pass Holm over 24 cells (p >= 0.0625 per cell): the honest verdict
    assert all(h["verdict"] == "inconclusive" for h in hypotheses), [h["verdict"] for h in hypotheses]
    assert "--stats_samples 10" in hypotheses[0]["evidence"]
    html = (demo_run / "index.html").read_text()
    assert "sample_0/noisy_t500/encoder_level_2_baseline_vs_curriculum.png" in html
    assert html.index("plots/loss_by_timestep.png") < html.index('id="hypotheses"')  # near the top
    loss = json.loads((demo_run / "loss_by_t.json").read_text())["rows"]
    assert len(loss) == 20 and loss[0]["t"] == 0 and loss[-1]["t"] == 999
    assert all(r["a_loss"] > 0 and r["b_loss"] > 0 for r in loss)
    with Image.open(demo_run / "sample_0/noisy_t500/encoder_level_2_baseline_vs_curriculum.png") as im:
        assert im.mode == "P" and im.size[0] > 600
    cka = json.loads((demo_run / "cka.json").read_text())["rows"]
    assert len(cka) == 24 and all(r["n_images"] == 5 for r in cka)
    assert all(r["cka_ci_low"] - 1e-9 <= r["cka_debiased"] <= r["cka_ci_high"] + 1e-9 for r in cka)
    assert all(abs(r["cka_null"]) < r["cka_debiased"] for r in cka)
