"""final_arm_features: each arm's last checkpoint, on the study's held-out images and settings."""

from __future__ import annotations

import numpy as np
import torch

from ddpm_lens.analysis.final_arms import final_arm_features
from ddpm_lens.analysis.study_arms import resolve_arms
from ddpm_lens.analysis.trajectory_measures import TrajectoryOptions
from tests.analysis.test_trajectories import write_run

OPTIONS = TrajectoryOptions(stats_num=3, stats_timesteps=(100,), layers=("in_conv",), batch_size=4)


def test_final_checkpoints_on_the_held_out_folder(tmp_path, one_thread):
    from PIL import Image

    runs = [write_run(tmp_path / n, n, (1, 2), seed=s) for n, s in (("a", 0), ("b", 1))]
    arms = resolve_arms([("A", [str(runs[0])], None), ("B", [str(runs[1])], None)])
    folder = tmp_path / "held"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    features = final_arm_features(arms, OPTIONS, figures=2, resolution=16, held_out=str(folder))
    assert [m["checkpoint"].rsplit("_", 1)[-1] for m in features.models] == ["2.pt", "2.pt"]
    first = np.asarray(Image.open(folder / "0.png"), dtype=np.float32) / 127.5 - 1
    torch.testing.assert_close(features.images[0], torch.from_numpy(first).permute(2, 0, 1))
    assert features.images.shape[0] == 2 and [c.name for c in features.conditions] == [
        "clean_t0",
        "noisy_t100",
    ]
    assert len([r for r in features.rows if r["model"] == "B"]) == 3 * 2  # stats_num x conditions x layer
    a, b = (features.activations[k]["in_conv"] for k in ("A", "B"))
    assert a.shape == b.shape and not np.array_equal(a, b)
