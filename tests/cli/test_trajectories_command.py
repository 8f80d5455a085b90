"""``ddpm-lens trajectories`` end to end, and its bad input: one line, exit 2, nothing written."""

from __future__ import annotations

import csv
import json

import pytest

from ddpm_lens.cli import main
from tests.analysis.test_trajectories import write_run

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = [
    "--loss_num",
    "5",
    "--loss_timesteps",
    "0",
    "10",
    "500",
    "--low_t",
    "10",
    "--stats_num",
    "5",
    "--stats_timesteps",
    "100",
    "--layers",
    "in_conv",
    "bottleneck",
    "--no_progress",
]


@pytest.mark.slow
def test_two_arms_write_the_table_plots_and_page(tmp_path, capsys):
    a = write_run(tmp_path / "a", "a", (1, 2), seed=0)
    b = write_run(tmp_path / "b", "b", (1, 2), seed=1)
    out = tmp_path / "out"
    assert (
        main(["trajectories", "--arm", f"Baseline={a}", "--arm", f"C={b}", *SMALL, "--output_dir", str(out)])
        == 0
    )
    with open(out / "trajectories.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:12] == [
        "arm",
        "checkpoint",
        "step",
        "epoch",
        "measure",
        "layer",
        "t",
        "value",
        "ci_low",
        "ci_high",
        "n",
        "unit",
    ]
    assert {r["arm"] for r in rows} == {"Baseline", "C"}
    record = json.loads((out / "trajectories.json").read_text())
    assert record["verdicts"].keys() == {"C"} and len(record["comparisons"]) == 2 * 2
    for png in (
        "gap_low_t_by_step",
        "gap_heatmap",
        "hoyer_by_step",
        "cka_to_final_by_step",
        "cka_to_first_arm_by_step",
    ):
        assert (out / "plots" / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "index.html").read_text()
    assert "Unit of inference" in page and "Holm" in page
    assert "gap at low t, C vs Baseline:" in capsys.readouterr().out


@pytest.mark.slow
def test_figures_draw_every_arm_side_by_side_and_test_each_against_the_first(tmp_path):
    """--figures 1 on 3 arms: one figure per layer x condition, a panel per arm (wider than the
    2-arm figure of the same inputs), H1-H4 of C and CR against Baseline, Holm across both."""
    from PIL import Image

    from ddpm_lens.analysis import decision_rule as rule

    runs = [write_run(tmp_path / n, n, (1, 2), seed=s) for n, s in (("a", 0), ("b", 1), ("c", 2))]
    arms = [f"{label}={run}" for label, run in zip(("Baseline", "C", "CR"), runs)]
    cache = ["--cache_dir", str(tmp_path / "cache"), "--figures", "1"]
    widths = {}
    for k in (2, 3):
        out = tmp_path / f"out{k}"
        argv = [x for a in arms[:k] for x in ("--arm", a)]
        assert main(["trajectories", *argv, *SMALL, *cache, "--output_dir", str(out)]) == 0
        figures = sorted(p.relative_to(out).as_posix() for p in (out / "figures").rglob("*.png"))
        assert figures == [
            f"figures/{layer}/{cond}_sample0.png"
            for layer in ("bottleneck", "in_conv")
            for cond in ("clean_t0", "noisy_t100")
        ]
        widths[k] = {f: Image.open(out / f).size for f in figures}
    for f, (w3, h3) in widths[3].items():
        w2, h2 = widths[2][f]
        assert h3 == h2 and w3 > w2 * 1.3  # a third panel
    page = (out / "index.html").read_text()
    assert "figures/in_conv/noisy_t100_sample0.png" in page and "every arm against Baseline" in page
    assert "c_20260101_000000_2.pt" in page  # the final checkpoint is drawn
    with open(out / "arm_hypotheses.csv", newline="") as f:
        cells = list(csv.DictReader(f))
    for h in {c["id"] for c in cells}:
        mine = [c for c in cells if c["id"] == h]
        by_arm = {b: [c for c in mine if c["b"] == b] for b in ("C", "CR")}
        assert {c["a"] for c in mine} == {"Baseline"} and len(by_arm["C"]) == len(by_arm["CR"]) > 0
        holm = rule.holm([float(c["p_value"]) for c in mine])  # one family: both arms' cells
        assert [float(c["p_adjusted"]) for c in mine] == pytest.approx(list(holm))
    record = json.loads((out / "trajectories.json").read_text())
    assert {h["b"] for h in record["hypotheses"]} == {"C", "CR"}


@pytest.mark.parametrize(
    "case, message",
    [
        ("duplicate", "arm label(s) given twice: A"),
        ("empty", "no checkpoints in"),
        ("resolution", "arms at different resolutions"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, case, message):
    a = write_run(tmp_path / "a", "a", (1,), seed=0)
    other = {
        "duplicate": f"A={a}",
        "empty": f"B={(tmp_path / 'empty').mkdir() or tmp_path / 'empty'}",
        "resolution": f"B={write_run(tmp_path / 'big', 'big', (1,), resolution=32)}",
    }[case]
    out = tmp_path / "out"
    assert main(["trajectories", "--arm", f"A={a}", "--arm", other, *SMALL, "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--figures", "1"], "--figures draws arms side by side: name two or more arms"),
        (["--match_channels"], "--match_channels applies to the --figures figures"),
        (["--figures", "-1"], "--figures must be 0 (none) or more"),
    ],
)
def test_figure_flags_are_checked_before_any_work(tmp_path, capsys, extra, message):
    a = write_run(tmp_path / "a", "a", (1,), seed=0)
    out = tmp_path / "out"
    assert main(["trajectories", "--arm", f"A={a}", *extra, *SMALL, "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


@pytest.mark.slow
def test_two_torchrun_processes_split_the_checkpoints_and_match_one_process(tmp_path):
    from tests.conftest import run_torchrun

    a = write_run(tmp_path / "a", "a", (1, 2), seed=0)
    b = write_run(tmp_path / "b", "b", (1, 2), seed=1)
    argv = ["trajectories", "--arm", f"Baseline={a}", "--arm", f"C={b}", *SMALL, "--device", "cpu"]
    (tmp_path / "worker.py").write_text(
        "import sys\nfrom ddpm_lens.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    run_torchrun(tmp_path / "worker.py", *argv, "--output_dir", tmp_path / "two")
    assert main([*argv, "--output_dir", str(tmp_path / "one")]) == 0
    two, one = (json.loads((tmp_path / d / "trajectories.json").read_text()) for d in ("two", "one"))
    assert [c["cached"] for c in two["checkpoints"]] == [False] * 4
    assert two["rows"] == one["rows"] and two["comparisons"] == one["comparisons"]


def _uvit_run(workdir, seed):
    """A U-ViT workdir as the study's train script leaves it: ckpts/<step>.ckpt/ at steps 10 and 20,
    each with its own raw and EMA weights."""
    import torch

    from tests.conftest import tiny_uvit

    for k, step in enumerate((10, 20)):
        folder = workdir / "ckpts" / f"{step}.ckpt"
        folder.mkdir(parents=True)
        torch.save(tiny_uvit(seed + 2 * k).state_dict(), folder / "nnet.pth")
        torch.save(tiny_uvit(seed + 2 * k + 1).state_dict(), folder / "nnet_ema.pth")
        torch.save(step, folder / "step.pth")
    return workdir


def test_two_uvit_arms_are_measured_at_the_steps_their_folders_name(tmp_path, face_folder):
    """U-ViT run folders with their .py configs (a study file's per-arm "config"): every row carries
    the step from its <step>.ckpt folder's name, the x axis is the step, and the arms meet at equal steps."""
    from tests.conftest import UVIT_STUDY_CONFIG

    _uvit_run(tmp_path / "base", seed=0)
    _uvit_run(tmp_path / "c", seed=10)
    for name in ("base", "c"):
        (tmp_path / f"{name}.py").write_text(UVIT_STUDY_CONFIG)
    study = tmp_path / "study.json"
    arms = [
        {"label": "Baseline", "paths": ["base"], "config": "base.py"},
        {"label": "C", "paths": ["c/ckpts/20.ckpt", "c/ckpts/10.ckpt"], "config": "c.py"},
    ]
    study.write_text(json.dumps({"arms": arms}))
    small = [*SMALL[: SMALL.index("--layers")], "--layers", "patch_embed", "mid_block", "--no_progress"]
    out = tmp_path / "out"
    faces = str(face_folder)
    argv = ["trajectories", "--study", str(study), "--train_images", faces, "--held_out", faces, *small]
    assert main([*argv, "--output_dir", str(out)]) == 0
    with open(out / "trajectories.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    where = {(r["arm"], r["checkpoint"], r["step"], r["epoch"]) for r in rows}
    assert where == {(a, f"{s}.ckpt", str(s), "") for a in ("Baseline", "C") for s in (10, 20)}
    assert {r["layer"] for r in rows if r["measure"] == "hoyer"} == {"patch_embed", "mid_block"}
    assert {r["step"] for r in rows if r["measure"] == "cka_to_first_arm"} == {"10", "20"}
    record = json.loads((out / "trajectories.json").read_text())
    assert record["settings"]["x_axis"] == "step"
    assert [(c["arm"], c["x"], c["weights"]) for c in record["checkpoints"]] == [
        (a, s, "ema") for a in ("Baseline", "C") for s in (10, 20)
    ]
    assert {c["x"] for c in record["comparisons"]} == {10, 20}
    # the arms' models differ: their losses at one step are not the same numbers
    loss = {(r["arm"], r["step"], r["t"]): r["value"] for r in rows if r["measure"] == "loss_held_out"}
    assert loss[("Baseline", "10", "500")] != loss[("C", "10", "500")]


def test_a_uvit_arm_without_its_config_is_one_line_naming_the_flag(tmp_path, capsys):
    run = _uvit_run(tmp_path / "base", seed=0)
    out = tmp_path / "out"
    assert main(["trajectories", "--arm", f"U={run}", *SMALL, "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "U-ViT checkpoint" in err[0] and "carries no config" in err[0]
    assert "--config" in err[0] and not out.exists()
