"""``ddpm-lens evaluate`` end to end: two tiny runs trained here, every checkpoint scored."""

import csv
import json

import pytest

from ddpm_lens.analysis import inception_features
from ddpm_lens.cli import main
from ddpm_lens.core.config import load_config, save_config, with_overrides

pytestmark = pytest.mark.usefixtures("one_thread")  # sampling: 2 threads stall each other here

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def two_runs(tmp_path, face_folder):
    """Baseline and curriculum runs of 2 epochs x 4 steps on 16 faces of 16x16: 2 checkpoints each."""
    small = {
        "dataset.name": "folder",
        "dataset.resolution": 16,
        "train.batch_size": 4,
        "train.warmup": 2,
        "train.epochs": 2,
        "train.image_intv": 0,
    }
    runs = []
    for name, config in (("base", "configs/tiny.json"), ("cur", "configs/tiny_c.json")):
        path = tmp_path / f"{name}.json"
        save_config(with_overrides(load_config(config), small), path)
        argv = [
            "train",
            "--config",
            str(path),
            "--data-dir",
            str(face_folder),
            "--chkpt-dir",
            str(tmp_path / "chkpts"),
        ]
        assert main([*argv, "--name", name, "--no-progress", "--device", "cpu"]) == 0
        runs.append(tmp_path / "chkpts" / name)
    return runs


def test_evaluate_two_tiny_runs_writes_csv_table_plots_and_page(
    tmp_path, two_runs, monkeypatch, fake_network
):
    monkeypatch.setattr(inception_features, "InceptionFeatures", lambda device: fake_network)
    out = tmp_path / "evaluation"
    argv = ["evaluate", *map(str, two_runs), "--reference", "dataset:synthetic-faces:test", "--num", "8"]
    argv += [
        "--steps",
        "2",
        "--loss_num",
        "4",
        "--output_dir",
        str(out),
        "--cache_dir",
        str(tmp_path / "cache"),
    ]
    assert main([*argv, "--no_progress", "--device", "cpu"]) == 0

    with open(out / "evaluation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["run"], r["epoch"], r["step"]) for r in rows] == [
        ("base", "1", "4"),
        ("base", "2", "8"),
        ("cur", "1", "4"),
        ("cur", "2", "8"),
    ]
    for key in ("fid", "kid_mean", "kid_std", "precision", "recall", "loss_mean", "loss_t0", "loss_t999"):
        assert all(r[key] != "" for r in rows), key
    assert len({r["fid"] for r in rows}) == 4  # four different models
    assert len({r["loss_t555"] for r in rows}) == 4

    table = (out / "evaluation_table.txt").read_text()
    assert "Checkpoint" in table and "base" in table and "cur" in table and "BEST FID:" in table
    assert "epoch 1" in table and "epoch 2" in table

    record = json.loads((out / "evaluation.json").read_text())
    assert len(record["loss_rows"]) == 4 * 10 and record["settings"]["num"] == 8
    assert record["settings"]["network"]["weights_sha1"] == "fake-weights"
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(record["files"]) == written and len(record["run_id"]) == 16  # a rerun may replace them

    plots = ["plots/quality_by_epoch.png", "plots/loss_by_t_last.png", "plots/loss_by_t_base.png"]
    plots.append("plots/loss_by_t_cur.png")
    for rel in plots:
        assert (out / rel).read_bytes().startswith(PNG), rel
    page = (out / "index.html").read_text()
    assert all(f'src="{rel}"' in page for rel in plots)
    assert "FID table" in page and "--accent" in page  # the report's styles
    assert page.count('class="num best"') == 2  # one best checkpoint per run


def test_evaluate_refuses_to_replace_the_users_files_and_creates_no_folder(tmp_path, capsys):
    # index.html and plots/ of the user's own site were replaced silently
    site = tmp_path / "site"
    (site / "plots").mkdir(parents=True)
    (site / "index.html").write_text("<h1>mine</h1>")
    (site / "plots/quality_by_epoch.png").write_bytes(PNG + b"mine")
    argv = ["evaluate", str(tmp_path / "no-runs"), "--reference", "dataset:synthetic-faces:test"]
    assert main([*argv, "--output_dir", str(site)]) == 2
    err = capsys.readouterr().err
    assert "index.html and 1 more files that no ddpm-lens run wrote" in err, err
    assert (site / "index.html").read_text() == "<h1>mine</h1>"
    assert (site / "plots/quality_by_epoch.png").read_bytes() == PNG + b"mine"
    assert main([*argv, "--output_dir", str(tmp_path / "new" / "out")]) == 2  # the run folder is missing
    assert not (tmp_path / "new").exists()


def test_evaluate_scores_a_uvit_run_by_the_steps_of_its_folders(tmp_path, monkeypatch, fake_network):
    """A U-ViT workdir (ckpts/<step>.ckpt/ folders) with its .py config: found, scored with its EMA
    weights, and labelled by step (U-ViT checkpoints have no epoch)."""
    import torch
    from conftest import UVIT_STUDY_CONFIG, tiny_uvit

    for k, step in enumerate((20, 10)):
        folder = tmp_path / "uvit" / "ckpts" / f"{step}.ckpt"
        folder.mkdir(parents=True)
        torch.save(tiny_uvit(2 * k).state_dict(), folder / "nnet.pth")
        torch.save(tiny_uvit(2 * k + 1).state_dict(), folder / "nnet_ema.pth")
    config = tmp_path / "celeba16_uvit.py"
    config.write_text(UVIT_STUDY_CONFIG)
    monkeypatch.setattr(inception_features, "InceptionFeatures", lambda device: fake_network)
    out = tmp_path / "evaluation"
    argv = ["evaluate", str(tmp_path / "uvit"), "--config", str(config), "--reference"]
    argv += ["dataset:synthetic-faces:test", "--num", "4", "--steps", "2", "--loss_num", "2"]
    argv += ["--output_dir", str(out), "--cache_dir", str(tmp_path / "cache")]
    assert main([*argv, "--no_progress", "--device", "cpu"]) == 0
    with open(out / "evaluation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["run"], r["checkpoint"], r["epoch"], r["step"], r["weights"]) for r in rows] == [
        ("ckpts", "10.ckpt", "", "10", "ema"),
        ("ckpts", "20.ckpt", "", "20", "ema"),
    ]
    assert rows[0]["fid"] != rows[1]["fid"]
    table = (out / "evaluation_table.txt").read_text()
    assert "step 10" in table and "step 20" in table
