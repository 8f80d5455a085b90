"""The final checkpoint of every arm of an across-training study, side by side on the same inputs.

``ddpm-lens trajectories --figures N`` hands each arm's last checkpoint to
:func:`~ddpm_lens.analysis.arm_features.arm_features` under the study's own settings: the
layers, the conditions (clean and the statistics timesteps), the seed, the weights (EMA or raw)
and the held-out images (the first ``stats_num`` of the study's held-out source; the figures
show the first N of them). Its activations feed the k-arm figures and its statistics rows the
every-arm-against-the-first hypothesis table::

    features = final_arm_features(arms, options, figures=1, resolution=32)
"""

from __future__ import annotations

from collections.abc import Sequence

from ddpm_lens.analysis.arm_features import ArmFeatures, arm_features
from ddpm_lens.analysis.study_arms import Arm
from ddpm_lens.analysis.trajectory_measures import TrajectoryOptions


def final_arm_features(
    arms: Sequence[Arm],
    options: TrajectoryOptions,
    *,
    figures: int,
    resolution: int,
    data_dir=None,
    held_out: str | None = None,
    device="cpu",
    progress: bool = False,
) -> ArmFeatures:
    """:class:`ArmFeatures` of each arm's final checkpoint: ``figures`` figure inputs, statistics
    rows over ``max(figures, options.stats_num)`` held-out images. ``held_out``: the study's
    held-out source spec (``dataset:NAME[:SPLIT]`` or a folder); None: the first arm's dataset's
    test split, as the study's default."""
    from ddpm_lens.analysis.image_sources import DATASET_PREFIX, open_source, parse_dataset_spec

    count = max(figures, options.stats_num)
    inputs: dict = {}
    if held_out is not None and held_out.startswith(DATASET_PREFIX):
        inputs["dataset"], inputs["split"] = parse_dataset_spec(held_out)
    elif held_out is not None:
        source = open_source(held_out, num=count, resolution=resolution, data_dir=data_dir)
        inputs["images"] = source.images(range(source.n))
    finals = [(arm.label, str(arm.checkpoints[-1].path), arm.checkpoints[-1].config) for arm in arms]
    return arm_features(
        [(label, path, None if config is None else str(config)) for label, path, config in finals],
        num_samples=figures,
        stats_samples=count,
        timesteps=tuple(options.stats_timesteps),
        layers=list(options.layers),
        seed=options.seed,
        use_ema=options.use_ema,
        batch_size=options.batch_size,
        data_dir=None if data_dir is None else str(data_dir),
        device=str(device),
        progress=progress,
        **inputs,
    )
