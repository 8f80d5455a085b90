"""The visualizer against the study's specification, on tiny models (CPU)."""

import csv
import json
import re
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_lens.analysis.compare import compare_features
from ddpm_lens.analysis.inputs import noise_for
from ddpm_lens.cli import main
from ddpm_lens.output import render

ROOT = Path(__file__).resolve().parents[2]
SEED_LAYERS = [
    "in_conv",
    "encoder_level_0",
    "encoder_level_1",
    "encoder_level_2",
    "encoder_level_3",
    "bottleneck",
]
CONDITIONS = ["clean_t0", "noisy_t100", "noisy_t500", "noisy_t900"]


def seed_command(pair, out, *extra):
    """The study's documented command, with tiny configs and the CPU."""
    return [
        "visualize",
        "--baseline_ckpt",
        str(pair[0]),
        "--curriculum_ckpt",
        str(pair[1]),
        "--config_baseline",
        str(ROOT / "configs/tiny.json"),
        "--config_curriculum",
        str(ROOT / "configs/tiny_c.json"),
        "--num_samples",
        "5",
        "--timesteps",
        "100",
        "500",
        "900",
        "--num_channels",
        "64",
        "--output_dir",
        str(out),
        "--device",
        "cuda:0",
        "--no_report",
        "--no_progress",
        *extra,
    ]


@pytest.fixture(scope="module")
def seed_run(tiny_pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("vis") / "feature_visualizations"
    assert main(seed_command(tiny_pair, out)) == 0
    return out


def expected_tree():
    files = []
    for i in range(5):
        files += [f"sample_{i}/input_clean.png"] + [
            f"sample_{i}/input_noisy_t{t}.png" for t in (100, 500, 900)
        ]
        files += [
            f"sample_{i}/{c}/{layer}_baseline_vs_curriculum.png" for c in CONDITIONS for layer in SEED_LAYERS
        ]
    return sorted(files)


def test_exact_tree_of_140_pngs(seed_run):
    pngs = sorted(str(p.relative_to(seed_run)) for p in seed_run.rglob("*.png"))
    assert pngs == expected_tree() and len(pngs) == 140
    top = sorted(p.name for p in seed_run.iterdir() if p.is_file())
    assert top == ["README.md", "cka.csv", "cka.json", "manifest.json", "stats.csv", "stats.json"]
    sizes = set()
    for rel in pngs:
        with Image.open(seed_run / rel) as im:
            figure = rel.endswith("_baseline_vs_curriculum.png")
            assert im.format == "PNG" and im.mode == ("P" if figure else "RGB")  # figures: 8-bit palette
            sizes.add((figure, im.size))
    assert len({s for fig, s in sizes if fig}) == 1  # every comparison figure has the same size
    # the study's size at its 150 dpi (its PNGs: 2984x1427 and 849x884; ours were ~1200 px wide)
    ((width, height),) = {s for fig, s in sizes if fig}
    assert abs(width - 2984) <= 60 and abs(height - 1427) <= 70
    with Image.open(seed_run / "sample_0/clean_t0/bottleneck_baseline_vs_curriculum.png") as im:
        assert tuple(round(d) for d in im.info["dpi"]) == (150, 150)
    assert not list(seed_run.rglob("*.tmp"))


def test_figures_show_exactly_the_stats_file(seed_run, tiny_pair):
    rows = list(csv.DictReader((seed_run / "stats.csv").read_text().splitlines()))
    assert len(rows) == 5 * 4 * 6 * 2
    cmp = tiny_comparison(tiny_pair, num_samples=5)
    by_key = {(int(r["sample"]), r["condition"], r["layer"], r["model"]): r for r in rows}
    s, layer, sample = CONDITIONS.index("noisy_t500"), "encoder_level_2", 3
    panels = []
    for key, label in (("baseline", "Baseline"), ("curriculum", "Curriculum")):
        row = by_key[(sample, "noisy_t500", layer, key)]
        shown = [int(c) for c in row["shown_channels"].split()]
        act = cmp.activations[key][layer][sample, s]
        assert shown == cmp.shown[key][layer][sample, s].tolist()
        assert float(row["mean"]) == pytest.approx(float(act.astype(np.float64).mean()), rel=1e-9)
        assert float(row["sparsity"]) == pytest.approx(float((np.abs(act) < 1e-3).mean()))
        stats = {k: float(row[k]) for k in ("mean", "std", "sparsity", "hoyer")}
        panels.append(render.Panel(label, act[shown], stats))
    cell_px = render.study_cell_px(8)
    redrawn = render.comparison_figure(
        panels, title=f"{layer} | noisy_t500 | Sample {sample}", cell_px=cell_px
    )
    with Image.open(seed_run / f"sample_{sample}/noisy_t500/{layer}_baseline_vs_curriculum.png") as im:
        on_disk = np.asarray(im.convert("RGB"))
    assert np.array_equal(redrawn, on_disk)  # the header's numbers are the stats file's
    # and each cell shows its channel as computed here, not by the renderer: viridis of the map
    # scaled between its own 2nd and 98th percentile, upscaled nearest-neighbour
    layout = render.figure_layout(panels, title=f"{layer} | noisy_t500 | Sample {sample}", cell_px=cell_px)
    viridis = np.round(matplotlib.colormaps["viridis"](np.linspace(0, 1, 200))[:, :3] * 255).astype(np.uint8)
    level = {tuple(c): i for i, c in enumerate(viridis)}
    for p, panel in enumerate(panels):
        for k, m in enumerate(panel.maps):
            lo, hi = np.percentile(m.astype(np.float64), [2, 98])
            expected = (np.clip((m - lo) / (hi - lo), 0, 1) * 199 + 0.5).astype(int)
            src = np.arange(layout.cell) * m.shape[0] // layout.cell  # nearest neighbour, as imshow
            expected = expected[src][:, src]
            x0, y0, _, _ = layout.cell_box(p, k)
            cell = on_disk[y0 : y0 + expected.shape[0], x0 : x0 + expected.shape[1]].reshape(-1, 3)
            drawn = np.array([level.get(tuple(c), -99) for c in cell]).reshape(expected.shape)
            assert np.abs(drawn - expected).max() <= 1 and (drawn == expected).mean() > 0.99, (p, k)


def test_new_measures_are_over_all_channels_of_each_model(seed_run, tiny_pair):
    from ddpm_lens.analysis import map_measures
    from ddpm_lens.analysis.plan import build_plan
    from ddpm_lens.analysis.stream import forward_layers

    rows = json.loads((seed_run / "stats.json").read_text())["rows"]
    by_key = {(r["sample"], r["condition"], r["layer"], r["model"]): r for r in rows}
    cmp = tiny_comparison(tiny_pair, num_samples=5)
    plan = build_plan(tiny_options(tiny_pair, num_samples=5))
    for m in plan.models:
        act = cmp.activations[m.key]["encoder_level_1"][2]  # (S, C, H, W) of sample 2
        row = by_key[(2, "noisy_t500", "encoder_level_1", m.key)]
        noisy = act[2][None]
        # noise robustness's reference: the clean image of sample 2 told t = 500, not t = 0
        clean_t500 = forward_layers(
            m.model,
            cmp.images[2:3],
            torch.tensor([500]),
            ["encoder_level_1"],
            batch_size=1,
            device=plan.device,
        )["encoder_level_1"]
        assert row["hoyer"] == pytest.approx(map_measures.hoyer(noisy)[0], rel=1e-6)
        assert row["kurtosis"] == pytest.approx(map_measures.excess_kurtosis(noisy)[0], rel=1e-5)
        assert row["hf_share"] == pytest.approx(map_measures.high_frequency_share(noisy)[0], rel=1e-5)
        assert row["noise_robustness"] == pytest.approx(
            map_measures.noise_robustness(noisy, clean_t500)[0], rel=1e-5
        )
    assert all(r["noise_robustness"] is None for r in rows if r["condition"] == "clean_t0")
    assert all(isinstance(r["noise_robustness"], float) for r in rows if r["condition"] != "clean_t0")
    assert all(r["checkpoint"] == 0 for r in rows)
    header = (seed_run / "stats.csv").read_text().splitlines()[0].split(",")
    assert {
        "checkpoint",
        "hoyer",
        "kurtosis",
        "hf_share",
        "noise_robustness",
        "edge_energy",
        "autocorr",
    } <= set(header)


def test_several_checkpoints_per_arm_from_the_command_line(tiny_pair, tmp_path):
    from conftest import write_tiny_checkpoint

    extra = write_tiny_checkpoint(tmp_path / "tiny_c_2.pt", config="configs/tiny_c.json", seed=7)
    out = tmp_path / "o"
    args = small_command(tiny_pair, out)
    at = args.index("--curriculum_ckpt") + 1
    args[at : at + 1] = [str(tiny_pair[1]), str(extra)]
    # one baseline run against two curriculum runs: the second would go unused, so it is refused
    assert main(args) == 2 and not any(out.rglob("*"))
    extra_b = write_tiny_checkpoint(tmp_path / "tiny_2.pt", seed=8)
    at = args.index("--baseline_ckpt") + 1
    args[at : at + 1] = [str(tiny_pair[0]), str(extra_b)]
    assert main(args) == 0
    rows = json.loads((out / "stats.json").read_text())["rows"]
    pairs = {("baseline", 0), ("curriculum", 0), ("baseline", 1), ("curriculum", 1)}
    assert {(r["model"], r["checkpoint"]) for r in rows} == pairs
    cka = list(csv.DictReader((out / "cka.csv").read_text().splitlines()))
    assert {r["pair"] for r in cka} == {
        "baseline_vs_curriculum",
        "baseline_vs_baseline_1",
        "curriculum_vs_curriculum_1",
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(m["key"], m["index"]) for m in manifest["models"]] == [
        ("baseline", 0),
        ("curriculum", 0),
        ("baseline", 1),
        ("curriculum", 1),
    ]
    assert len(list(out.rglob("*_baseline_vs_curriculum.png"))) == 2 * 4 * 2  # the pair's figures only


def test_matched_figure_shows_the_matched_channels(tiny_pair, tmp_path):
    assert main([*small_command(tiny_pair, tmp_path), "--match_channels"]) == 0
    rows = json.loads((tmp_path / "stats.json").read_text())["rows"]
    by_key = {(r["sample"], r["condition"], r["layer"], r["model"]): r for r in rows}
    cmp = tiny_comparison(tiny_pair, num_samples=2, layers=["in_conv"])
    s, sample = CONDITIONS.index("noisy_t900"), 1
    base, cur = (by_key[(sample, "noisy_t900", "in_conv", k)] for k in ("baseline", "curriculum"))
    assert cur["matched_channels"] != cur["shown_channels"]  # matching changed what is drawn
    panels = [
        render.Panel(label, cmp.activations[key]["in_conv"][sample, s][channels], row)
        for key, label, row, channels in (
            ("baseline", "Baseline", base, base["shown_channels"]),
            ("curriculum", "Curriculum", cur, cur["matched_channels"]),
        )
    ]
    note = f"Curriculum channels matched one-to-one to Baseline's (mean r={cur['matched_corr']:.2f})"
    redrawn = render.comparison_figure(
        panels, title=f"in_conv | noisy_t900 | Sample {sample}", note=note, cell_px=render.study_cell_px(8)
    )
    with Image.open(tmp_path / f"sample_{sample}/noisy_t900/in_conv_baseline_vs_curriculum.png") as im:
        assert np.array_equal(redrawn, np.asarray(im.convert("RGB")))


def test_both_models_receive_identical_noisy_inputs(tiny_pair, monkeypatch):
    import ddpm_lens.analysis.stream as vis

    seen = []
    original = vis.forward_layers

    def spy(model, x, t, layers, **kw):
        seen.append((x.clone(), t.clone()))
        return original(model, x, t, layers, **kw)

    monkeypatch.setattr(vis, "forward_layers", spy)
    cmp = compare_features(
        baseline_ckpt=str(tiny_pair[0]),
        curriculum_ckpt=str(tiny_pair[1]),
        num_samples=2,
        timesteps=(500,),
        layers=["in_conv"],
    )
    # per model: the inputs, then noise robustness's references (the clean images told t = 500)
    inputs = [(x, t) for x, t in seen if len(t) == 4]
    refs = [(x, t) for x, t in seen if len(t) == 2]
    assert len(inputs) == len(refs) == 2
    for (xa, ta), (xb, tb) in (inputs, refs):
        assert torch.equal(xa, xb) and torch.equal(ta, tb)
    assert inputs[0][1].tolist() == [0, 500, 0, 500] and refs[0][1].tolist() == [500, 500]
    torch.testing.assert_close(refs[0][0], cmp.images)
    x0 = cmp.images[1]
    ab = torch.tensor(0.07779665837)  # alphas_bar[500]
    expected = ab.sqrt() * x0 + (1 - ab).sqrt() * noise_for(0, 1, 500, tuple(x0.shape))
    torch.testing.assert_close(cmp.inputs[1, 1], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(cmp.inputs[1, 0], x0)  # clean_t0 is the clean image


def tiny_options(pair, **kwargs):
    """The options of :func:`tiny_comparison`, for a plan of one's own."""
    from ddpm_lens.analysis.options import visualize_options

    return visualize_options(
        baseline_ckpt=str(pair[0]),
        curriculum_ckpt=str(pair[1]),
        config_baseline=str(ROOT / "configs/tiny.json"),
        config_curriculum=str(ROOT / "configs/tiny_c.json"),
        device="cpu",
        progress=False,
        prefetch=False,
        **kwargs,
    )


def tiny_comparison(pair, **kwargs):
    """compare_features on the tiny pair with its configs (the seed command's in-memory twin)."""
    return compare_features(
        baseline_ckpt=str(pair[0]),
        curriculum_ckpt=str(pair[1]),
        config_baseline=str(ROOT / "configs/tiny.json"),
        config_curriculum=str(ROOT / "configs/tiny_c.json"),
        **kwargs,
    )


def small_command(pair, out, *extra):
    return [*seed_command(pair, out, *extra), "--num_samples", "2", "--layers", "in_conv", "bottleneck"]


def test_seed_reproduces_stats_byte_for_byte(tiny_pair, tmp_path):
    runs = {}
    for name, extra in (("a", ()), ("b", ()), ("other", ("--seed", "1"))):
        assert main(small_command(tiny_pair, tmp_path / name, *extra)) == 0
        runs[name] = (tmp_path / name / "stats.csv").read_bytes()
    assert runs["a"] == runs["b"] and runs["a"] != runs["other"]


def test_noise_of_a_sample_does_not_depend_on_how_many_samples(tiny_pair):
    kw = dict(
        baseline_ckpt=str(tiny_pair[0]),
        curriculum_ckpt=str(tiny_pair[1]),
        layers=["in_conv"],
        timesteps=(900,),
    )
    a = compare_features(num_samples=2, **kw)
    b = compare_features(num_samples=3, batch_size=2, **kw)
    assert torch.equal(a.inputs, b.inputs[:2])


def test_run_files(seed_run):
    manifest = json.loads((seed_run / "manifest.json").read_text())
    assert manifest["command"].startswith("ddpm-lens visualize --baseline_ckpt")
    assert [m["label"] for m in manifest["models"]] == ["Baseline", "Curriculum"]
    assert all(len(m["sha256"]) == 64 and m["epoch"] == 3 for m in manifest["models"])
    assert manifest["device"] == "cpu" and manifest["seed"] == 0 and manifest["timesteps"] == [100, 500, 900]
    stats = json.loads((seed_run / "stats.json").read_text())
    assert stats["conditions"][0] == {"name": "clean_t0", "t": 0} and stats["layers"] == SEED_LAYERS
    row = stats["rows"][0]
    assert {"shown_mean", "shown_sparsity", "edge_energy", "autocorr", "shown_channels", "figure"} <= set(row)
    cka = list(csv.DictReader((seed_run / "cka.csv").read_text().splitlines()))
    assert len(cka) == 24 and all(-1 <= float(r["cka_biased"]) <= 1 for r in cka)
    assert int(cka[0]["n_images"]) == 5 and int(cka[0]["n_examples"]) == 5 * 32 * 32
    readme = (seed_run / "README.md").read_text()
    assert "**Total**: 140 visualization files" in readme and "all channels of the layer" in readme
    assert "| `bottleneck` | (64, 4, 4) | (64, 4, 4) |" in readme


def test_pipeline_cka_is_linear_cka_of_the_two_models_activations(seed_run, tiny_pair):
    """cka.json, streamed chunk by chunk, against CKA computed here in one go from the
    activations: examples = samples x positions, features = channels."""
    from ddpm_lens.analysis.similarity import linear_cka

    cmp = tiny_comparison(tiny_pair, num_samples=5)
    rows = json.loads((seed_run / "cka.json").read_text())["rows"]
    assert len(rows) == len(SEED_LAYERS) * len(CONDITIONS)
    for row in rows:
        s = CONDITIONS.index(row["condition"])
        acts = [
            cmp.activations[key][row["layer"]][:, s].astype(np.float64) for key in ("baseline", "curriculum")
        ]
        x, y = (a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1]) for a in acts)  # (N*H*W, C)
        xc, yc = x - x.mean(0), y - y.mean(0)
        biased = np.linalg.norm(xc.T @ yc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
        assert row["cka_biased"] == pytest.approx(biased, rel=1e-6), row
        assert row["cka_debiased"] == pytest.approx(linear_cka(x, y, debiased=True), rel=1e-6, abs=1e-9), row
        assert row["n_examples"] == len(x)


def test_rerun_replaces_and_removes_nothing_else(tiny_pair, tmp_path):
    assert main(small_command(tiny_pair, tmp_path)) == 0
    keep = tmp_path / "sample_0" / "clean_t0" / "my_notes.txt"
    keep.write_text("mine")
    figure = tmp_path / "sample_0/clean_t0/bottleneck_baseline_vs_curriculum.png"
    figure.write_bytes(b"stale")
    assert main(small_command(tiny_pair, tmp_path)) == 0
    assert keep.read_text() == "mine"
    assert Image.open(figure).format == "PNG"


def test_options_change_what_is_drawn(tiny_pair, tmp_path):
    out = tmp_path / "o"
    args = seed_command(
        tiny_pair,
        out,
        "--no_clean",
        "--layers",
        "bottleneck",
        "decoder_level_0",
        "--num_samples",
        "2",
        "--grid_size",
        "4",
        "--num_channels",
        "10",
        "--norm",
        "shared",
        "--match_channels",
        "--stats_samples",
        "4",
    )
    assert main(args) == 0
    pngs = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert (
        "sample_0/input_clean.png" in pngs
        and "sample_0/noisy_t100/decoder_level_0_baseline_vs_curriculum.png" in pngs
    )
    assert not (out / "sample_0/clean_t0").exists() and not (out / "sample_2").exists()
    rows = json.loads((out / "stats.json").read_text())["rows"]
    assert {r["sample"] for r in rows} == {0, 1, 2, 3}  # statistics over 4, figures for 2
    matched = [r for r in rows if r["model"] == "curriculum" and r["sample"] < 2]
    assert all(len(r["matched_channels"]) == 10 and len(set(r["matched_channels"])) == 10 for r in matched)
    assert all(-1 <= r["matched_corr"] <= 1 and -1 <= r["matched_corr_null"] <= 1 for r in matched)
    assert "matched_corr_null" in (out / "stats.csv").read_text().splitlines()[0]
    assert all(r["figure"] is None for r in rows if r["sample"] >= 2)
    assert all(r["noise_robustness"] is None for r in rows)  # --no_clean: nothing to compare with


def test_user_images(tiny_pair, tmp_path):
    colours = [(200, 30, 40), (20, 60, 220)]  # nothing like a synthetic face
    for i, (size, colour) in enumerate(zip([(50, 40), (64, 64)], colours)):
        Image.new("RGB", size, colour).save(tmp_path / f"img{i}.png")
    out = tmp_path / "o"
    args = seed_command(tiny_pair, out, "--images", str(tmp_path / "img0.png"), str(tmp_path / "img1.png"))
    args[args.index("--num_samples") : args.index("--num_samples") + 2] = []
    assert main(args) == 0
    assert (out / "sample_1/noisy_t900/bottleneck_baseline_vs_curriculum.png").exists()
    assert not (out / "sample_2").exists()
    # the inputs are the pictures: each clean input figure is the picture's colour, upscaled to 768x768
    for i, colour in enumerate(colours):
        with Image.open(out / f"sample_{i}/input_clean.png") as im:
            assert (np.asarray(im.convert("RGB")) == colour).all(-1).sum() == 768 * 768
    # and the statistics are of the pictures: the same run on the dataset gives other numbers
    on_faces = tmp_path / "faces"
    assert main(seed_command(tiny_pair, on_faces, "--num_samples", "2")) == 0
    assert (out / "stats.csv").read_text() != (on_faces / "stats.csv").read_text()


def test_no_ema_draws_the_raw_weights(tiny_pair, tmp_path):
    runs = {}
    for flag in ("--use_ema", "--no_ema"):
        assert main(small_command(tiny_pair, tmp_path / flag, flag)) == 0
        runs[flag] = json.loads((tmp_path / flag / "stats.json").read_text())["rows"]
        manifest = json.loads((tmp_path / flag / "manifest.json").read_text())
        expected = "EMA weights (ema.shadow)" if flag == "--use_ema" else "raw training weights (model)"
        assert [m["weights"] for m in manifest["models"]] == [expected] * 2
    for use_ema, flag in ((True, "--use_ema"), (False, "--no_ema")):
        cmp = tiny_comparison(tiny_pair, num_samples=2, layers=["in_conv", "bottleneck"], use_ema=use_ema)
        mean = cmp.activations["curriculum"]["bottleneck"][1, 0].astype(np.float64).mean()
        row = next(
            r
            for r in runs[flag]
            if (r["sample"], r["condition"], r["layer"], r["model"])
            == (1, "clean_t0", "bottleneck", "curriculum")
        )
        assert row["mean"] == pytest.approx(mean, rel=1e-9)
    assert [r["mean"] for r in runs["--use_ema"]] != [r["mean"] for r in runs["--no_ema"]]


def test_different_layer_shapes_still_draw(tmp_path, tiny_pair):
    from conftest import write_tiny_checkpoint

    wide = write_tiny_checkpoint(tmp_path / "wide_1.pt", seed=2, model_overrides={"hid_channels": 64})
    out = tmp_path / "o"
    assert (
        main(
            [
                "visualize",
                "--baseline_ckpt",
                str(tiny_pair[0]),
                "--curriculum_ckpt",
                str(wide),
                "--num_samples",
                "1",
                "--timesteps",
                "500",
                "--output_dir",
                str(out),
                "--no_report",
                "--no_progress",
            ]
        )
        == 0
    )
    readme = (out / "README.md").read_text()
    assert "| `in_conv` | (32, 32, 32) | (64, 32, 32) |" in readme and "shapes differ" in readme


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-ckpt", "not found"),
        ("missing-config", "config .* not found"),
        ("mismatch", "does not fit config"),
        # the curriculum checkpoint loads in the background: its errors must still be one line
        ("curriculum-mismatch", "does not fit config"),
        ("curriculum-garbage", "curriculum.pt"),
        ("curriculum-missing", "not found"),
        ("nan-weights", r"diverged.pt: 'in_conv.bias' \(EMA weights \(ema.shadow\)\) holds 1 NaN/inf value"),
        ("nan-weights-allowed", "Curriculum model's in_conv activations contain NaN or inf"),
        ("timestep", r"timestep 1000 is outside \[0, 1000\)"),
        ("grid", "does not fit a 8x8 grid"),
        ("too-many-samples", "asked for 2000 samples"),
        ("layer", "unknown layer 'encoder_level_7'"),
        ("output-is-file", "is a file"),
        ("not-an-image", "not a readable image"),
        ("no-conditions", "nothing to compare"),
        ("no-samples", "--num_samples must be at least 1, got 0"),
        ("data-dir-unused", "the synthetic-faces dataset reads no folder, but --data_dir"),
        ("data-dir-with-images", "--data_dir is not used with --images"),
        ("device-mps", "device 'mps' is not supported .*: use auto, cpu, cuda or cuda:N"),
        ("device-unknown", "unknown device 'gpu0': use auto, cpu, cuda or cuda:N"),
        ("read-only", "cannot write to --output_dir .*: Read-only file system"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(
    case, message, tiny_pair, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "out"
    args = seed_command(tiny_pair, out)
    (tmp_path / "curriculum.pt").write_bytes(np.random.default_rng(0).bytes(5000))
    swap = {
        "missing-ckpt": ("--baseline_ckpt", str(tmp_path / "nope.pt")),
        "missing-config": ("--config_curriculum", str(tmp_path / "nope.json")),
        "mismatch": ("--config_baseline", str(ROOT / "configs/celeba.json")),
        "curriculum-mismatch": ("--config_curriculum", str(ROOT / "configs/celeba64_c.json")),
        "curriculum-garbage": ("--curriculum_ckpt", str(tmp_path / "curriculum.pt")),
        "curriculum-missing": ("--curriculum_ckpt", str(tmp_path / "nope.pt")),
        "timestep": ("--timesteps", "1000"),
        "grid": ("--num_channels", "65"),
        "too-many-samples": ("--num_samples", "2000"),
        "no-samples": ("--num_samples", "0"),
        "device-mps": ("--device", "mps"),
        "device-unknown": ("--device", "gpu0"),
    }
    if case in swap:
        flag, value = swap[case]
        args[args.index(flag) + 1] = value
        if case == "mismatch":  # celeba.json names CelebA, which is absent: that would be reported first
            args += ["--dataset", "synthetic-faces"]
    elif case == "output-is-file":
        out.write_text("a file")
        args += ["--num_samples", "1"]
    elif case == "not-an-image":
        (tmp_path / "x.png").write_text("not an image")
        args += ["--images", str(tmp_path / "x.png")]
    elif case in ("nan-weights", "nan-weights-allowed"):  # a diverged run: refused at load, or
        ckpt = torch.load(tiny_pair[1], weights_only=True)  # allowed, and then its activations are NaN
        ckpt["ema"]["shadow"]["in_conv.bias"][0] = float("nan")
        torch.save(ckpt, tmp_path / "diverged.pt")
        args[args.index("--curriculum_ckpt") + 1] = str(tmp_path / "diverged.pt")
        args += ["--allow_nonfinite"] if case == "nan-weights-allowed" else []
    elif case == "no-conditions":
        args += ["--no_clean", "--no_noisy"]
    elif case == "layer":
        args += ["--layers", "encoder_level_7"]
    elif case == "data-dir-unused":  # the configs' dataset is synthetic-faces: the folder would be ignored
        args += ["--data_dir", str(tmp_path / "my_faces")]
    elif case == "data-dir-with-images":
        Image.new("RGB", (40, 40)).save(tmp_path / "x.png")
        args += ["--images", str(tmp_path / "x.png"), "--data_dir", str(tmp_path)]
    elif case == "read-only":  # as root, chmod cannot make a folder unwritable: the file system says so
        out.mkdir()
        read_only(monkeypatch, out)
    if case == "too-many-samples":
        args += ["--dataset", "folder", "--data_dir", str(ROOT / "docs")]
    assert main(args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and __import__("re").search(message, errors[0]), err
    assert not [p for p in out.rglob("*") if p.is_file()] if out.is_dir() else True


def read_only(monkeypatch, folder: Path) -> None:
    """Make creating any file in ``folder`` fail with EROFS, as on a read-only mount."""
    import errno
    import os
    import tempfile

    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve() == folder.resolve():
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(folder))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def test_more_channels_than_a_layer_has_is_clipped_with_a_warning(tiny_pair, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(small_command(tiny_pair, out, "--num_channels", "40")) == 0  # in_conv 32, bottleneck 64
    assert "in_conv (32) have fewer than 40 channels" in capsys.readouterr().err
    rows = json.loads((out / "stats.json").read_text())["rows"]
    assert {len(r["shown_channels"]) for r in rows if r["layer"] == "in_conv"} == {32}
    assert {len(r["shown_channels"]) for r in rows if r["layer"] == "bottleneck"} == {40}


def test_cuda_request_falls_back_to_cpu_with_a_warning(tiny_pair, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert main(small_command(tiny_pair, tmp_path / "o")) == 0  # the command asks for cuda:0
    assert "warning: CUDA is not available; using the CPU instead of cuda:0" in capsys.readouterr().err


def test_script_wrapper_runs_the_study_command(tiny_pair, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "o"
    args = small_command(tiny_pair, out)[1:]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "visualize_features.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "sample_1/noisy_t900/bottleneck_baseline_vs_curriculum.png").exists()
    bad = subprocess.run(
        [sys.executable, str(ROOT / "visualize_features.py"), *args, "--timesteps", "-1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.count("error:") == 1


def disk_full_after(monkeypatch, writes: int) -> None:
    """The disk fills after ``writes`` PNGs: the next write stops half-way with ENOSPC."""
    import errno
    import os

    import ddpm_lens.output.png as png
    from ddpm_lens.util.atomic import atomic_path

    real, calls = png.write_bytes, []

    def write_bytes(path, data, *, fsync=True):
        calls.append(path)
        if len(calls) <= writes:
            return real(path, data, fsync=fsync)
        with atomic_path(path, fsync=fsync) as tmp:
            tmp.write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(png, "write_bytes", write_bytes)


def test_a_full_disk_names_the_path_and_the_space_and_takes_the_run_back(
    tiny_pair, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "o"
    disk_full_after(monkeypatch, 7)
    assert main(small_command(tiny_pair, out)) == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert re.search(
        r"no space left on the device while writing \S+/sample_\d/\S+\.png: this run needs about [\d.]+ MB "
        r"\([\d.]+ MB in 8 files written before",
        error,
    ), error
    assert "removed the 8 files this run wrote" in error  # 7 figures and the manifest
    assert not [p for p in out.rglob("*")]
