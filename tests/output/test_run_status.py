"""A run folder says whether it holds one whole run; `ddpm-lens report` refuses anything else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import visualize_command

import ddpm_lens.output.png as png
from ddpm_lens.cli import main
from ddpm_lens.output.run_folder import figure_files
from ddpm_lens.output.run_status import RUN_ID_KEY, check_finished, check_one_run

ROOT = Path(__file__).resolve().parents[2]


def command(pair, out, *extra, samples=2, seed=0):
    return visualize_command(pair, out, "--no_report", *extra, samples=samples, seed=seed)


@pytest.fixture(scope="module")
def two_runs(tiny_pair, tmp_path_factory):
    """Two complete runs of the same request with different noise seeds."""
    root = tmp_path_factory.mktemp("runs")
    for name, seed in (("a", 0), ("b", 1)):
        assert main(command(tiny_pair, root / name, seed=seed)) == 0
    return root / "a", root / "b"


@pytest.fixture
def run_a(two_runs, tmp_path):
    out = tmp_path / "a"
    shutil.copytree(two_runs[0], out)
    return out


def report_error(out, capsys) -> str:
    capsys.readouterr()
    assert main(["report", str(out)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    return errors[0]


def test_a_finished_run_is_marked_complete_and_every_file_carries_its_id(two_runs):
    out = two_runs[0]
    manifest = json.loads((out / "manifest.json").read_text())
    run = manifest["run_id"]
    assert manifest["status"] == "complete" and len(run) == 16
    assert manifest["run_id"] != json.loads((two_runs[1] / "manifest.json").read_text())["run_id"]
    figures = figure_files(out)
    assert len(figures) == 2 * (2 + 2 * 2)  # per sample: 2 inputs, 2 conditions x 2 layers
    assert set(manifest["files"]) == {*figures, "stats.csv", "stats.json", "cka.csv", "cka.json", "README.md"}
    assert all(png.read_png_text(out / f) == {RUN_ID_KEY: run} for f in figures)
    for table in ("stats.json", "cka.json"):
        assert json.loads((out / table).read_text())["run_id"] == run
    stats = json.loads((out / "stats.json").read_text())
    check_one_run(out, check_finished(out), stats)  # no error


class Killed(BaseException):
    """Stands in for SIGKILL: nothing catches it, no clean-up code runs."""


def test_a_rerun_killed_while_it_moves_in_is_refused_by_report(tiny_pair, run_a, monkeypatch, capsys):
    # the run is written beside the earlier one and moved in at the end: killed half-way through
    # that move, the folder holds files of both, and its manifest says so
    import os

    import ddpm_lens.output.visualization_run as visualization_run

    real_replace, real_swap, calls = os.replace, visualization_run.swap_in, []

    def replace(*args, **kwargs):
        calls.append(1)
        if len(calls) > 5:  # the running manifest and four files are in
            raise Killed
        return real_replace(*args, **kwargs)

    def swap_in(*args, **kwargs):
        monkeypatch.setattr(os, "replace", replace)
        return real_swap(*args, **kwargs)

    monkeypatch.setattr(visualization_run, "swap_in", swap_in)
    with pytest.raises(Killed):
        main(command(tiny_pair, run_a, seed=3))
    monkeypatch.undo()
    assert json.loads((run_a / "manifest.json").read_text())["status"] == "running"
    assert (run_a / "stats.json").is_file()  # the earlier run's, beside a mix of figures
    assert "holds an incomplete run" in report_error(run_a, capsys)


@pytest.mark.parametrize("what", ["stats.json", "cka.json", "figure"])
def test_tables_or_figures_of_another_run_are_refused(two_runs, run_a, capsys, what):
    name = "sample_1/noisy_t500/bottleneck_baseline_vs_curriculum.png" if what == "figure" else what
    shutil.copy(two_runs[1] / name, run_a / name)
    error = report_error(run_a, capsys)
    assert "mixes runs" in error and f"but {name} (run " in error


def test_a_missing_file_is_named(run_a, capsys):
    (run_a / "sample_0/clean_t0/in_conv_baseline_vs_curriculum.png").unlink()
    error = report_error(run_a, capsys)
    assert "is missing 1 of its 17 files, e.g. sample_0/clean_t0/in_conv_baseline_vs_curriculum.png" in error


def test_a_smaller_rerun_removes_the_earlier_runs_extra_figures(tiny_pair, run_a):
    (run_a / "notes.txt").write_text("mine")
    assert main(command(tiny_pair, run_a, samples=1)) == 0
    assert not (run_a / "sample_1").exists() and (run_a / "notes.txt").read_text() == "mine"
    check_one_run(run_a, check_finished(run_a), json.loads((run_a / "stats.json").read_text()))


def test_a_folder_without_a_run_status_is_read_as_it_is(run_a):
    manifest = json.loads((run_a / "manifest.json").read_text())
    del manifest["status"]  # as ddpm-lens 0.1 wrote it
    (run_a / "manifest.json").write_text(json.dumps(manifest))
    assert check_finished(run_a) is None
