"""The command line as a user meets it: exit codes, one-line errors, no tracebacks."""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_lens.cli import build_parser, main
from ddpm_lens.core.checkpoint import save_checkpoint
from ddpm_lens.core.config import load_config

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs/tiny.json"


def run_cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "ddpm_lens", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture
def tiny_ckpt(tmp_path, tiny_model):
    path = tmp_path / "tiny_20260101_000000_2.pt"
    sd = tiny_model.state_dict()
    ema = {
        k: v + 0.01 * torch.randn(v.shape, generator=torch.Generator().manual_seed(1)) for k, v in sd.items()
    }
    save_checkpoint(
        {
            "model": sd,
            "ema": {"decay": 0.99, "shadow": ema, "num_updates": 1},
            "epoch": 2,
            "config": load_config(TINY).to_dict(),
        },
        path,
    )
    return path


def test_help_lists_commands_and_flags():
    out = run_cli("--help")
    assert out.returncode == 0 and "sample" in out.stdout and "export" in out.stdout
    out = run_cli("sample", "--help")
    assert out.returncode == 0 and "--ckpt" in out.stdout and "--no_ema" in out.stdout


def test_sample_writes_a_seeded_grid(tmp_path, tiny_ckpt, capsys):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert main(["sample", "--ckpt", str(tiny_ckpt), "--num", "4", "--steps", "3", "--output", str(a)]) == 0
    assert (
        main(
            [
                "sample",
                "--ckpt",
                str(tiny_ckpt),
                "--config",
                str(TINY),
                "--num",
                "4",
                "--steps",
                "3",
                "--output",
                str(b),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    img = np.asarray(Image.open(a))
    assert img.shape == (2 + 2 * 34, 2 + 2 * 34, 3)  # 2x2 grid of 32px images with 2px gaps
    assert np.array_equal(img, np.asarray(Image.open(b)))
    assert "EMA weights" in capsys.readouterr().out


def test_export_safetensors(tmp_path, tiny_ckpt):
    out = tmp_path / "w.safetensors"
    assert main(["export", "--ckpt", str(tiny_ckpt), "--output", str(out)]) == 0
    from safetensors.torch import load_file

    ckpt = torch.load(tiny_ckpt, weights_only=True)
    exported = load_file(out)
    assert set(exported) == set(ckpt["model"])
    assert all(torch.equal(v, ckpt["ema"]["shadow"][k]) for k, v in exported.items())  # the EMA weights
    raw = tmp_path / "raw.safetensors"
    assert main(["export", "--ckpt", str(tiny_ckpt), "--no_ema", "--output", str(raw)]) == 0
    assert all(torch.equal(v, ckpt["model"][k]) for k, v in load_file(raw).items())


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "random",
        "exploit",
        "mismatch",
        "bad-config",
        "bad-flag",
        "output-is-dir",
        "device-mps",
        "nan-weights",
        "int-weights",
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, tiny_ckpt, case):
    ckpt, extra = tiny_ckpt, []
    if case == "missing":
        ckpt = tmp_path / "nope.pt"
    elif case == "random":
        ckpt = tmp_path / "random.pt"
        ckpt.write_bytes(os.urandom(1000))
    elif case == "exploit":
        ckpt = tmp_path / "evil.pt"
        torch.save({"model": {}, "x": _Exploit()}, ckpt)
    elif case == "mismatch":
        extra = ["--config", ROOT / "configs/celeba.json"]
    elif case == "bad-config":
        bad = tmp_path / "bad.json"
        bad.write_text('{"model": {"hid_chanels": 32}}')
        extra = ["--config", bad]
    elif case == "bad-flag":
        extra = ["--num", "many"]
    elif case == "output-is-dir":  # an IsADirectoryError traceback once the images were drawn
        (tmp_path / "o.png").mkdir()
    elif case == "device-mps":  # a NotImplementedError traceback
        extra = ["--device", "mps"]
    elif case in ("nan-weights", "int-weights"):  # a NaN image; integers cast to floats silently
        obj = torch.load(tiny_ckpt, weights_only=True)
        w = obj["ema"]["shadow"]["in_conv.weight"]
        obj["ema"]["shadow"]["in_conv.weight"] = w * torch.inf if case == "nan-weights" else w.long()
        ckpt = tmp_path / "bad.pt"
        torch.save(obj, ckpt)
    out = run_cli("sample", "--ckpt", ckpt, "--output", tmp_path / "o.png", *extra, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.stderr
    assert not (tmp_path / "o.png").is_file() and not (tmp_path / "pwned.txt").exists()
    expected = {
        "exploit": "was refused: it holds pickled Python objects",
        "output-is-dir": "--output .*o.png is a folder: pass a PNG file path",
        "device-mps": "device 'mps' is not supported .*: use auto, cpu, cuda or cuda:N",
        "nan-weights": r"'in_conv.weight' \(EMA weights \(ema.shadow\)\) holds \d+ NaN/inf values",
        "int-weights": "'in_conv.weight' holds torch.int64 values where float weights belong",
    }
    assert re.search(expected.get(case, ""), errors[0]), errors[0]


def _commands():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices


@pytest.mark.parametrize("command", ["demo", "visualize", "report", "train", "sample", "export"])
def test_every_flag_takes_both_spellings_and_help_shows_the_declared_one(command):
    parser = _commands()[command]
    flags = [f for a in parser._actions for f in a.option_strings if f.startswith("--") and f != "--help"]
    styles = {"_" if "_" in f[2:] else "-" for f in flags if "_" in f[2:] or "-" in f[2:]}
    assert len(styles) <= 1, f"{command} mixes flag styles: {flags}"
    if command == "visualize":
        assert styles == {"_"}  # the seed study's spelling
    help_text = parser.format_help()
    for flag in flags:
        snake, kebab = "--" + flag[2:].replace("-", "_"), "--" + flag[2:].replace("_", "-")
        table = parser._option_string_actions
        assert table[snake] is table[flag] and table[kebab] is table[flag]
        other = kebab if flag == snake else snake
        if other != flag:
            assert not re.search(re.escape(other) + r"\b", help_text), f"{other} in {command}'s help"


def test_both_spellings_parse_to_the_same_values():
    parser = build_parser()
    a = parser.parse_args(
        ["visualize", "--baseline-ckpt", "a", "--curriculum_ckpt", "b", "--num-samples=3"],
    )
    assert (a.baseline_ckpt, a.curriculum_ckpt, a.num_samples) == (["a"], ["b"], 3)
    a = parser.parse_args(
        ["train", "--config", "c", "--data_dir", "d", "--max_steps", "4", "--channels_last"]
    )
    assert (a.data_dir, a.max_steps, a.channels_last) == ("d", 4, True)


def test_errors_name_flags_the_way_the_command_spells_them(tmp_path, tiny_pair, capsys):
    # the same dataset error from data/datasets.py, under visualize and under train
    code = main(
        [
            "visualize",
            "--baseline-ckpt",
            str(tiny_pair[0]),
            "--curriculum-ckpt",
            str(tiny_pair[1]),
            "--dataset",
            "celeba",
            "--output-dir",
            str(tmp_path / "v"),
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--data_dir DIR" in err and "--data-dir" not in err, err
    config = tmp_path / "celeba_tiny.json"
    data = load_config(TINY).to_dict()
    data["dataset"]["name"] = "celeba"
    config.write_text(json.dumps(data))
    code = main(["train", "--config", str(config), "--chkpt_dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and "--data-dir DIR" in err and "--data_dir" not in err, err


def test_train_refuses_a_data_dir_its_dataset_does_not_read(tmp_path, capsys):
    # configs/tiny.json trains on synthetic faces: the folder used to be ignored, exit 0
    code = main(
        ["train", "--config", str(TINY), "--data_dir", str(tmp_path), "--chkpt-dir", str(tmp_path / "c")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "the synthetic-faces dataset reads no folder, but --data-dir" in err, err
    assert not (tmp_path / "c").exists()


def test_demo_refuses_zero_samples(tmp_path, capsys):
    # cli/visualize.py's `args.num_samples or 5` once turned 0 into 5 samples
    assert main(["demo", "--num_samples", "0", "--output_dir", str(tmp_path / "d"), "--no_report"]) == 2
    assert "--num_samples must be at least 1, got 0" in capsys.readouterr().err
    assert not [p for p in (tmp_path / "d").rglob("*") if p.is_file()]


def test_train_refuses_a_chkpt_dir_it_cannot_write_before_training(tmp_path, capsys):
    # found only when the first checkpoint was saved, an epoch into the run
    (tmp_path / "file").write_text("x")
    code = main(
        ["train", "--config", str(TINY), "--chkpt-dir", str(tmp_path / "file" / "runs"), "--max_steps", "2"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "cannot write to --chkpt-dir" in err and "file/runs" in err, err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--max-steps", "0"], "--max-steps 0: 'train.max_steps' must be at least 1"),
        (["--batch-size", "0"], "--batch-size 0: "),
    ],
)
def test_train_blames_a_bad_flag_not_the_config_file(tmp_path, capsys, flags, message):
    code = main(["train", "--config", str(TINY), "--chkpt-dir", str(tmp_path / "c"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and f"config {TINY}" not in err, err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "."])
def test_train_refuses_a_name_that_is_a_path(tmp_path, capsys, name):
    # --name ../../x wrote checkpoints outside --chkpt-dir
    chkpts = tmp_path / "deep" / "c"
    code = main(
        ["train", "--config", str(TINY), "--chkpt-dir", str(chkpts), "--name", name, "--max-steps", "1"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--name" in err and "plain name" in err, err
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


# ---- export: existing outputs, diverged weights, a full disk (#21.5, #20.5, #20.8) -----------
def _export(ckpt, out, *extra):
    return main(["export", "--ckpt", str(ckpt), "--output", str(out), *map(str, extra)])


def test_export_never_replaces_an_existing_file_or_folder_without_overwrite(tmp_path, tiny_ckpt, capsys):
    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(b"the user's own file")
    assert _export(tiny_ckpt, mine) == 2
    err = capsys.readouterr().err
    assert "--output" in err and "exists" in err and "--overwrite" in err and err.count("\n") == 1
    assert mine.read_bytes() == b"the user's own file"
    assert _export(tiny_ckpt, mine, "--overwrite") == 0 and mine.read_bytes()[:8] != b"the user"

    folder = tmp_path / "pipeline"
    assert _export(tiny_ckpt, folder, "--format", "diffusers") == 0
    (folder / "notes.txt").write_text("mine")
    assert _export(tiny_ckpt, folder, "--format", "diffusers") == 2  # the same rule for folders
    assert "--overwrite" in capsys.readouterr().err and (folder / "notes.txt").exists()
    assert _export(tiny_ckpt, folder, "--format", "diffusers", "--overwrite") == 0  # an earlier export
    assert not (folder / "notes.txt").exists() and (folder / "model_index.json").is_file()

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"jpeg")
    assert _export(tiny_ckpt, photos, "--format", "diffusers", "--overwrite") == 2  # not a pipeline
    assert "holds no diffusers pipeline" in capsys.readouterr().err and (photos / "a.jpg").exists()


def test_export_refuses_diverged_weights_unless_allowed(tmp_path, tiny_ckpt, capsys):
    obj = torch.load(tiny_ckpt, weights_only=True)
    obj["ema"]["shadow"]["in_conv.weight"][0, 0, 0, 0] = float("nan")
    bad = tmp_path / "diverged.pt"
    torch.save(obj, bad)
    assert _export(bad, tmp_path / "x.safetensors") == 2
    assert "'in_conv.weight'" in capsys.readouterr().err and not (tmp_path / "x.safetensors").exists()
    assert _export(bad, tmp_path / "x.safetensors", "--allow_nonfinite") == 0


@pytest.mark.parametrize("fmt", ["safetensors", "diffusers"])
def test_export_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, tiny_ckpt, monkeypatch, capsys, fmt):
    import safetensors.torch
    from safetensors import SafetensorError

    from ddpm_lens.util import atomic

    def disk_fills(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"x" * 100)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_fills)
    monkeypatch.setattr(atomic, "free_space", lambda path: 2**19)
    out = tmp_path / "out" / ("w.safetensors" if fmt == "safetensors" else "pipe")
    assert _export(tiny_ckpt, out, "--format", fmt) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no space left on the device while writing") and "0.5 MB free" in err
    assert err.count("\n") == 1 and not [p for p in tmp_path.rglob("*") if p.is_file() and p != tiny_ckpt]
