"""What may share an arm: independent training runs (seeds) of one recipe, nothing else.

With two or more checkpoints per arm the statistics treat each checkpoint as one independent
observation of its recipe (Welch's test across them; CKA between an arm's first two as the
"same recipe, other seed" reference). Two kinds of file break that silently, so they are refused
before any weights are copied:

- **epochs of one run**: checkpoints in the same folder with the same run name (the file name
  without its ``_<YYYYmmdd_HHMMSS>`` and ``_<epoch>``) and the same config (seed included), at
  different epochs, or a U-ViT run's ``ckpts/<step>.ckpt/`` folders at different steps. They are
  one network at two times, not two draws of the recipe; the study's run folders
  (``chkpts/<name>/<run_timestamp>/``, ``workdir/<name>/<run>/ckpts/``) are exactly this.
- **other recipes**: checkpoints whose configs differ in ``curriculum``, ``sparsity`` (CS),
  ``regularization`` (CR) or the model's architecture.

:func:`check_unequal_arms` refuses one checkpoint in an arm against several in the other: the
statistics would read only the first of each (the single one has no spread across runs to
compare with), so the others would go unused.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from pathlib import Path

from ddpm_lens.util.errors import UserError

TRAJECTORIES = "to follow one run across training, use `ddpm-lens trajectories`"
RECIPE = ("curriculum", "sparsity", "regularization", "model")  # what an arm's runs must share


def run_name(path: str) -> str:
    """The file name without its save timestamp and epoch: ``celeba_20251219_113720_16.pt`` and
    ``celeba_16.pt`` are both ``celeba``."""
    stem = Path(path).stem
    stem = re.sub(r"(^|_)\d+$", "", stem)  # a U-ViT step folder, ``40000.ckpt``, has no name
    return re.sub(r"_\d{8}_\d{6}$", "", stem)


def check_unequal_arms(counts: dict[str, int], flag: str = "--{}_ckpt") -> None:
    """One checkpoint in an arm and several in the other is refused (``counts``: arm -> n)."""
    (a, na), (b, nb) = counts.items()
    if min(na, nb) == 1 and max(na, nb) > 1:
        one, many = (a, b) if na == 1 else (b, a)
        n = max(na, nb)
        raise UserError(
            f"{flag.format(one)} has 1 checkpoint and {flag.format(many)} {n}: with one run in an arm the "
            f"statistics read only the first of each, so {n - 1} would go unused; pass two or more runs "
            "of each recipe, or one checkpoint per arm"
        )


def check_arm(models: Sequence, flag: str) -> None:
    """Refuse epochs of one run, a file given twice, or other recipes within one arm.

    ``models`` are one arm's :class:`~ddpm_lens.analysis.model_pair.LoadedModel` in order."""
    for i, a in enumerate(models):
        for b in models[i + 1 :]:
            pa, pb = Path(a.weights.path).resolve(), Path(b.weights.path).resolve()
            if pa == pb:
                raise UserError(f"{flag} names {a.weights.path} twice: pass each run's checkpoint once")
            for section in RECIPE:
                va, vb = _recipe(a.config, section), _recipe(b.config, section)
                if va != vb:
                    raise UserError(
                        f"{flag} {a.weights.path} and {b.weights.path} are different recipes ({section}: "
                        f"{_brief(va)} vs {_brief(vb)}): an arm pools runs of one recipe; give each "
                        "recipe its own arm"
                    )
            when_a, when_b = _when(a.weights), _when(b.weights)
            same_run = (
                pa.parent == pb.parent
                and run_name(pa.name) == run_name(pb.name)
                and a.config.to_dict() == b.config.to_dict()
                and when_a != when_b
            )
            if same_run:
                unit = "steps" if when_a[0] == when_b[0] == "step" else "epochs"
                raise UserError(
                    f"{flag} {a.weights.path} and {b.weights.path} are {unit} {when_a[1]} and "
                    f"{when_b[1]} of one training run (same folder, name and config): an arm's "
                    f"checkpoints are pooled as independent runs (seeds), which they are not; {TRAJECTORIES}"
                )


def _when(weights) -> tuple[str, int | None]:
    """A checkpoint's time in its run: its epoch, or a U-ViT folder's step."""
    if weights.epoch is None and getattr(weights, "step", None) is not None:
        return ("step", weights.step)
    return ("epoch", weights.epoch)


def _recipe(config, section: str):
    """A config section as a recipe: the model's ``out_channels`` None (ours) and 3 (the study's
    config.json writes it) are the same model."""
    value = getattr(config, section)
    fields = {f.name for f in dataclasses.fields(value)} if dataclasses.is_dataclass(value) else set()
    if section == "model" and "out_channels" in fields:  # a U-ViT's is a property of in_chans
        value = dataclasses.replace(value, out_channels=value.out_channels or value.in_channels)
    return value


def _brief(section) -> str:
    """A config section in a few words for a one-line message."""
    if section is None:
        return "none"
    if getattr(section, "kind", None) == "stages":
        return f"{len(section.stages)} stages, {section.mode}"
    text = json.dumps(dataclasses.asdict(section), default=str, separators=(",", ":"))
    return text if len(text) <= 60 else text[:57] + "..."
