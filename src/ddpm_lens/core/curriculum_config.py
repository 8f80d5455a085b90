"""The ``curriculum`` config section: one :class:`CurriculumConfig` behind two written forms.

The project's own form names a ``kind``::

    "curriculum": {"kind": "clusters", "num_clusters": 5, "steps_per_stage": 1000}
    "curriculum": {"kind": "tmax", "t_max": [250, 500, 1000], "boundaries": [1000, 2000]}

The study's form (sun-messi/curriculum-sparse-reg, ``train_curriculum.py``) lists epoch stages
whose timestep ranges are fractions of T, and is read as ``kind="stages"``::

    "curriculum": {"enabled": true, "mode": "hard",
                   "stages": [{"t_min": 0.3, "t_max": 1.0, "epochs": 1, "name": "stage1_coarse",
                               "sparsity": 0.8, "lambda": 3e-5}, ...]}

As in the study's trainer, ``enabled`` false or missing means a baseline (None here), as does an
enabled section without stages; a stage without ``epochs`` lasts 10 epochs, without ``t_min`` /
``t_max`` spans 0 / 1, without ``alpha`` / ``beta`` (soft mode) uses 1 (uniform). Writing the
config back (:func:`curriculum_to_dict`) gives the study's form for ``kind="stages"``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ddpm_lens.core.config_values import coerce, parse_fields, without_private
from ddpm_lens.util.errors import UserError, warn


@dataclass(frozen=True)
class Stage:
    """One stage of the study's curriculum: a block of epochs and its timestep range."""

    t_min: float = 0.0  # hard mode: t from int(t_min * T) ...
    t_max: float = 1.0  # ... up to int(t_max * T), exclusive, at least one step wide
    epochs: int = 10  # the study's trainer counts a stage without "epochs" as 10
    name: str | None = None  # None: "stage_<i+1>"
    sparsity: float | None = None  # CS target share of masked channels; None: the rule from t_min
    lam: float | None = None  # JSON "lambda": CR strength; None: the rule from t_min
    alpha: float = 1.0  # soft mode: t = floor(Beta(alpha, beta) * (T - 1)); 1, 1 is uniform on [0, T)
    beta: float = 1.0


STAGE_KEYS = {"lambda": "lam"}  # JSON key -> field name where they differ


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

    ``kind="stages"`` (the study's form): ``stages`` in epoch order; ``mode="hard"`` draws t
    uniformly from each stage's range, ``"soft"`` from its Beta(alpha, beta).
    """

    kind: str = "clusters"  # clusters | tmax | stages
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
    mode: str = "hard"  # stages: hard | soft
    stages: tuple[Stage, ...] = ()

    def stage_name(self, index: int) -> str:
        """A stage's name, ``stage_<i+1>`` when it has none (the study's default)."""
        if self.kind == "stages" and 0 <= index < len(self.stages) and self.stages[index].name:
            return self.stages[index].name
        return f"stage_{index + 1}"

    @property
    def total_epochs(self) -> int:
        """The study's run length: the sum of the stages' epochs (stages only)."""
        return sum(s.epochs for s in self.stages)


KIND_KEYS = {
    "clusters": {
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
    },
    "tmax": {"kind", "t_max", "boundaries", "mirror"},
}
STUDY_KEYS = ("enabled", "mode", "stages")

CHOICES = {
    "curriculum.kind": ("clusters", "tmax"),
    "curriculum.spacing": ("t", "log_snr"),
    "curriculum.easy": ("high_t", "low_t"),
    "curriculum.pacing": ("fixed", "adaptive"),
    "curriculum.mode": ("hard", "soft"),
}


def parse_curriculum(raw: Any, source: str) -> CurriculumConfig | None:
    """The section in either form; None for a baseline (the study's disabled section)."""
    if not isinstance(raw, dict):
        raise UserError(
            f"config {source}: section 'curriculum' must be a JSON object, got {type(raw).__name__}"
        )
    raw = without_private(raw)
    if set(raw) & set(STUDY_KEYS):
        return _parse_study_form(raw, source)
    values = parse_fields(CurriculumConfig, "curriculum", raw, source, CHOICES)
    kind = values.get("kind", "clusters")
    extra = sorted(set(raw) - KIND_KEYS[kind])
    if extra:
        raise UserError(
            f"config {source}: key 'curriculum.{extra[0]}' does not apply to kind '{kind}' "
            f"(valid: {', '.join(sorted(KIND_KEYS[kind]))})"
        )
    return CurriculumConfig(**values)


def _parse_study_form(raw: dict, source: str) -> CurriculumConfig | None:
    unknown = sorted(set(raw) - set(STUDY_KEYS))
    if unknown:
        raise UserError(
            f"config {source}: key 'curriculum.{unknown[0]}' does not apply to the study's staged form "
            f"(valid: {', '.join(STUDY_KEYS)}; or use 'kind' without them)"
        )
    enabled = coerce("curriculum.enabled", raw.get("enabled", False), "bool", source, CHOICES)
    mode = coerce("curriculum.mode", raw.get("mode", "hard"), "str", source, CHOICES)
    stages_raw = raw.get("stages", [])
    if not isinstance(stages_raw, list):
        raise UserError(f"config {source}: 'curriculum.stages' must be a list of stage objects")
    stages = tuple(
        Stage(**parse_fields(Stage, f"curriculum.stages[{i}]", s, source, CHOICES, keys=STAGE_KEYS))
        for i, s in enumerate(stages_raw)
    )
    if stages and "enabled" not in raw:
        warn(
            f"config {source}: 'curriculum' has stages but no 'enabled'; the study's trainer then trains "
            'a baseline, and so does ddpm-lens: add "enabled": true to use the stages'
        )
    if enabled and not stages:
        raise UserError(
            f"config {source}: 'curriculum.stages' is empty but 'curriculum.enabled' is true: list the "
            'stages, or set "enabled": false to train a baseline'
        )
    if not enabled:
        return None
    return CurriculumConfig(kind="stages", mode=mode, stages=stages)


def check_curriculum(c: CurriculumConfig, timesteps: int, source: str) -> None:
    """Value checks that need more than a type (ranges, orders, lengths)."""

    def need(ok: bool, key: str, why: str):
        if not ok:
            raise UserError(f"config {source}: '{key}' {why}")

    if c.kind == "clusters":
        need(1 <= c.num_clusters <= timesteps, "curriculum.num_clusters", f"must be in 1..{timesteps}")
        need(c.steps_per_stage >= 1, "curriculum.steps_per_stage", "must be at least 1")
        need(c.patience >= 1, "curriculum.patience", "must be at least 1")
        need(c.tolerance >= 0, "curriculum.tolerance", "must be >= 0")
        need(0 <= c.smoothing < 1, "curriculum.smoothing", "must be in [0, 1)")
        need(c.max_steps_per_stage >= 1, "curriculum.max_steps_per_stage", "must be at least 1")
    elif c.kind == "tmax":
        need(
            len(c.t_max) >= 1 and all(0 < v <= timesteps for v in c.t_max),
            "curriculum.t_max",
            f"must be a non-empty list of values in 1..{timesteps}",
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
    else:
        for i, s in enumerate(c.stages):
            key = f"curriculum.stages[{i}]"
            for name in ("t_min", "t_max"):
                need(0 <= getattr(s, name) <= 1, f"{key}.{name}", "must be a fraction of T in [0, 1]")
            need(s.t_min <= s.t_max, f"{key}.t_min", f"({s.t_min}) is above its t_max ({s.t_max}): swap them")
            need(s.epochs >= 0, f"{key}.epochs", "must be >= 0")
            need(s.sparsity is None or 0 <= s.sparsity <= 1, f"{key}.sparsity", "must be in [0, 1]")
            need(s.lam is None or s.lam >= 0, f"{key}.lambda", "must be >= 0")
            need(s.alpha > 0 and s.beta > 0, f"{key}.alpha", "and beta must be positive")
        need(c.total_epochs >= 1, "curriculum.stages", "must last at least one epoch in total")


def curriculum_to_dict(c: CurriculumConfig) -> dict[str, Any]:
    """The section as written: the project's form for clusters/tmax, the study's for stages."""
    if c.kind != "stages":
        keep = KIND_KEYS[c.kind]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in _fields(c).items() if k in keep}
    stages = []
    for s in c.stages:
        d: dict[str, Any] = {"t_min": s.t_min, "t_max": s.t_max, "epochs": s.epochs}
        for key, value in (("sparsity", s.sparsity), ("lambda", s.lam), ("name", s.name)):
            if value is not None:
                d[key] = value
        if c.mode == "soft":
            d.update(alpha=s.alpha, beta=s.beta)
        stages.append(d)
    return {"enabled": True, "mode": c.mode, "stages": stages}


def _fields(c: CurriculumConfig) -> dict[str, Any]:
    return {f.name: getattr(c, f.name) for f in dataclasses.fields(c)}
