"""Typed run configuration, read from and written to ddpm-torch's JSON layout.

A config file has the top-level sections ``dataset``, ``diffusion``, ``model`` (older
ddpm-torch files call it ``denoise``), ``train`` and, for curriculum runs only,
``curriculum``. ``//`` line comments are allowed. Every problem (unknown key, wrong type,
impossible value) is a one-line :class:`UserError` naming the file and the key::

    cfg = load_config("configs/celeba.json")
    cfg = with_overrides(cfg, {"train.lr": 1e-4})
    save_config(cfg, "chkpts/celeba/config.json")
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ddpm_lens.util.atomic import write_text
from ddpm_lens.util.errors import UserError

# Resolution used when a config names a dataset without giving one (ddpm-torch's defaults).
DEFAULT_RESOLUTION = {"celeba": 64, "cifar10": 32, "celebahq": 256, "synthetic-faces": 64, "folder": 64}


@dataclass(frozen=True)
class DatasetConfig:
    name: str = "celeba"  # celeba | folder | synthetic-faces (other names load models, not data)
    root: str | None = None  # folder holding the data; None: the --data-dir flag or ~/datasets
    resolution: int = 64  # square image side in pixels
    random_flip: bool = True  # horizontal flips when training


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
class CurriculumConfig:
    """Easy-to-hard timestep presentation (see ddpm_lens.train.timesteps).

    ``kind="clusters"``: split [0, T) into ``num_clusters`` clusters (``spacing`` equal width in
    t or in log-SNR), ordered easy-to-hard (``easy``: which end of t is easy), adding one harder
    cluster per stage; after the last stage t is uniform. ``pacing="fixed"`` advances every
    ``steps_per_stage`` steps; ``"adaptive"`` when the smoothed loss has not improved by more than
    ``tolerance`` (relative) for ``patience`` steps, and never later than ``max_steps_per_stage``.

    ``kind="tmax"``: t in [0, t_max[s]) during stage s, stages starting at ``boundaries`` steps;
    ``mirror`` uses [T - t_max[s], T) instead.
    """

    kind: str = "clusters"  # clusters | tmax
    num_clusters: int = 5
    spacing: str = "t"  # t | log_snr
    easy: str = "high_t"  # high_t | low_t
    pacing: str = "fixed"  # fixed | adaptive
    steps_per_stage: int = 1000
    patience: int = 200
    tolerance: float = 0.01
    smoothing: float = 0.98  # EMA factor of the loss that adaptive pacing watches
    max_steps_per_stage: int = 5000
    t_max: tuple[int, ...] = (250, 500, 750, 1000)
    boundaries: tuple[int, ...] = (1000, 2000, 3000)  # step at which stage 1, 2, ... begins
    mirror: bool = False


_CLUSTER_KEYS = {
    "kind",
    "num_clusters",
    "spacing",
    "easy",
    "pacing",
    "steps_per_stage",
    "patience",
    "tolerance",
    "smoothing",
    "max_steps_per_stage",
}
_TMAX_KEYS = {"kind", "t_max", "boundaries", "mirror"}


@dataclass(frozen=True)
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    curriculum: CurriculumConfig | None = None  # None: baseline (uniform timesteps)
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
            cur = dataclasses.asdict(self.curriculum)
            keep = _CLUSTER_KEYS if self.curriculum.kind == "clusters" else _TMAX_KEYS
            out["curriculum"] = {k: v for k, v in cur.items() if k in keep}
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
}

_CHOICES = {
    "diffusion.model_mean_type": ("eps", "x_0", "mean"),
    "diffusion.model_var_type": ("fixed-small", "fixed-large"),
    "diffusion.loss_type": ("mse",),
    "train.amp": ("none", "bf16", "fp16"),
    "curriculum.kind": ("clusters", "tmax"),
    "curriculum.spacing": ("t", "log_snr"),
    "curriculum.easy": ("high_t", "low_t"),
    "curriculum.pacing": ("fixed", "adaptive"),
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
    """Read and validate a config file (ddpm-torch JSON, ``//`` comments allowed)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"config {path} not found: pass the path of a JSON config such as configs/celeba.json"
        )
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
    data = dict(data)
    if "denoise" in data:
        if "model" in data:
            raise UserError(f"config {source}: has both 'model' and its old name 'denoise'; keep one")
        data["model"] = data.pop("denoise")
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise UserError(f"config {source}: unknown section '{unknown[0]}' (valid: {', '.join(_SECTIONS)})")
    dataset = data.get("dataset", {})
    if isinstance(dataset, str):  # ddpm-torch writes "dataset": "celeba"
        dataset = {"name": dataset}
    if isinstance(dataset, dict) and "resolution" not in dataset:
        dataset = {**dataset, "resolution": DEFAULT_RESOLUTION.get(dataset.get("name", "celeba"), 64)}
    sections = {"dataset": _parse_section("dataset", dataset, source)}
    for name in ("diffusion", "model", "train"):
        sections[name] = _parse_section(name, data.get(name, {}), source)
    if data.get("curriculum") is not None:
        sections["curriculum"] = _parse_section("curriculum", data["curriculum"], source)
    cfg = Config(**sections, source=source)
    _check_values(cfg)
    return cfg


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
    cls = _SECTIONS[name]
    if not isinstance(raw, dict):
        raise UserError(f"config {source}: section '{name}' must be a JSON object, got {type(raw).__name__}")
    types = {f.name: f.type for f in fields(cls)}
    unknown = sorted(set(raw) - set(types))
    if unknown:
        raise UserError(f"config {source}: unknown key '{name}.{unknown[0]}' (valid: {', '.join(types)})")
    values = {key: _coerce(f"{name}.{key}", value, types[key], source) for key, value in raw.items()}
    if name == "curriculum":
        kind = values.get("kind", "clusters")
        allowed = _CLUSTER_KEYS if kind == "clusters" else _TMAX_KEYS
        extra = sorted(set(values) - allowed)
        if extra:
            raise UserError(
                f"config {source}: key 'curriculum.{extra[0]}' does not apply to kind '{kind}' "
                f"(valid: {', '.join(sorted(allowed))})"
            )
    return cls(**values)


def _coerce(key: str, value: Any, annotation: str, source: str) -> Any:
    def bad(expected: str):
        return UserError(f"config {source}: '{key}' must be {expected}, got {json.dumps(value)}")

    optional = annotation.endswith("| None")
    base = annotation.replace(" | None", "")
    if value is None:
        if optional:
            return None
        raise bad(base.replace("tuple[", "a list of ").replace(", ...]", "s"))
    if base == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if base == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if base == "str":
        if not isinstance(value, str):
            raise bad("a string")
        choices = _CHOICES.get(key)
        if choices and value not in choices:
            raise UserError(f"config {source}: '{key}' is {json.dumps(value)}; valid: {', '.join(choices)}")
        return value
    if base.startswith("tuple["):
        item = base[len("tuple[") :].split(",")[0]
        if not isinstance(value, list):
            raise bad(f"a list of {item}s")
        return tuple(_coerce(f"{key}[{i}]", v, item, source) for i, v in enumerate(value))
    raise AssertionError(f"unhandled annotation {annotation}")


def _check_values(cfg: Config) -> None:
    src = cfg.source

    def need(ok: bool, key: str, why: str):
        if not ok:
            raise UserError(f"config {src}: '{key}' {why}")

    d, m, t = cfg.diffusion, cfg.model, cfg.train
    need(cfg.dataset.resolution > 0, "dataset.resolution", "must be positive")
    need(d.timesteps >= 2, "diffusion.timesteps", "must be at least 2")
    need(
        0 < d.beta_start <= d.beta_end < 1,
        "diffusion.beta_start",
        "and beta_end must satisfy 0 < beta_start <= beta_end < 1",
    )
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
    need(t.lr > 0, "train.lr", "must be positive")
    need(t.batch_size >= 1, "train.batch_size", "must be at least 1")
    need(t.grad_norm >= 0, "train.grad_norm", "must be >= 0 (0 disables clipping)")
    need(t.epochs >= 1, "train.epochs", "must be at least 1")
    need(t.max_steps is None or t.max_steps >= 1, "train.max_steps", "must be at least 1")
    need(t.warmup >= 0, "train.warmup", "must be >= 0")
    need(0 < t.ema_decay < 1, "train.ema_decay", "must be in (0, 1)")
    need(t.num_accum >= 1, "train.num_accum", "must be at least 1")
    need(t.chkpt_intv >= 1, "train.chkpt_intv", "must be at least 1")
    need(t.image_intv >= 0, "train.image_intv", "must be >= 0 (0 disables sample grids)")
    need(t.num_samples >= 1, "train.num_samples", "must be at least 1")
    need(t.num_workers >= 0, "train.num_workers", "must be >= 0")
    c = cfg.curriculum
    if c is None:
        return
    if c.kind == "clusters":
        need(1 <= c.num_clusters <= d.timesteps, "curriculum.num_clusters", f"must be in 1..{d.timesteps}")
        need(c.steps_per_stage >= 1, "curriculum.steps_per_stage", "must be at least 1")
        need(c.patience >= 1, "curriculum.patience", "must be at least 1")
        need(c.tolerance >= 0, "curriculum.tolerance", "must be >= 0")
        need(0 <= c.smoothing < 1, "curriculum.smoothing", "must be in [0, 1)")
        need(c.max_steps_per_stage >= 1, "curriculum.max_steps_per_stage", "must be at least 1")
    else:
        need(
            len(c.t_max) >= 1 and all(0 < v <= d.timesteps for v in c.t_max),
            "curriculum.t_max",
            f"must be a non-empty list of values in 1..{d.timesteps}",
        )
        need(list(c.t_max) == sorted(set(c.t_max)), "curriculum.t_max", "must be strictly increasing")
        need(
            len(c.boundaries) == len(c.t_max) - 1,
            "curriculum.boundaries",
            f"must have one step per stage after the first ({len(c.t_max) - 1})",
        )
        need(
            list(c.boundaries) == sorted(set(c.boundaries)) and all(b > 0 for b in c.boundaries),
            "curriculum.boundaries",
            "must be strictly increasing positive step numbers",
        )
