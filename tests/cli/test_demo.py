"""`ddpm-lens demo`, the README's main command, end to end on the shipped models (CPU)."""

import json
from pathlib import Path

import numpy as np
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


def expected_verdicts(rows) -> dict[str, str]:
    """H1-H4 worked out here from stats.json by the rules the report states (analysis/summary.py):
    per layer x condition cell the paired differences d = curriculum - baseline over samples;
    a cell favours the curriculum when mean(d) > 0 and d > 0 in a strict majority of samples."""
    cells: dict[tuple, dict[int, dict[str, dict]]] = {}
    for r in rows:
        cells.setdefault((r["layer"], r["condition"]), {}).setdefault(r["sample"], {})[r["model"]] = r

    def diffs(stat, layers=None):
        return [
            np.array([s["curriculum"][stat] - s["baseline"][stat] for _, s in sorted(by_sample.items())])
            for (layer, _), by_sample in cells.items()
            if layers is None or layer in layers
        ]

    def directional(ds):
        favour = [d.mean() > 0 and (d > 0).sum() > len(d) / 2 for d in ds]
        against = sum(d.mean() <= 0 for d in ds)
        return "supported" if all(favour) else "not supported" if against > len(ds) / 2 else "mixed"

    def consistent(ds):
        same = [(d > 0).all() or (d < 0).all() for d in ds]
        return "supported" if all(same) else "not supported" if same.count(False) > len(ds) / 2 else "mixed"

    return {
        "H1": directional(diffs("sparsity")),
        "H2": consistent(diffs("sparsity")),
        "H3": directional(diffs("edge_energy", ("encoder_level_0", "encoder_level_1"))),
        "H4": directional(diffs("autocorr")),
    }


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
    } <= plots
    hypotheses = json.loads((demo_run / "hypotheses.json").read_text())["hypotheses"]
    assert [h["id"] for h in hypotheses] == ["H1", "H2", "H3", "H4"]
    rows = json.loads((demo_run / "stats.json").read_text())["rows"]
    assert {h["id"]: h["verdict"] for h in hypotheses} == expected_verdicts(rows)
    html = (demo_run / "index.html").read_text()
    assert "sample_0/noisy_t500/encoder_level_2_baseline_vs_curriculum.png" in html
    with Image.open(demo_run / "sample_0/noisy_t500/encoder_level_2_baseline_vs_curriculum.png") as im:
        assert im.mode == "P" and im.size[0] > 600
    cka = json.loads((demo_run / "cka.json").read_text())["rows"]
    assert len(cka) == 24 and all(r["n_samples"] == 5 for r in cka)
