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


def test_uvit_arms_are_ordered_by_the_step_in_their_folder_names(tmp_path, capsys):
    """A U-ViT ckpts/ folder, or single <step>.ckpt/ folders: by step (numbers), with the arm's config,
    never their nnet/optimizer .pth files as checkpoints, and no file-time warning."""
    for step in (200, 10, 20):
        for f in ("nnet.pth", "nnet_ema.pth", "optimizer.pth", "step.pth"):
            _touch(tmp_path / "b" / "ckpts" / f"{step}.ckpt" / f)
    one = tmp_path / "c" / "ckpts"
    for step in (20, 10):
        _touch(one / f"{step}.ckpt" / "nnet_ema.pth")
    arm_b, arm_c = resolve_arms(
        [
            ("B", [str(tmp_path / "b" / "ckpts")], str(tmp_path / "b.py")),
            ("C", [str(one / "20.ckpt"), str(one / "10.ckpt")], None),
        ],
        config=tmp_path / "c.py",
    )
    assert [r.step for r in arm_b.checkpoints] == [10, 20, 200] and arm_b.ordered_by == "step"
    assert [r.path.name for r in arm_b.checkpoints] == ["10.ckpt", "20.ckpt", "200.ckpt"]
    assert {r.config for r in arm_b.checkpoints} == {tmp_path / "b.py"}
    assert [r.step for r in arm_c.checkpoints] == [10, 20] and arm_c.ordered_by == "step"
    assert {r.config for r in arm_c.checkpoints} == {tmp_path / "c.py"}
    assert all(r.epoch is None for r in arm_b.checkpoints + arm_c.checkpoints)
    assert "warning" not in capsys.readouterr().err
