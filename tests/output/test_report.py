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

from ddpm_lens.analysis.summary import hypotheses, summarize
from ddpm_lens.cli import main
from ddpm_lens.output import report
from ddpm_lens.util.errors import UserError

# ---------------------------------------------------------------------------------------------
# Fixture: what `ddpm-lens visualize` leaves in OUT (stats.json, cka.json, manifest.json,
# README.md, input thumbnails and comparison figures), small and with known answers:
# (sample s = 0..5; the 0.001 * s keeps the paired differences untied, so Wilcoxon is exact)
# curriculum sparsity = baseline + 0.10 + 0.001 s in every cell      -> H1, H2 supported
# curriculum edge_energy = baseline + 0.05 + 0.001 s in encoder_level_0/1 -> H3 supported
# curriculum autocorr = baseline - 0.10 - 0.001 s everywhere          -> H4 not supported
# ---------------------------------------------------------------------------------------------

LAYERS = {
    "in_conv": (8, 16, 16),
    "encoder_level_0": (8, 16, 16),
    "encoder_level_1": (16, 8, 8),
    "encoder_level_2": (16, 4, 4),
}
CONDITIONS = (("clean_t0", 0), ("noisy_t100", 100), ("noisy_t500", 500))
STATS_SAMPLES = 6
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
                    "edge_energy": rng.uniform(0.01, 0.2),
                    "autocorr": rng.uniform(0.3, 0.8),
                }
                edge = 0.05 if layer in ("encoder_level_0", "encoder_level_1") else -0.05
                curr = {
                    **{k: base[k] + rng.normal(scale=0.1) for k in ("mean", "std", "mean_abs")},
                    "min": -3.0,
                    "max": 3.0,
                    "sparsity": base["sparsity"] + 0.10 + 0.001 * s,
                    "edge_energy": base["edge_energy"] + edge + 0.001 * s,
                    "autocorr": base["autocorr"] - 0.10 - 0.001 * s,
                    "matched_corr": 0.5,
                }
                figure = f"sample_{s}/{cond}/{layer}_baseline_vs_curriculum.png" if s < NUM_SAMPLES else None
                for model, values in (("baseline", base), ("curriculum", curr)):
                    values = {k: v for k, v in values.items() if stats is None or k in stats}
                    shown = {f"shown_{k}": v for k, v in values.items() if k != "matched_corr"}
                    rows.append(
                        {
                            "sample": s,
                            "condition": cond,
                            "t": t,
                            "layer": layer,
                            "model": model,
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
            out.append(
                {
                    "layer": layer,
                    "condition": cond,
                    "t": t,
                    "n_samples": STATS_SAMPLES,
                    "n_examples": STATS_SAMPLES * h * w,
                    "cka_debiased": None if (layer, cond) == ("encoder_level_2", "noisy_t500") else debiased,
                    "cka_biased": debiased + 0.05,
                }
            )
    return out


def write_run(
    out: Path, *, hostile: bool = False, conditions=CONDITIONS, cka: bool = True, stats=None
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
    assert len(data["rows"]) == len(LAYERS) * len(CONDITIONS) * len(report.SUMMARY_STATS) == len(expected)
    for got, want in zip(data["rows"], expected):
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == pytest.approx(_finite(value)), key
    # Known answer: sparsity differences 0.100 ... 0.105, all positive: exact two-sided p = 2 / 2**6.
    key = ("in_conv", "clean_t0", "sparsity")
    cell = next(r for r in data["rows"] if (r["layer"], r["condition"], r["statistic"]) == key)
    assert cell["diff_mean"] == pytest.approx(0.1025)
    assert (cell["n"], cell["agree_text"]) == (6, "6/6")
    assert cell["p_value"] == pytest.approx(2 / 2**6)
    csv_lines = (out / "summary.csv").read_text().splitlines()
    assert csv_lines[0].split(",")[:4] == ["layer", "condition", "t", "statistic"]
    assert len(csv_lines) == 1 + len(expected)
    assert written["summary.csv"] == out / "summary.csv"


def test_hypotheses_match_known_answers(built):
    out, rows, _ = built
    data = json.loads((out / "hypotheses.json").read_text())
    verdicts = {h["id"]: h["verdict"] for h in data["hypotheses"]}
    assert verdicts == {"H1": "supported", "H2": "supported", "H3": "supported", "H4": "not supported"}
    expected = hypotheses(rows, a="baseline", b="curriculum")
    assert [h["evidence"] for h in data["hypotheses"]] == [h["evidence"] for h in expected]
    assert len(data["hypotheses"][2]["details"]) == 2 * len(CONDITIONS)  # H3: encoder_level_0/1 only


def test_plots_written(built):
    out, _, written = built
    names = {k for k in written if k.startswith("plots/")}
    per_stat = {f"plots/{s}_by_{x}.png" for s in report.SUMMARY_STATS for x in ("layer", "timestep")}
    assert names == per_stat | {"plots/cka_heatmap.png", "plots/cka_by_timestep.png"}
    for name in names:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(written)[-1] == "index.html"


def test_index_sections_in_viewing_order(built):
    out, _, _ = built
    ids = _links((out / "index.html").read_text()).ids
    order = [
        "run",
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
    assert "n = 6 paired samples per layer × condition cell; figures are drawn for the first 2" in html


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
    # 8x8 maps: 6 images x 64 positions = 384 examples; CKA 0.9 - 0 - 0.1 * 2 = 0.7, biased + 0.05.
    assert cells[:5] == ["0", "6", "384", "<strong>0.7</strong>", "0.75"]
    assert cells[5].startswith("0.5")  # mean matched channel correlation


def test_run_without_clean_condition_cka_or_some_statistics(tmp_path):
    conditions = (("noisy_t100", 100), ("noisy_t900", 900))
    write_run(tmp_path, conditions=conditions, cka=False, stats=("sparsity",))
    written = report.build_report(tmp_path)
    assert sorted(k for k in written if k.startswith("plots/")) == [
        "plots/sparsity_by_layer.png",
        "plots/sparsity_by_timestep.png",
    ]
    assert json.loads((tmp_path / "summary.json").read_text())["statistics"] == ["sparsity"]
    verdicts = json.loads((tmp_path / "hypotheses.json").read_text())["hypotheses"]
    assert [h["verdict"] for h in verdicts] == ["supported", "supported", "not tested", "not tested"]
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
    write_run(out, conditions=CONDITIONS[:1], cka=False, stats=("sparsity",))
    assert main(["report", str(out), "--a", "baseline", "--b", "curriculum"]) == 0
    printed = capsys.readouterr().out
    assert "H1 supported" in printed
    assert str(out / "index.html") in printed
    assert main(["report", str(out), "--a", "curriculum", "--b", "baseline"]) == 0
    assert "H1 not supported" in capsys.readouterr().out
