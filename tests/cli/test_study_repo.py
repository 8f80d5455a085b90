"""The study's repository's files through the seed command: its config schema and checkpoint
layout (a CS model's mask buffers, curriculum_stage/config, timestamp), 140 files out."""

import json

import pytest
from conftest import ROOT, write_study_checkpoint

from ddpm_lens.cli import main

LAYERS = ["in_conv", "encoder_level_0", "encoder_level_1", "encoder_level_2", "encoder_level_3", "bottleneck"]


@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("study")
    base = write_study_checkpoint(
        d / "celeba_20251219_113720_16.pt", config="configs/tiny_study.json", seed=0
    )
    cs = write_study_checkpoint(
        d / "celeba64_cs_20251219_132723_16.pt", config="configs/tiny_cs.json", seed=1
    )
    out = d / "feature_visualizations"
    argv = [
        "visualize",
        "--baseline_ckpt", str(base),
        "--curriculum_ckpt", str(cs),
        "--config_baseline", str(ROOT / "configs/tiny_study.json"),
        "--config_curriculum", str(ROOT / "configs/tiny_cs.json"),
        "--num_samples", "5", "--timesteps", "100", "500", "900", "--num_channels", "64",
        "--output_dir", str(out), "--device", "cuda:0",
        "--no_report", "--no_progress",
    ]  # fmt: skip
    assert main(argv) == 0
    return out


def test_the_seed_command_on_study_schema_configs_writes_the_files_and_the_masked_bottleneck(study_run):
    """The study's 140 files, plus, because the curriculum model is CS, its bottleneck after the
    mask (what its decoder receives): 20 figures more."""
    pngs = sorted(p.relative_to(study_run).as_posix() for p in study_run.glob("sample_*/**/*.png"))
    assert len(pngs) == 140 + 5 * 4
    conditions = ["clean_t0", "noisy_t100", "noisy_t500", "noisy_t900"]
    expected = {
        f"sample_{i}/{c}/{layer}_baseline_vs_curriculum.png"
        for i in range(5)
        for c in conditions
        for layer in [*LAYERS, "bottleneck_masked"]
    }
    assert expected <= set(pngs)


def test_the_run_readme_and_manifest_show_stage_and_the_studys_layer_sizes(study_run):
    readme = (study_run / "README.md").read_text()
    assert "| curriculum stage |" in readme and "| 3 (fine) |" in readme and "| none |" in readme
    # the tiny models at 32x32: the study's taps halve at every downsample (16/8/4/4), bottleneck 4x4
    assert "| `encoder_level_0` | (32, 16, 16) | (32, 16, 16) |" in readme
    assert "measures 16/8/4/4 px and 4×4 here" in readme and "64/32/16/8 px and a 4×4 bottleneck" in readme
    models = json.loads((study_run / "manifest.json").read_text())["models"]
    assert [(m["curriculum_stage"], m["stage_name"], m["saved"]) for m in models] == [
        (-1, None, "20251219_132723"),
        (2, "fine", "20251219_132723"),
    ]
    stats = json.loads((study_run / "stats.json").read_text())
    assert {r["layer"] for r in stats["rows"]} == {*LAYERS, "bottleneck_masked"}  # CS: after the mask too
