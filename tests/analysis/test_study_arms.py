"""Arms of an across-training study: labels, run folders of every layout, ordering, bad input."""

from __future__ import annotations

import json
import os

import pytest

from ddpm_lens.analysis.study_arms import parse_arm, read_study_file, resolve_arms
from ddpm_lens.util.errors import UserError


def _touch(path, mtime=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_parse_arm_splits_label_and_paths():
    assert parse_arm("CS=a/b, c.pt") == ("CS", ["a/b", "c.pt"])
    for bad in ("CS", "CS=", "=a", "C S/=a"):
        with pytest.raises(UserError):
            parse_arm(bad)


def test_every_layout_is_ordered_by_epoch(tmp_path):
    ours = [_touch(tmp_path / "ours" / f"tiny_20260101_00000{e}_{e}.pt") for e in (10, 2, 1)]
    torch_style = [_touch(tmp_path / "ddpm" / f"celeba_{e}.pt") for e in (3, 20)]
    (arm_a, arm_b) = resolve_arms(
        [("A", [str(tmp_path / "ours")], None), ("B", [str(tmp_path / "ddpm")], None)]
    )
    assert [r.epoch for r in arm_a.checkpoints] == [1, 2, 10]
    assert [r.path for r in arm_b.checkpoints] == sorted(
        torch_style, key=lambda p: int(p.stem.split("_")[-1])
    )
    assert arm_a.ordered_by == "epoch" and {r.path for r in arm_a.checkpoints} == set(ours)


def test_a_file_without_epoch_orders_by_file_time_and_says_so(tmp_path, capsys):
    late = _touch(tmp_path / "run" / "model_a.pt", mtime=2_000_000_000)
    early = _touch(tmp_path / "run" / "model_b.pt", mtime=1_000_000_000)
    (arm,) = resolve_arms([("A", [str(tmp_path / "run")], None)])
    assert [r.path for r in arm.checkpoints] == [early, late]
    assert arm.ordered_by == "file time"
    assert "ordered by file modification time" in capsys.readouterr().err


def test_bad_input_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    _touch(tmp_path / "run" / "m_1.pt")
    with pytest.raises(UserError, match="no checkpoints in"):
        resolve_arms([("A", [str(tmp_path / "empty")], None)])
    with pytest.raises(UserError, match="given twice: A"):
        resolve_arms([("A", [str(tmp_path / "run")], None), ("A", [str(tmp_path / "run")], None)])
    with pytest.raises(UserError, match="more than once"):
        resolve_arms([("A", [str(tmp_path / "run"), str(tmp_path / "run" / "m_1.pt")], None)])
    with pytest.raises(UserError, match="not found"):
        resolve_arms([("A", [str(tmp_path / "nope")], None)])


def test_study_file_paths_are_relative_to_it(tmp_path):
    _touch(tmp_path / "chkpts" / "base" / "b_1.pt")
    study = tmp_path / "study.json"
    study.write_text(
        json.dumps({"arms": [{"label": "Baseline", "paths": ["chkpts/base"], "config": "c.json"}]})
    )
    ((label, paths, config),) = read_study_file(study)
    assert (label, paths, config) == ("Baseline", [str(tmp_path / "chkpts/base")], str(tmp_path / "c.json"))
    study.write_text('{"arms": [{"label": "x"}]}')
    with pytest.raises(UserError, match="arm 1 needs"):
        read_study_file(study)
