"""The files of ``ddpm-lens trajectories``::

    OUT/trajectories.csv     long form: arm, checkpoint, step, epoch, measure, layer, t, value, ci_low,
                             ci_high, n, unit (one row per arm x checkpoint x measure x layer x t)
    OUT/trajectories.json    the same rows, the checkpoints (SHA-256, seconds, cached), the gap
                             comparisons with their Holm-adjusted p, the verdicts and every setting
    OUT/gap_comparisons.csv  arm vs the first arm at equal steps, per t <= low_t
    OUT/plots/*.png          gap at low t vs step; gap heat map; loss; layer statistics; CKA drift
    OUT/figures/, OUT/arm_hypotheses.csv   with --figures: the arms' final checkpoints side by side
                             and H1-H4 every arm against the first (output/trajectory_figures.py)
    OUT/index.html           the report page (templates/trajectories.html)
    OUT/cache/               one entry per checkpoint and options (reused by the next run)

Each file is written atomically, index.html last.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ddpm_lens import __version__
from ddpm_lens.output.csv_table import csv_text
from ddpm_lens.output.evaluation_page import report_css
from ddpm_lens.output.report_page import json_safe, provenance, render_template
from ddpm_lens.output.trajectory_plots import gap_heatmap, measure_by_step
from ddpm_lens.util.atomic import write_text

STAT_PLOTS = (
    ("hoyer", "Hoyer sparseness (0 = dense, 1 = one-hot)"),
    ("hf_share", "High-frequency power share"),
    ("noise_robustness", "Noise robustness: corr(noisy, clean) per channel"),
    ("sigma", "σ: std of activations over channels and positions"),
    ("purity_excess", "Channel purity above its shuffled-factor null (modularity excess)"),
    ("cka_to_final", "Debiased CKA to the arm's final checkpoint (drift)"),
    ("cka_to_first_arm", "Debiased CKA to the first arm at the same step"),
)


def write_trajectories(
    out_dir: str | os.PathLike,
    study,
    *,
    argv: list[str] | None = None,
    features=None,
    match_channels: bool = False,
) -> dict[str, Path]:
    """Every file of ``study`` (:class:`ddpm_lens.analysis.trajectories.Study`) under ``out_dir``;
    with ``features`` (:func:`~ddpm_lens.analysis.final_arms.final_arm_features`) also the k-arm
    figures and the every-arm-against-the-first hypothesis table."""
    out = Path(out_dir)
    written: dict[str, Path] = {}

    def put(name: str, text: str) -> None:
        write_text(out / name, text, fsync=False)
        written[name] = out / name

    from ddpm_lens.analysis.trajectories import COLUMNS

    put("trajectories.csv", csv_text([json_safe(r) for r in study.rows], list(COLUMNS)))
    put(
        "gap_comparisons.csv",
        csv_text([json_safe(c) for c in study.comparisons]) if study.comparisons else "",
    )
    figures, hypotheses = [], []
    if features is not None:
        from ddpm_lens.output.trajectory_figures import (
            arm_hypotheses,
            hypothesis_cells_csv,
            write_arm_figures,
        )

        figures = write_arm_figures(out, features, match_channels=match_channels)
        written.update({f["file"]: out / f["file"] for f in figures})
        if len(features.labels) > 1:
            hypotheses = arm_hypotheses(features, alpha=study.settings["alpha"])
            put("arm_hypotheses.csv", hypothesis_cells_csv(hypotheses))
    record = {
        **provenance(argv),
        "settings": study.settings,
        "checkpoints": study.checkpoints,
        "comparisons": study.comparisons,
        "verdicts": study.verdicts,
        "figures": figures,
        "hypotheses": [{k: v for k, v in h.items() if k != "css"} for h in hypotheses],
        "rows": study.rows,
    }
    put(
        "trajectories.json",
        json.dumps(json_safe(record), indent=1, allow_nan=False, ensure_ascii=False) + "\n",
    )
    x_of = {(c["arm"], c["checkpoint"]): c["x"] for c in study.checkpoints}
    axis = study.settings["x_axis"]
    measures = {r["measure"] for r in study.rows}
    plots = []

    def plot(name, title, draw) -> None:
        rel = f"plots/{name}.png"
        draw(out / rel)
        written[rel] = out / rel
        plots.append({"file": rel, "title": title})

    low_t = study.settings["low_t"]
    if "gap_low_t" in measures:
        title = f"Generalization gap at low t (mean over the grid's t ≤ {low_t}) vs {axis}"
        plot(
            "gap_low_t_by_step",
            title,
            lambda p: measure_by_step(
                study.rows,
                "gap_low_t",
                p,
                x_of=x_of,
                x_label=axis,
                title=title,
                y_label="held-out − training loss",
                zero_line=True,
            ),
        )
    if "gap" in measures:
        plot(
            "gap_heatmap",
            "Generalization gap per t and checkpoint, one panel per arm",
            lambda p: gap_heatmap(study.rows, p, x_of=x_of, x_label=axis),
        )
        for measure, title in (
            ("loss_train", "Loss on training images"),
            ("loss_held_out", "Loss on held-out images"),
        ):
            plot(
                f"{measure}_by_step",
                f"{title} per t vs {axis}",
                lambda p, m=measure, tt=title: measure_by_step(
                    study.rows, m, p, x_of=x_of, x_label=axis, title=f"{tt} per t", y_label="loss"
                ),
            )
    for measure, title in STAT_PLOTS:
        if measure in measures:
            plot(
                f"{measure}_by_step",
                f"{title} vs {axis}, per layer and t",
                lambda p, m=measure, tt=title: measure_by_step(
                    study.rows, m, p, x_of=x_of, x_label=axis, title=tt
                ),
            )
    files = ["trajectories.csv", "trajectories.json", "gap_comparisons.csv"]
    files += ["arm_hypotheses.csv"] if hypotheses else []
    context = page_context(study, files=files, plots=plots)
    from ddpm_lens.analysis.decision_rule import rule_text

    context.update(figures=figures, hypotheses=hypotheses, match_channels=match_channels)
    context["rule"] = rule_text(study.settings["alpha"])
    context["finals"] = (
        [] if features is None else [(m["key"], Path(m["checkpoint"]).name) for m in features.models]
    )
    put("index.html", render_page(context))
    return written


def page_context(study, *, files: list[str], plots: list[dict]) -> dict:
    s = study.settings
    arms = s["arms"]
    counts = {a: sum(1 for c in study.checkpoints if c["arm"] == a) for a in arms}
    facts = [
        ("arms", " · ".join(f"{a} ({counts[a]} checkpoints, by {s['ordered_by'][a]})" for a in arms)),
        ("x axis", s["x_axis"]),
        ("training images", s.get("train_images") or f"first {s['loss_num']} of each config's training set"),
        ("held-out images", s.get("held_out") or f"first {s['loss_num']} of the dataset's test split"),
        ("loss timesteps", ", ".join(map(str, s["loss_timesteps"]))),
        ("low t", f"t ≤ {s['low_t']}"),
        ("statistics images", f"first {s['stats_num']} held-out images; CKA on the first {s['cka_num']}"),
        ("statistics timesteps", "clean (t = 0), " + ", ".join(map(str, s["stats_timesteps"]))),
        ("layers", ", ".join(s["layers"])),
        ("weights", "EMA where present" if s.get("use_ema") else "raw training weights"),
        ("seed", s["seed"]),
    ]
    return {
        "css": report_css(),
        "arms": arms,
        "settings": s,
        "facts": facts,
        "files": files,
        "plots": plots,
        "comparisons": study.comparisons,
        "verdicts": study.verdicts,
        "checkpoints": study.checkpoints,
        "version": __version__,
    }


def render_page(context: dict) -> str:
    return render_template("trajectories.html", context, safe=("css",))  # the package's own CSS
