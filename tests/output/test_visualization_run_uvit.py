"""The seed command on two of the study's U-ViT checkpoint folders: the whole tree, with token maps."""

import csv
import json

import pytest
from conftest import write_run

from ddpm_lens.cli import main

SEED_LAYERS = ["patch_embed", "in_block_0", "in_block_1", "mid_block"]


@pytest.fixture(scope="module")
def uvit_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("uvit")
    config, folder, _, _ = write_run(root)  # raw and EMA weights differ: two models to compare
    out = root / "feature_visualizations"
    args = [
        "visualize",
        "--baseline_ckpt", str(folder),
        "--curriculum_ckpt", str(folder),
        "--config_baseline", str(config),
        "--config_curriculum", str(config),
        "--num_samples", "2",
        "--timesteps", "100", "500", "900",
        "--num_channels", "16",
        "--dataset", "synthetic-faces",
        "--loss_timesteps",
        "--output_dir", str(out),
        "--no_progress",
        "--no_report",
    ]  # fmt: skip
    assert main(args) == 0
    return out


@pytest.mark.slow  # end to end: 40 figures, statistics, CKA and the loss at 20 timesteps (~4 s idle)
def test_the_seed_command_writes_the_full_tree_with_token_maps(uvit_run):
    out = uvit_run
    for i in range(2):
        assert (out / f"sample_{i}/input_clean.png").is_file()
        for cond in ("clean_t0", "noisy_t100", "noisy_t500", "noisy_t900"):
            names = sorted(p.name for p in (out / f"sample_{i}" / cond).iterdir())
            assert names == sorted(f"{n}_baseline_vs_curriculum.png" for n in SEED_LAYERS)
    for f in (
        "README.md",
        "stats.csv",
        "cka.csv",
        "loss_by_t.csv",
        "manifest.json",
    ):
        assert (out / f).is_file(), f
    with open(out / "stats.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["layer"] for r in rows} == set(SEED_LAYERS)
    assert {r["shape"] for r in rows} == {"32x4x4"}  # (D, H/p, W/p): 16 patch tokens, no time token
    assert len(rows) == 2 * 4 * 4 * 2
    with open(out / "cka.csv", newline="") as f:
        assert {r["layer"] for r in csv.DictReader(f)} == set(SEED_LAYERS)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    readme = (out / "README.md").read_text()
    assert "| `mid_block` | (32, 4, 4) | (32, 4, 4) |" in readme
    assert readme.count(".ckpt` | step 40 |") == 2  # from the folder's name, 40.ckpt: a step, not an epoch


@pytest.mark.slow  # the report's plots: ~15 s of CPU
def test_the_report_reads_a_uvit_run(uvit_run):
    assert main(["report", str(uvit_run)]) == 0
    assert (uvit_run / "index.html").is_file()
    summary = (uvit_run / "summary.csv").read_text()
    assert all(name in summary for name in SEED_LAYERS)


def test_two_steps_of_one_uvit_run_are_not_pooled_as_seeds(tmp_path, capsys):
    """Each arm given ckpts/40.ckpt and ckpts/80.ckpt of one run: refused in one line before any
    weights load (it was a TypeError traceback from the recipe check, and the steps would have
    been pooled as two runs had it passed)."""
    import shutil

    config, folder, _, _ = write_run(tmp_path)
    later = folder.parent / "80.ckpt"
    shutil.copytree(folder, later)
    out = tmp_path / "out"
    args = [
        "visualize",
        "--baseline_ckpt", str(folder), str(later),
        "--curriculum_ckpt", str(folder), str(later),
        "--config_baseline", str(config),
        "--config_curriculum", str(config),
        "--dataset", "synthetic-faces",
        "--output_dir", str(out),
        "--no_progress",
    ]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "are steps 40 and 80 of one training run" in err[0]
    assert "ddpm-lens trajectories" in err[0]
    assert not out.exists() or not any(out.iterdir())
