"""The run's tables, written atomically: ``stats.csv`` / ``stats.json`` (one row per sample x
condition x layer x model x checkpoint), ``cka.csv`` / ``cka.json`` (one row per compared pair x
layer x condition) and, with ``--loss_timesteps``, ``loss_by_t.csv`` / ``loss_by_t.json`` (one
row per timestep)."""

from __future__ import annotations

import json
from pathlib import Path

from ddpm_lens.analysis.image_cka import CONFIDENCE, MAX_GROUPS, MIN_GROUPS, NULL_SHIFTS, RESAMPLES
from ddpm_lens.analysis.model_pair import MODEL_KEYS
from ddpm_lens.analysis.plan import Plan
from ddpm_lens.analysis.stat_registry import row_columns
from ddpm_lens.output.csv_table import csv_text
from ddpm_lens.output.run_folder import figure_path
from ddpm_lens.util.atomic import write_text

CKA_COLUMNS = [
    "pair",
    "a",
    "b",
    "layer",
    "condition",
    "t",
    "cka_debiased",
    "cka_biased",
    "cka_ci_low",
    "cka_ci_high",
    "cka_null",
    "n_images",
    "n_examples",
]


LOSS_COLUMNS = [
    "t",
    "a_loss",
    "a_ci_low",
    "a_ci_high",
    "b_loss",
    "b_ci_low",
    "b_ci_high",
    "diff_mean",
    "diff_ci_low",
    "diff_ci_high",
    "p_value",
    "p_adjusted",
    "n",
    "unit",
]


def stats_meta(plan: Plan) -> dict:
    opts = plan.options
    return {
        "labels": [m.label for m in plan.pair],
        "models": list(MODEL_KEYS),
        "threshold": opts.threshold,
        "num_samples": opts.num_samples,
        "stats_samples": opts.stats_samples,
        "num_channels": opts.num_channels,
        "conditions": [{"name": c.name, "t": c.t} for c in plan.conditions],
        "layers": plan.layers,
        "stats_over": "all channels of the layer (shown_* keys: the channels drawn)",
        "checkpoints": {key: sum(m.key == key for m in plan.models) for key in MODEL_KEYS},
    }


def add_figure_paths(rows: list[dict], num_samples: int) -> None:
    """Each row's ``figure``: the PNG that draws it, or None for statistics-only samples."""
    for r in rows:
        r["figure"] = (
            figure_path(r["sample"], r["condition"], r["layer"]) if r["sample"] < num_samples else None
        )


def write_stats(out: Path, plan: Plan, rows: list[dict], *, run_id: str | None = None) -> None:
    columns = [
        "sample",
        "condition",
        "t",
        "layer",
        "model",
        "checkpoint",
        "shape",
        *row_columns(),
        "shown_channels",
    ]
    if any("matched_corr" in r for r in rows):
        columns += ["matched_corr", "matched_corr_null", "matched_channels"]
    columns.append("figure")
    write_text(out / "stats.csv", csv_text(rows, columns))
    document = {**stats_meta(plan), **({"run_id": run_id} if run_id else {}), "rows": rows}
    write_text(out / "stats.json", json.dumps(document, allow_nan=True) + "\n")


def write_cka(out: Path, cka: list[dict], *, run_id: str | None = None) -> None:
    write_text(out / "cka.csv", csv_text(cka, CKA_COLUMNS))
    document = {
        "estimator": "linear CKA over images x positions; debiased = unbiased HSIC (Song et al. 2012), "
        "biased = Kornblith et al. 2019",
        "interval": f"{round(100 * CONFIDENCE)} % percentile bootstrap of cka_debiased over images (never "
        f"positions): images pooled into at most {MAX_GROUPS} groups, {RESAMPLES} draws; none below "
        f"{MIN_GROUPS} images",
        "null": f"cka_null: mean debiased CKA of model a's image i against model b's image i + s "
        f"(s = 1..{NULL_SHIFTS}, cyclic), the level unrelated inputs reach; read CKA against it, not 0",
        "pairs": "baseline_vs_curriculum: the first checkpoint of each arm; <arm>_vs_<arm>_1: the arm's "
        "first vs second checkpoint (same recipe, other seed)",
        **({"run_id": run_id} if run_id else {}),
        "rows": cka,
    }
    write_text(out / "cka.json", json.dumps(document, allow_nan=True) + "\n")


def write_loss_by_t(out: Path, plan: Plan, rows: list[dict]) -> None:
    write_text(out / "loss_by_t.csv", csv_text(rows, LOSS_COLUMNS))
    document = {
        "a": MODEL_KEYS[0],
        "b": MODEL_KEYS[1],
        "labels": [m.label for m in plan.pair],
        "loss": "each model's training loss (the config's loss_type on its model_mean_type target, "
        "eps-MSE for ddpm-torch models) on the statistics images; noise drawn once per image and t "
        "and shared by every model",
        "images": plan.options.stats_samples,
        "interval": "95 % t-interval of the mean over images (unit image) or over checkpoint means "
        "(unit checkpoint); diff = b - a, paired by image, or Welch's over checkpoints",
        "test": "p_value: Wilcoxon signed-rank on per-image differences (unit image) or Welch's t-test "
        "on per-checkpoint means (unit checkpoint), two-sided, per t; p_adjusted: Holm across the timesteps "
        "(read it to say at which t the models differ; the intervals are per t, uncorrected)",
        "rows": rows,
    }
    write_text(out / "loss_by_t.json", json.dumps(document, allow_nan=True) + "\n")
