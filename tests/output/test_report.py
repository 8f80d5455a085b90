"""Tests for ddpm_lens.output.report on a synthetic visualizer output folder with known answers."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from PIL import Image

from ddpm_lens.analysis.hypotheses import hypotheses
from ddpm_lens.analysis.stat_registry import LAYER_MOMENTS
from ddpm_lens.analysis.summary import summarize
from ddpm_lens.cli import main
from ddpm_lens.output import report
from ddpm_lens.util.errors import UserError

# ---------------------------------------------------------------------------------------------
# Fixture: what `ddpm-lens visualize` leaves in OUT (stats.json, cka.json, manifest.json,
# README.md, input thumbnails and comparison figures), small and with known answers:
# (sample s = 0..11; the 0.001 * s keeps the paired differences untied, so Wilcoxon is exact:
# 12 samples of one sign give p = 2 / 2**12, small enough after Holm over 12 cells)
# curriculum hoyer = baseline + 0.10 + 0.001 s in every cell           -> H1 supported; H2 (all 12
#   agree) inconclusive: 12 samples cannot show a share above 0.9 (2 * 0.9**12 = 0.56)
# curriculum hf_share = baseline + 0.05 + 0.001 s in encoder_level_0/1 -> H3 (clean only) supported
# curriculum noise_robustness = baseline - 0.10 - 0.001 s (noisy only) -> H4 contradicted
# sparsity, edge_energy, autocorr move too, but no verdict reads them
# ---------------------------------------------------------------------------------------------

LAYERS = {
    "in_conv": (8, 16, 16),
    "encoder_level_0": (8, 16, 16),
    "encoder_level_1": (16, 8, 8),
    "encoder_level_2": (16, 4, 4),
}
CONDITIONS = (("clean_t0", 0), ("noisy_t100", 100), ("noisy_t500", 500))
STATS_SAMPLES = 12
NUM_SAMPLES = 2  # samples with figures
HOSTILE_PATH = "chkpts/<script>alert(1)</script>/base_16.pt"
HOSTILE_LABEL = 'Curriculum <img src=x onerror="document.body.dataset.pwned=1">'
DELETED_FIGURE = "sample_1/noisy_t100/encoder_level_1_baseline_vs_curriculum.png"


def _png(path: Path, color: tuple[int, int, int], size=(48, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def make_rows(conditions=CONDITIONS, stats=None) -> list[dict]:
    """Stats rows; ``stats`` (None = all) limits which statistics the rows carry."""
    rng = np.random.default_rng(0)
    rows = []
    for s in range(STATS_SAMPLES):
        for cond, t in conditions:
            for layer, shape in LAYERS.items():
                base = {
                    "mean": rng.normal(),
                    "std": rng.uniform(0.5, 1.5),
                    "mean_abs": rng.uniform(0.2, 1.0),
                    "min": -3.0,
                    "max": 3.0,
                    "sparsity": rng.uniform(0.05, 0.5),
                    "hoyer": rng.uniform(0.1, 0.4),
                    "kurtosis": rng.uniform(0.0, 3.0),
                    "hf_share": rng.uniform(0.1, 0.8),
                    "noise_robustness": rng.uniform(0.2, 0.9) if t else None,
                    "edge_energy": rng.uniform(0.01, 0.2),
                    "autocorr": rng.uniform(0.3, 0.8),
                }
                edge = 0.05 if layer in ("encoder_level_0", "encoder_level_1") else -0.05
                curr = {
                    **{k: base[k] + rng.normal(scale=0.1) for k in ("mean", "std", "mean_abs")},
                    "min": -3.0,
                    "max": 3.0,
                    "sparsity": base["sparsity"] + 0.10 + 0.001 * s,
                    "hoyer": base["hoyer"] + 0.10 + 0.001 * s,
                    "kurtosis": base["kurtosis"] + rng.normal(scale=0.1),
                    "hf_share": base["hf_share"] + edge + 0.001 * s,
                    "noise_robustness": base["noise_robustness"] - 0.10 - 0.001 * s if t else None,
                    "edge_energy": base["edge_energy"] + edge + 0.001 * s,
                    "autocorr": base["autocorr"] - 0.10 - 0.001 * s,
                    "matched_corr": 0.5,
                }
                figure = f"sample_{s}/{cond}/{layer}_baseline_vs_curriculum.png" if s < NUM_SAMPLES else None
                for model, values in (("baseline", base), ("curriculum", curr)):
                    values = {k: v for k, v in values.items() if stats is None or k in stats}
                    shown = {f"shown_{k}": v for k, v in values.items() if k in LAYER_MOMENTS}
                    rows.append(
                        {
                            "sample": s,
                            "condition": cond,
                            "t": t,
                            "layer": layer,
                            "model": model,
                            "checkpoint": 0,
                            "shape": list(shape),
                            **values,
                            **shown,
                            "shown_channels": [0, 1, 2, 3],
                            "figure": figure,
                        }
                    )
    return rows


def make_cka_rows(conditions=CONDITIONS) -> list[dict]:
    out = []
    for i, (layer, (_, h, w)) in enumerate(LAYERS.items()):
        for cond, t in conditions:
            debiased = 0.9 - t / 1000 - 0.1 * i
            for pair, offset in (("baseline_vs_curriculum", 0.0), ("baseline_vs_baseline_1", 0.02)):
                out.append(
                    {
                        "pair": pair,
                        "a": "baseline",
                        "b": pair.rsplit("_vs_", 1)[1],
                        "layer": layer,
                        "condition": cond,
                        "t": t,
                        "n_images": STATS_SAMPLES,
                        "n_examples": STATS_SAMPLES * h * w,
                        "cka_debiased": None
                        if (layer, cond) == ("encoder_level_2", "noisy_t500")
                        else debiased + offset,
                        "cka_biased": debiased + 0.05,
                        "cka_ci_low": debiased - 0.05,
                        "cka_ci_high": debiased + 0.04,
                        "cka_null": 0.2,
                    }
                )
    return out


def make_loss_rows() -> list[dict]:
    return [
        {
            "t": t,
            "a_loss": a,
            "a_ci_low": a * 0.9,
            "a_ci_high": a * 1.1,
            "b_loss": a * 0.8,
            "b_ci_low": a * 0.7,
        }
        | {"b_ci_high": a * 0.9, "diff_mean": -0.2 * a, "diff_ci_low": -0.3 * a, "diff_ci_high": -0.1 * a}
        | {"p_value": 0.01, "n": STATS_SAMPLES, "unit": "image"}
        for t, a in ((0, 0.5), (500, 0.05), (999, 0.01))
    ]


def write_run(
    out: Path,
    *,
    hostile: bool = False,
    conditions=CONDITIONS,
    cka: bool = True,
    stats=None,
    loss: bool = True,
) -> list[dict]:
    """Write a visualizer output folder into ``out``; returns the stats rows.

    ``stats`` limits the rows' statistics (fewer plots, faster tests); None keeps all.
    """
    rows = make_rows(conditions, stats)
    labels = ["Baseline", HOSTILE_LABEL if hostile else "Curriculum"]
    stats = {
        "labels": labels,
        "models": ["baseline", "curriculum"],
        "threshold": 0.001,
        "num_samples": NUM_SAMPLES,
        "stats_samples": STATS_SAMPLES,
        "conditions": [{"name": c, "t": t} for c, t in conditions],
        "layers": list(LAYERS),
        "stats_over": "all channels of the layer",
        "rows": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "stats.json").write_text(json.dumps(stats))
    if cka:
        (out / "cka.json").write_text(json.dumps({"rows": make_cka_rows(conditions)}))
    if loss:
        (out / "loss_by_t.json").write_text(json.dumps({"rows": make_loss_rows()}))
    checkpoint = HOSTILE_PATH if hostile else "chkpts/celeba/celeba_16.pt"
    manifest = {
        "command": "ddpm-lens visualize --num_samples 2 --output_dir out",
        "argv": ["visualize"],
        "version": "0.1.0",
        "git_revision": None,
        "created": "2025-01-01T00:00:00",
        "seed": 0,
        "device": "cpu",
        "torch": "2.13.0",
        "models": [
            {
                "label": labels[0],
                "checkpoint": checkpoint,
                "sha256": "ab" * 32,
                "config": "configs/celeba.json",
                "epoch": 16,
                "weights": "EMA weights (ema.shadow)",
            },
            {
                "label": labels[1],
                "checkpoint": "chkpts/celeba64_c/c_16.pt",
                "sha256": "cd" * 32,
                "config": "configs/celeba64_c.json",
                "epoch": 16,
                "weights": "EMA weights (ema.shadow)",
            },
        ],
        "timesteps": [t for _, t in conditions if t],
        "layers": list(LAYERS),
        "num_samples": NUM_SAMPLES,
        "stats_samples": STATS_SAMPLES,
        "num_channels": 4,
        "norm": "channel",
        "match_channels": True,
        "options": {"alpha": 0.05},
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "README.md").write_text("# run\n")
    for s in range(NUM_SAMPLES):
        _png(out / f"sample_{s}" / "input_clean.png", (200, 150, 120), size=(32, 32))
        for cond, t in conditions:
            if t:
                _png(out / f"sample_{s}" / f"input_noisy_t{t}.png", (120, 120, 120), size=(32, 32))
            for k, layer in enumerate(LAYERS):
                _png(
                    out / f"sample_{s}/{cond}/{layer}_baseline_vs_curriculum.png", (40 * k, 100, 200 - t // 5)
                )
    (out / DELETED_FIGURE).unlink(missing_ok=True)
    return rows


# ---------------------------------------------------------------------------------------------


class _Links(HTMLParser):
    """Collects img src, a href and the ids of the page, in document order."""

    def __init__(self):
        super().__init__()
        self.srcs, self.hrefs, self.ids = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img" and attrs.get("src"):
            self.srcs.append(attrs["src"])
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])
        if attrs.get("id"):
            self.ids.append(attrs["id"])


def _links(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


def _local(url: str) -> str | None:
    """The relative file path a link points at; None for in-page anchors."""
    if url.startswith("#"):
        return None
    parts = urlsplit(url)
    assert not parts.scheme and not parts.netloc, f"non-local link {url}"
    return unquote(parts.path)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    rows = write_run(out, hostile=True)
    written = report.build_report(out)
    return out, rows, written


def _finite(x):
    return None if isinstance(x, float) and not math.isfinite(x) else x


def test_summary_matches_summarize(built):
    out, rows, written = built
    data = json.loads((out / "summary.json").read_text())
    expected = summarize(rows, stats=report.SUMMARY_STATS, a="baseline", b="curriculum")
    assert data["statistics"] == list(report.SUMMARY_STATS)
    assert data["labels"] == {"baseline": "Baseline", "curriculum": HOSTILE_LABEL}
    # every statistic in every cell, but noise robustness in none of the clean ones
    cells = len(LAYERS) * len(CONDITIONS)
    assert len(data["rows"]) == cells * len(report.SUMMARY_STATS) - len(LAYERS) == len(expected)
    for got, want in zip(data["rows"], expected):
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == pytest.approx(_finite(value)), key
    # Known answer: sparsity differences 0.100 ... 0.111, all positive: exact two-sided p = 2 / 2**12,
    # Holm over the 12 layer x condition cells of sparsity: 12 times that
    key = ("in_conv", "clean_t0", "sparsity")
    cell = next(r for r in data["rows"] if (r["layer"], r["condition"], r["statistic"]) == key)
    assert cell["diff_mean"] == pytest.approx(0.1055)
    assert (cell["n"], cell["agree_text"]) == (12, "12/12")
    assert cell["p_value"] == pytest.approx(2 / 2**12)
    assert cell["p_adjusted"] == pytest.approx(12 * 2 / 2**12)
    assert cell["effect_size"] > 10  # d_z of a near-constant shift
    robust = [r for r in data["rows"] if r["statistic"] == "noise_robustness"]
    assert len(robust) == len(LAYERS) * 2  # no cell for the clean condition
    assert data["unit"] == {"unit": "sample", "checkpoints": {"baseline": 1, "curriculum": 1}}
    assert "Holm" in " ".join(data["decision_rule"])
    assert -1 <= data["sparsity_vs_inverse_std"]["r"] <= 1
    csv_lines = (out / "summary.csv").read_text().splitlines()
    assert csv_lines[0].split(",")[:4] == ["layer", "condition", "t", "statistic"]
    assert len(csv_lines) == 1 + len(expected)
    assert written["summary.csv"] == out / "summary.csv"


def test_hypotheses_match_known_answers(built):
    out, rows, _ = built
    data = json.loads((out / "hypotheses.json").read_text())
    verdicts = {h["id"]: h["verdict"] for h in data["hypotheses"]}
    assert verdicts == {"H1": "supported", "H2": "inconclusive", "H3": "supported", "H4": "contradicted"}
    expected = hypotheses(rows, a="baseline", b="curriculum")
    assert [h["evidence"] for h in data["hypotheses"]] == [h["evidence"] for h in expected]
    assert len(data["hypotheses"][2]["details"]) == 2  # H3: encoder_level_0/1, clean input only
    assert "--stats_samples 59" in data["hypotheses"][1]["evidence"]  # H2, 12 cells: 2 * 0.9**59 < 0.05 / 12
    page = (out / "index.html").read_text()
    assert "HL Δ [95 % CI]" in page and "all cells (omnibus)" in page and "agreeing share" in page
    assert data["alpha"] == 0.05 and data["hypotheses"][0]["statistic"] == "hoyer"
    cell = data["hypotheses"][0]["details"][0]
    for key in ("layer", "condition", "statistic", "n", "a_mean", "b_mean", "diff_mean", "p_value"):
        assert key in cell
    assert cell["favours_b"] is True and cell["p_adjusted"] < 0.05


def test_alpha_from_the_caller_or_the_run(tmp_path):
    write_run(tmp_path, stats=("hoyer",), cka=False, loss=False)
    strict = report.build_report(tmp_path, alpha=1e-4)
    verdicts = json.loads(strict["hypotheses.json"].read_text())
    assert verdicts["alpha"] == 1e-4 and verdicts["hypotheses"][0]["verdict"] == "inconclusive"
    assert "--stats_samples" in verdicts["hypotheses"][0]["evidence"]
    with pytest.raises(UserError, match="alpha"):
        report.build_report(tmp_path, alpha=2.0)


def test_plots_written(built):
    out, _, written = built
    names = {k for k in written if k.startswith("plots/")}
    per_stat = {f"plots/{s}_by_{x}.png" for s in report.SUMMARY_STATS for x in ("layer", "timestep")}
    assert names == per_stat | {
        "plots/cka_heatmap.png",
        "plots/cka_by_timestep.png",
        "plots/loss_by_timestep.png",
    }
    for name in names:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(written)[-1] == "index.html"


def test_index_sections_in_viewing_order(built):
    out, _, _ = built
    ids = _links((out / "index.html").read_text()).ids
    order = [
        "run",
        "loss",
        "hypotheses",
        "plots",
        "summary",
        "gallery",
        "g-inputs",
        "g-clean",
        "g-mid",
        "g-layers",
        "g-timesteps",
    ]
    positions = [ids.index(i) for i in order]
    assert positions == sorted(positions)
    html = (out / "index.html").read_text()
    assert "3 · Noisy features at t = 500" in html
    assert "n = 12 paired samples per layer × condition cell; figures are drawn for the first 2" in html
    hypotheses_section = html[html.index('id="hypotheses"') : html.index('id="plots"')]
    assert "these verdicts describe these two networks on these inputs" in hypotheses_section.lower()
    assert "Decision rule." in hypotheses_section and "Holm" in hypotheses_section
    assert "correlates r = " in hypotheses_section and "1/σ" in hypotheses_section
    assert html.index('id="loss"') < html.index('id="hypotheses"')  # the loss plot near the top
    assert "plots/loss_by_timestep.png" in html[html.index('id="loss"') : html.index('id="hypotheses"')]


def test_index_escapes_hostile_text(built):
    out, _, _ = built
    html = (out / "index.html").read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=&#34;document.body.dataset.pwned=1&#34;&gt;" in html


def test_index_links_only_existing_local_files(built):
    out, _, _ = built
    links = _links((out / "index.html").read_text())
    targets = [p for p in map(_local, links.srcs + links.hrefs) if p is not None]
    missing = [p for p in targets if not (out / p).is_file()]
    assert not missing
    figures = {p.relative_to(out).as_posix() for p in out.glob("sample_*/*/*.png")}
    assert len(figures) == NUM_SAMPLES * len(CONDITIONS) * len(LAYERS) - 1
    assert figures <= set(targets)  # every figure file is linked
    assert DELETED_FIGURE not in (out / "index.html").read_text()
    assert {
        "sample_0/input_clean.png",
        "sample_1/input_noisy_t500.png",
        "plots/sparsity_by_layer.png",
    } <= set(targets)


def test_index_states_cka_n(built):
    out, _, _ = built
    html = (out / "index.html").read_text()
    section = html[html.index('id="similarity"') : html.index('id="summary"')]
    row = re.search(r"<tr><td>encoder_level_1</td><td>clean_t0</td>(.*?)</tr>", section).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    # 8x8 maps: 12 images x 64 positions = 768 examples; CKA 0.9 - 0 - 0.1 * 2 = 0.7 [0.65, 0.74],
    # its null 0.2, so 0.5 above it; biased + 0.05.
    assert cells[:3] == ["0", "12", "768"]
    assert cells[3] == '<strong>0.7</strong> <span class="ci">[0.65, 0.74]</span>'
    assert cells[4:7] == ["0.2", "0.5", "0.75"]
    assert cells[7].startswith("0.5")  # mean matched channel correlation
    assert "Same recipe, other seed" in section and "baseline_vs_baseline_1" in section


def test_run_without_clean_condition_cka_or_some_statistics(tmp_path):
    conditions = (("noisy_t100", 100), ("noisy_t900", 900))
    write_run(tmp_path, conditions=conditions, cka=False, stats=("hoyer", "noise_robustness"), loss=False)
    for_rows = json.loads((tmp_path / "stats.json").read_text())
    for r in for_rows["rows"]:
        r["noise_robustness"] = None  # without a clean input it is not computed
    (tmp_path / "stats.json").write_text(json.dumps(for_rows))
    written = report.build_report(tmp_path)
    assert sorted(k for k in written if k.startswith("plots/")) == [
        "plots/hoyer_by_layer.png",
        "plots/hoyer_by_timestep.png",
    ]
    verdicts = json.loads((tmp_path / "hypotheses.json").read_text())["hypotheses"]
    assert [h["verdict"] for h in verdicts] == ["supported", "inconclusive", "not tested", "not tested"]
    assert "--no_clean" in verdicts[3]["evidence"]
    html = (tmp_path / "index.html").read_text()
    assert "No clean condition in this run." in html
    assert "CKA was not computed" in html
    assert "3 · Noisy features at t = 900" in html  # no t=500: the middle noisy condition
    targets = [p for p in map(_local, _links(html).srcs) if p is not None]
    assert all((tmp_path / p).is_file() for p in targets)


def test_missing_or_malformed_stats(tmp_path):
    with pytest.raises(UserError, match="OUT has no stats.json.*run ddpm-lens visualize first"):
        report.build_report(tmp_path)
    (tmp_path / "stats.json").write_text("{not json")
    with pytest.raises(UserError, match="OUT has no stats.json"):
        report.build_report(tmp_path)
    (tmp_path / "stats.json").write_text(json.dumps({"rows": [{"sample": 0}]}))
    with pytest.raises(UserError, match="lacks one of"):
        report.build_report(tmp_path)
    with pytest.raises(UserError, match="not a folder"):
        report.build_report(tmp_path / "nowhere")


def test_unknown_model_key(built):
    out, _, _ = built
    with pytest.raises(UserError, match="model 'ema' has no rows"):
        report.build_report(out, a="ema")


def test_cli(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: OUT has no stats.json") and err.count("\n") == 1
    out = tmp_path / "run"
    write_run(out, conditions=CONDITIONS[:1], cka=False, stats=("hoyer",), loss=False)
    assert main(["report", str(out), "--a", "baseline", "--b", "curriculum"]) == 0
    printed = capsys.readouterr().out
    assert "H1 supported" in printed
    assert str(out / "index.html") in printed
    assert main(["report", str(out), "--a", "curriculum", "--b", "baseline"]) == 0
    assert "H1 contradicted" in capsys.readouterr().out
    assert main(["report", str(out), "--alpha", "1e-9"]) == 0
    assert "H1 inconclusive" in capsys.readouterr().out
