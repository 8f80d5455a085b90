"""The output folder belongs to the user: a run replaces or removes only what an earlier
ddpm-lens run wrote (its manifest lists it, or it carries the run's id), a failed rerun
leaves the earlier run whole, and one run at a time writes into a folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import visualize_command

import ddpm_lens.output.png as png
from ddpm_lens.cli import main
from ddpm_lens.output.run_status import check_finished, check_one_run

ROOT = Path(__file__).resolve().parents[2]


def command(pair, out, *extra, samples=2, seed=0):
    return visualize_command(pair, out, *extra, samples=samples, seed=seed)


def contents(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) and its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture
def quick_plots(monkeypatch):
    """The report's plots as placeholder files: drawing them costs seconds per test, and only
    which files exist matters here."""
    import ddpm_lens.output.report as report
    from ddpm_lens.output.report_plots import Plots

    def start_plots(made, jobs):
        for _, args, _ in jobs:
            Path(args[-1]).parent.mkdir(parents=True, exist_ok=True)
            Path(args[-1]).write_bytes(b"\x89PNG placeholder")
        return Plots(made, [], None)

    monkeypatch.setattr(report, "start_plots", start_plots)


def one_error(capsys) -> str:
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    return errors[0]


@pytest.fixture
def site(tmp_path):
    """A folder of the user's own files whose names the report also writes; no ddpm-lens run."""
    out = tmp_path / "site"
    (out / "plots").mkdir(parents=True)
    (out / "index.html").write_text("<h1>my site</h1>")
    (out / "summary.csv").write_text("quarter,revenue\nq1,10\n")
    (out / "plots/chart.png").write_bytes(b"\x89PNG my chart")
    return out


def test_a_run_that_would_replace_the_users_files_is_refused_before_any_work(tiny_pair, site, capsys):
    before = contents(site)
    assert main(command(tiny_pair, site)) == 2  # the report would write index.html and summary.csv
    error = one_error(capsys)
    assert "index.html" in error and "no ddpm-lens run wrote" in error and "--output_dir" in error
    assert contents(site) == before


def test_a_run_without_a_report_leaves_the_users_files_byte_identical(tiny_pair, site):
    before = contents(site)
    assert main(command(tiny_pair, site, "--no_report")) == 0
    after = contents(site)
    assert {k: after[k] for k in before} == before
    assert json.loads(after["manifest.json"])["status"] == "complete"


def test_user_pngs_that_match_the_figure_names_are_never_touched(tiny_pair, tmp_path):
    out = tmp_path / "o"
    mine = {
        "sample_9/input_holiday.png": b"\x89PNG holiday",
        "sample_0/clean_t0/my_baseline_vs_curriculum.png": b"\x89PNG baseline",
    }
    for rel, data in mine.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    for run in range(2):  # a first run into the folder, then a rerun over it
        assert main(command(tiny_pair, out, "--no_report", seed=run)) == 0
        assert {rel: (out / rel).read_bytes() for rel in mine} == mine


def test_a_rerun_removes_only_what_the_earlier_run_wrote(tiny_pair, tmp_path, quick_plots):
    out = tmp_path / "o"
    assert main(command(tiny_pair, out)) == 0  # with its report
    (out / "plots/mine.png").write_bytes(b"\x89PNG mine")
    (out / "sample_1/notes.txt").write_text("mine")
    assert main(command(tiny_pair, out, "--no_report", samples=1)) == 0
    assert (out / "plots/mine.png").read_bytes() == b"\x89PNG mine"
    assert (out / "sample_1/notes.txt").read_text() == "mine"
    assert not (out / "index.html").exists() and not (out / "sample_1/clean_t0").exists()
    assert not list((out / "plots").glob("*_by_layer.png"))


def disk_full_after(monkeypatch, writes: int) -> None:
    import errno

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


def test_a_rerun_that_fails_leaves_the_earlier_run_whole(tiny_pair, tmp_path, monkeypatch, capsys):
    out = tmp_path / "o"
    assert main(command(tiny_pair, out, "--no_report")) == 0
    (out / "notes.txt").write_text("mine")
    before = contents(out)
    disk_full_after(monkeypatch, 3)
    assert main(command(tiny_pair, out, "--no_report", seed=4)) == 2
    assert "no space left" in one_error(capsys)
    assert contents(out) == before
    check_one_run(out, check_finished(out), json.loads((out / "stats.json").read_text()))  # whole


class Killed(BaseException):
    """Stands in for SIGKILL: nothing catches it, no clean-up code runs."""


def test_a_rerun_killed_half_way_leaves_the_earlier_run_whole_and_the_next_run_tidies(
    tiny_pair, tmp_path, monkeypatch
):
    out = tmp_path / "o"
    assert main(command(tiny_pair, out, "--no_report")) == 0
    before = contents(out)
    real, calls = png.write_bytes, []

    def write_bytes(*args, **kwargs):
        calls.append(1)
        if len(calls) > 5:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(png, "write_bytes", write_bytes)
    with pytest.raises(Killed):
        main(command(tiny_pair, out, "--no_report", seed=3))
    monkeypatch.setattr(png, "write_bytes", real)
    after = contents(out)
    assert {k: after[k] for k in before} == before  # plus the killed run's own hidden files
    assert main(command(tiny_pair, out, "--no_report", seed=3)) == 0
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_a_failed_run_leaves_no_folder_it_created(tiny_pair, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "out"
    assert main(command(tiny_pair, out, "--timesteps", "1000")) == 2
    assert "timestep 1000" in one_error(capsys)
    assert not (tmp_path / "new").exists()


def test_a_failed_run_on_a_full_disk_leaves_no_folder_it_created(tiny_pair, tmp_path, monkeypatch, capsys):
    out = tmp_path / "new" / "out"
    disk_full_after(monkeypatch, 2)
    assert main(command(tiny_pair, out, "--no_report")) == 2
    assert "no space left" in one_error(capsys)
    assert not (tmp_path / "new").exists()


HOLD_LOCK = """
import sys, time
from pathlib import Path
from ddpm_lens.util.folder_lock import FolderLock
with FolderLock(Path(sys.argv[1]), flag="--output_dir"):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def other_run(tmp_path):
    """Another process holding the lock on tmp_path/o, as a running visualize does."""
    out = tmp_path / "o"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout.readline().strip() == "locked"
    yield out, proc
    proc.kill()
    proc.wait()


def test_a_second_run_into_a_folder_in_use_names_the_other_runs_pid(tiny_pair, other_run, capsys):
    out, proc = other_run
    (out / "notes.txt").write_text("mine")
    before = contents(out)
    assert main(command(tiny_pair, out, "--no_report")) == 2
    error = one_error(capsys)
    assert f"pid {proc.pid}" in error and "--output_dir" in error
    assert contents(out) == before
    assert main(["report", str(out)]) == 2
    assert f"pid {proc.pid}" in one_error(capsys)


def test_the_lock_of_a_killed_run_does_not_block_the_next(tiny_pair, other_run):
    out, proc = other_run
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert main(command(tiny_pair, out, "--no_report", samples=1)) == 0


def test_report_refuses_to_replace_the_users_files(tiny_pair, tmp_path, capsys, quick_plots):
    out = tmp_path / "o"
    assert main(command(tiny_pair, out, "--no_report")) == 0
    (out / "index.html").write_text("<h1>mine</h1>")
    assert main(["report", str(out)]) == 2
    assert "index.html" in one_error(capsys)
    assert (out / "index.html").read_text() == "<h1>mine</h1>"
    (out / "index.html").unlink()
    for _ in range(2):  # its own files, the second time
        assert main(["report", str(out)]) == 0
