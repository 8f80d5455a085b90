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
