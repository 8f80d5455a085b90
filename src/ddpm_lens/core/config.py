"""Typed run configuration, read from and written to ddpm-torch's JSON layout.

A config file has the top-level sections ``dataset``, ``diffusion``, ``model`` (older
ddpm-torch files call it ``denoise``), ``train`` and, for curriculum runs only,
``curriculum`` (either form of :mod:`ddpm_lens.core.curriculum_config`). The study's files
(sun-messi/curriculum-sparse-reg) add ``sparsity`` (CS) and ``regularization`` (CR); a
section with ``"enabled": false`` means the mode is off. The ``config.json`` the study's
trainer (``train_curriculum.py``) writes into each run folder reads as it is: its top-level
``seed`` is ``train.seed``, ``train.beta1``/``beta2`` are Adam's betas and ``model.block_size``
must be 1 (its pixel-shuffle wrapper is not built here). ``//`` comments (whole lines or
trailing) are allowed and keys beginning with ``_`` (``_comment``, ``_usage``) are notes,
ignored at every level. Every problem (unknown key, wrong type, impossible value) is a
one-line :class:`UserError` naming the file and the key::

    cfg = load_config("configs/celeba.json")
    cfg = with_overrides(cfg, {"train.lr": 1e-4})
    save_config(cfg, "chkpts/celeba/config.json")
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddpm_lens.core.config_values import parse_fields, without_private
from ddpm_lens.core.curriculum_config import (  # noqa: F401 - CurriculumConfig, Stage re-exported
    CurriculumConfig,
    Stage,
    check_curriculum,
    curriculum_to_dict,
    parse_curriculum,
)
from ddpm_lens.core.uvit import UViTConfig
from ddpm_lens.util.atomic import write_text
from ddpm_lens.util.errors import UserError

# Resolution used when a config names a dataset without giving one (ddpm-torch's and the study's
# dataset classes: CelebA32 is CelebA resized to 32, CelebA_HQ registers as "celeba_hq").
DEFAULT_RESOLUTION = {
    "celeba": 64,
    "celeba32": 32,
    "cifar10": 32,
    "celeba_hq": 256,
    "celebahq": 256,
    "synthetic-faces": 64,
    "folder": 64,
}


@dataclass(frozen=True)
class DatasetConfig:
    name: str = "celeba"  # celeba | celeba32 | cifar10 | folder | synthetic-faces (others: models only)
    root: str | None = None  # folder holding the data; None: the --data-dir flag or ~/datasets
    resolution: int = 64  # square image side in pixels
    random_flip: bool = True  # horizontal flips when training
    max_images: int | None = None  # train on the split's first N images only (smoke runs); None: all


@dataclass(frozen=True)
class DiffusionConfig:
    timesteps: int = 1000  # T; timesteps are 0 .. T-1
    beta_schedule: str = "linear"  # see ddpm_lens.core.schedules.BETA_SCHEDULES
    beta_start: float = 1e-4
    beta_end: float = 0.02
    model_mean_type: str = "eps"  # what the network predicts: eps | x_0 | mean
    model_var_type: str = "fixed-small"  # fixed-small (posterior variance) | fixed-large (betas)
    loss_type: str = "mse"


@dataclass(frozen=True)
class ModelConfig:
    in_channels: int = 3
    hid_channels: int = 128  # channels after in_conv; level i has hid * ch_multipliers[i]
    ch_multipliers: tuple[int, ...] = (1, 2, 2, 2)  # one entry per resolution level
    num_res_blocks: int = 2  # residual blocks per encoder level (decoder levels have one more)
    apply_attn: tuple[bool, ...] = (False, False, True, False)  # self-attention per level
    drop_rate: float = 0.0  # dropout inside residual blocks
    resample_with_conv: bool = True  # strided conv / conv after nearest upsampling (else pooling)
    out_channels: int | None = None  # None: in_channels (fixed variances)


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 2e-4
    batch_size: int = 128  # global batch (split across torchrun processes)
    grad_norm: float = 1.0  # gradient-norm clip; 0 disables
    epochs: int = 50
    max_steps: int | None = None  # step budget; stops before `epochs` when reached
    warmup: int = 5000  # linear lr warm-up steps
    use_ema: bool = True
    ema_decay: float = 0.9999
    beta1: float = 0.9  # Adam's betas (the study's trainer writes them into its run's config.json)
    beta2: float = 0.999
    num_accum: int = 1  # gradient accumulation micro-batches per step
    chkpt_intv: int = 1  # epochs between checkpoints
    image_intv: int = 1  # epochs between EMA sample grids (0 disables)
    num_samples: int = 64  # images in each sample grid
    amp: str = "none"  # autocast on CUDA: none | bf16 | fp16
    compile: bool = False  # torch.compile the model
    channels_last: bool = False  # NHWC memory format (faster convolutions on GPUs)
    num_workers: int = 0  # DataLoader worker processes
    seed: int = 0


@dataclass(frozen=True)
class SparsityConfig:
    """The study's CS mode: a channel mask on the bottleneck, regrown at stage changes."""

    enabled: bool = False
    initial_sparsity: float = 0.8  # share of bottleneck channels masked at the start
    regrowth_method: str = "gradient"  # gradient (largest accumulated |grad|) | random


@dataclass(frozen=True)
class RegularizationConfig:
    """The study's CR mode: a group-L1 penalty on the convs feeding the bottleneck."""

    enabled: bool = False
    lambda_max: float = 3e-5  # the strength a stage without "lambda" starts from


@dataclass(frozen=True)
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    model: ModelConfig | UViTConfig = field(default_factory=ModelConfig)  # UViTConfig: "name": "uvit"
    train: TrainConfig = field(default_factory=TrainConfig)
    curriculum: CurriculumConfig | None = None  # None: baseline (uniform timesteps)
    sparsity: SparsityConfig | None = None  # None: no channel mask (absent or disabled)
    regularization: RegularizationConfig | None = None  # None: no penalty (absent or disabled)
    source: str = field(default="<dict>", compare=False)  # file it was read from, for messages

    @property
    def name(self) -> str:
        """Experiment name: the config file's base name (ddpm-torch's convention)."""
        return Path(self.source).stem if self.source != "<dict>" else "run"

    def to_dict(self) -> dict[str, Any]:
        out = {
            "dataset": dataclasses.asdict(self.dataset),
            "diffusion": dataclasses.asdict(self.diffusion),
            "model": dataclasses.asdict(self.model),
            "train": dataclasses.asdict(self.train),
        }
        if self.curriculum is not None:
            out["curriculum"] = curriculum_to_dict(self.curriculum)
        for name in ("sparsity", "regularization"):
            if getattr(self, name) is not None:
                out[name] = dataclasses.asdict(getattr(self, name))
        for section in out.values():
            for k, v in section.items():
                if isinstance(v, tuple):
                    section[k] = list(v)
        return out


_SECTIONS = {
    "dataset": DatasetConfig,
    "diffusion": DiffusionConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "curriculum": CurriculumConfig,
    "sparsity": SparsityConfig,
    "regularization": RegularizationConfig,
}

_CHOICES = {
    "diffusion.model_mean_type": ("eps", "x_0", "mean"),
    "diffusion.model_var_type": ("fixed-small", "fixed-large"),
    "diffusion.loss_type": ("mse",),
    "train.amp": ("none", "bf16", "fp16"),
    "sparsity.regrowth_method": ("gradient", "random"),
}


def strip_line_comments(text: str) -> str:
    """Remove ``//`` comments that are outside JSON strings (so ``"http://x"`` survives)."""
    out = []
    for line in text.splitlines():
        in_str = escaped = False
        cut = len(line)
        for i, ch in enumerate(line):
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = in_str
            elif ch == '"':
                in_str = not in_str
            elif not in_str and line.startswith("//", i):
                cut = i
                break
        out.append(line[:cut])
    return "\n".join(out)


def load_config(path: str | os.PathLike) -> Config:
    """Read and validate a config file (ddpm-torch JSON, ``//`` comments allowed; or one of the
    study's U-ViT ``.py`` configs, parsed without running it: :mod:`ddpm_lens.core.uvit_config`)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"config {path} not found: pass the path of a JSON config such as configs/celeba.json"
        )
    if path.suffix == ".py":
        from ddpm_lens.core.uvit_config import read_study_config, study_to_config_dict

        return config_from_dict(study_to_config_dict(read_study_config(path), str(path)), source=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"config {path} cannot be read ({exc}): pass a UTF-8 JSON file") from None
    try:
        data = json.loads(strip_line_comments(text))
    except json.JSONDecodeError as exc:
        raise UserError(
            f"config {path} is not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    return config_from_dict(data, source=str(path))


def config_from_dict(data: Any, *, source: str = "<dict>") -> Config:
    """Validate a parsed config dict (ddpm-torch layout) into a :class:`Config`."""
    if not isinstance(data, dict):
        raise UserError(
            f"config {source}: the top level must be a JSON object with sections {list(_SECTIONS)}"
        )
    data = without_private(data)
    if "denoise" in data:
        if "model" in data:
            raise UserError(f"config {source}: has both 'model' and its old name 'denoise'; keep one")
        data["model"] = data.pop("denoise")
    data = _study_run_keys(data, source)
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise UserError(f"config {source}: unknown section '{unknown[0]}' (valid: {', '.join(_SECTIONS)})")
    dataset = data.get("dataset", {})
    if isinstance(dataset, str):  # ddpm-torch writes "dataset": "celeba"
        dataset = {"name": dataset}
    if isinstance(dataset, dict) and "resolution" not in dataset:
        dataset = {**dataset, "resolution": DEFAULT_RESOLUTION.get(dataset.get("name", "celeba"), 64)}
    sections = {"dataset": _parse_section("dataset", dataset, source)}
    for name in ("diffusion", "train"):
        sections[name] = _parse_section(name, data.get(name, {}), source)
    sections["model"] = _parse_model(data.get("model", {}), source)
    if data.get("curriculum") is not None:
        sections["curriculum"] = parse_curriculum(data["curriculum"], source)
    for name in ("sparsity", "regularization"):
        if data.get(name) is not None:
            section = _parse_section(name, data[name], source)
            sections[name] = section if section.enabled else None
    cfg = Config(**sections, source=source)
    _check_values(cfg)
    return cfg


def _study_run_keys(data: dict, source: str) -> dict:
    """The keys only the study's run-folder ``config.json`` has, folded into ours: its top-level
    ``seed`` becomes ``train.seed``; ``model.block_size`` (1 there) is checked and dropped."""
    data = dict(data)
    if "seed" in data:
        seed = data.pop("seed")
        train = data.get("train", {})
        if isinstance(train, dict):
            if "seed" in train and train["seed"] != seed:
                raise UserError(
                    f"config {source}: top-level 'seed' {seed} and 'train.seed' {train['seed']} differ; "
                    "keep one"
                )
            data["train"] = {**train, "seed": seed}
    model = data.get("model")
    if isinstance(model, dict) and "block_size" in model:
        model = dict(model)
        block = model.pop("block_size")
        if block != 1:
            raise UserError(
                f"config {source}: 'model.block_size' is {json.dumps(block)}; only 1 is supported (the "
                "study's pixel-shuffle wrapper for larger blocks is not built here): set it to 1"
            )
        data["model"] = model
    return data


def with_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Return a copy with ``{"section.key": value}`` overrides applied (None values are skipped)."""
    data = cfg.to_dict()
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, key = dotted.split(".", 1)
        data.setdefault(section, {})[key] = value
    return config_from_dict(data, source=cfg.source)


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the config as ddpm-torch-compatible JSON, atomically."""
    write_text(path, json.dumps(cfg.to_dict(), indent=2) + "\n")


def _parse_section(name: str, raw: Any, source: str):
    if not isinstance(raw, dict):
        raise UserError(f"config {source}: section '{name}' must be a JSON object, got {type(raw).__name__}")
    return _SECTIONS[name](**parse_fields(_SECTIONS[name], name, raw, source, _CHOICES))


def _parse_model(raw: Any, source: str) -> ModelConfig | UViTConfig:
    """The UNet's settings, or a U-ViT's when the section says ``"name": "uvit"``."""
    if isinstance(raw, dict) and raw.get("name") == "uvit":
        return UViTConfig(**parse_fields(UViTConfig, "model", raw, source, _CHOICES))
    return _parse_section("model", raw, source)


def _check_uvit(cfg: Config, need) -> None:
    m = cfg.model
    need(m.patch_size >= 1, "model.patch_size", "must be at least 1")
    need(m.img_size % m.patch_size == 0, "model.img_size", f"must be divisible by patch_size {m.patch_size}")
    need(
        cfg.dataset.resolution == m.img_size,
        "dataset.resolution",
        f"must equal model.img_size ({m.img_size}): the position embedding has one entry per patch",
    )
    need(m.embed_dim >= 1 and m.num_heads >= 1, "model.embed_dim", "and num_heads must be positive")
    need(m.embed_dim % m.num_heads == 0, "model.embed_dim", f"must be divisible by num_heads {m.num_heads}")
    need(m.depth >= 0 and m.depth % 2 == 0, "model.depth", "must be even (half in-blocks, half out-blocks)")
    need(m.mlp_ratio > 0, "model.mlp_ratio", "must be positive")
    need(m.num_classes == -1, "model.num_classes", "must be -1: class-conditional U-ViTs are not supported")


def _check_values(cfg: Config) -> None:
    src = cfg.source

    def need(ok: bool, key: str, why: str):
        if not ok:
            raise UserError(f"config {src}: '{key}' {why}")

    d, m = cfg.diffusion, cfg.model
    need(cfg.dataset.resolution > 0, "dataset.resolution", "must be positive")
    need(cfg.dataset.max_images is None or cfg.dataset.max_images >= 1, "dataset.max_images", "must be >= 1")
    need(d.timesteps >= 2, "diffusion.timesteps", "must be at least 2")
    need(
        0 < d.beta_start <= d.beta_end < 1,
        "diffusion.beta_start",
        "and beta_end must satisfy 0 < beta_start <= beta_end < 1",
    )
    if isinstance(m, UViTConfig):
        _check_uvit(cfg, need)
    else:
        _check_unet(cfg, need)
    _check_train(cfg, need)


def _check_unet(cfg: Config, need) -> None:
    m = cfg.model
    need(m.in_channels > 0, "model.in_channels", "must be positive")
    need(
        m.hid_channels >= 32 and m.hid_channels % 32 == 0,
        "model.hid_channels",
        "must be a positive multiple of 32 (GroupNorm uses 32 groups)",
    )
    need(
        len(m.ch_multipliers) >= 1 and all(c > 0 for c in m.ch_multipliers),
        "model.ch_multipliers",
        "must be a non-empty list of positive integers",
    )
    need(
        len(m.apply_attn) == len(m.ch_multipliers),
        "model.apply_attn",
        f"must have one entry per level ({len(m.ch_multipliers)}, like ch_multipliers)",
    )
    need(m.num_res_blocks >= 1, "model.num_res_blocks", "must be at least 1")
    need(0 <= m.drop_rate < 1, "model.drop_rate", "must be in [0, 1)")
    need(m.out_channels is None or m.out_channels > 0, "model.out_channels", "must be positive")
    factor = 2 ** (len(m.ch_multipliers) - 1)
    need(
        cfg.dataset.resolution % factor == 0,
        "dataset.resolution",
        f"must be divisible by {factor} (the model downsamples {len(m.ch_multipliers) - 1} times)",
    )


def _check_train(cfg: Config, need) -> None:
    src, d, t = cfg.source, cfg.diffusion, cfg.train
    need(t.lr > 0, "train.lr", "must be positive")
    need(t.batch_size >= 1, "train.batch_size", "must be at least 1")
    need(t.grad_norm >= 0, "train.grad_norm", "must be >= 0 (0 disables clipping)")
    need(t.epochs >= 1, "train.epochs", "must be at least 1")
    need(t.max_steps is None or t.max_steps >= 1, "train.max_steps", "must be at least 1")
    need(t.warmup >= 0, "train.warmup", "must be >= 0")
    need(0 < t.ema_decay < 1, "train.ema_decay", "must be in (0, 1)")
    need(0 <= t.beta1 < 1 and 0 <= t.beta2 < 1, "train.beta1", "and beta2 must be in [0, 1)")
    need(t.num_accum >= 1, "train.num_accum", "must be at least 1")
    need(t.chkpt_intv >= 1, "train.chkpt_intv", "must be at least 1")
    need(t.image_intv >= 0, "train.image_intv", "must be >= 0 (0 disables sample grids)")
    need(t.num_samples >= 0, "train.num_samples", "must be >= 0 (0: no sample grids)")
    need(t.num_workers >= 0, "train.num_workers", "must be >= 0")
    if cfg.curriculum is not None:
        check_curriculum(cfg.curriculum, d.timesteps, src)
    for mode in ("sparsity", "regularization"):
        need(
            getattr(cfg, mode) is None or cfg.curriculum is None or cfg.curriculum.kind == "stages",
            f"{mode}.enabled",
            "follows the study's staged curriculum: give 'curriculum' its 'stages' (or no curriculum)",
        )
    if cfg.sparsity is not None:
        need(0 <= cfg.sparsity.initial_sparsity < 1, "sparsity.initial_sparsity", "must be in [0, 1)")
    if cfg.regularization is not None:
        need(cfg.regularization.lambda_max >= 0, "regularization.lambda_max", "must be >= 0")
