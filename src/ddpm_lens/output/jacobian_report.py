"""The files of ``ddpm-lens jacobian``: CSVs, JSON, plots, eigenvector grids and ``index.html``.

::

    OUT/spectra.csv    one row per model × t × image × rank: σ_k, its bound (fast path), λ_k of J_s (exact)
    OUT/summary.csv    one row per model × t × image: trace, participation ratio, asymmetry, σ_1, σ_k,
                       the largest relative bound, products, Lanczos steps, rtol met, chunks, seconds
    OUT/jacobian.json  settings, models and the summary rows
    OUT/plots/spectrum_t<T>.png, effdim_vs_t.png, effdim_vs_checkpoint.png (arms with several
                       checkpoints), eigenvectors_t<T>.png (the first image)
    OUT/index.html

Every file is written atomically, after all Jacobians are taken: a run that fails leaves none.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ddpm_lens import __version__
from ddpm_lens.analysis.jacobian_run import JacobianResult, match_vectors, sign_convention
from ddpm_lens.output.csv_table import csv_text
from ddpm_lens.output.evaluation_page import report_css
from ddpm_lens.output.jacobian_plots import effdim_plot, eigenvector_grid, mean_ci, spectrum_plot
from ddpm_lens.output.report_page import json_safe, provenance, render_template
from ddpm_lens.output.run_folder import check_output_dir
from ddpm_lens.util.atomic import write_text

STUDY_RANKS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 30, 40, 50, 60, 70, 80)  # generate_jacobian_single.py


def shown_ranks(k: int) -> list[int]:
    return [r for r in STUDY_RANKS if r <= k]


def eigenvector_rows(result: JacobianResult, t: int) -> list[tuple[str, object, list[str]]]:
    """Per model: its vectors matched to the first model's (signs fixed by the first's convention)."""
    ranks = shown_ranks(result.settings["k"])
    rows = []
    ref = None
    for model in result.models:
        vec = result.vectors[(model["index"], t)]
        spectrum = {
            r["rank"]: r["sigma"]
            for r in result.spectra
            if r["model"] == model["index"] and r["t"] == t and r["image"] == 0
        }
        if ref is None:
            ref = sign_convention(vec)
            rows.append(
                (_label(model, result.models), ref.numpy(), [f"λ{r} σ={spectrum[r]:.3g}" for r in ranks])
            )
            continue
        matched, perm, overlap = match_vectors(ref, vec)
        caps = [f"#{int(perm[r - 1]) + 1} |⟨·,·⟩|={float(overlap[r - 1]):.2f}" for r in ranks]
        rows.append((_label(model, result.models), matched.numpy(), caps))
    return rows


def write_jacobian(
    out_dir: str | os.PathLike, result: JacobianResult, *, argv: list[str] | None = None
) -> dict[str, Path]:
    out = check_output_dir(out_dir)
    written: dict[str, Path] = {}

    def put(name: str, text: str) -> None:
        write_text(out / name, text)
        written[name] = out / name

    settings = result.settings
    put("spectra.csv", csv_text([json_safe(r) for r in result.spectra]))
    put("summary.csv", csv_text([json_safe(r) for r in result.summary]))
    record = {
        **provenance(argv),
        "settings": settings,
        "models": result.models,
        "summary": result.summary,
    }
    put("jacobian.json", json.dumps(json_safe(record), indent=1, allow_nan=False, ensure_ascii=False) + "\n")
    plots: list[dict] = []

    def plot(rel: str, title: str, draw) -> None:
        draw(out / rel)
        written[rel] = out / rel
        plots.append({"file": rel, "title": title})

    (out / "plots").mkdir(exist_ok=True)
    what = "J = ∂x̂₀/∂y" if settings["quantity"] == "x0" else "the study's I − ∂ε̂/∂x_t"
    for t in settings["timesteps"]:
        plot(
            f"plots/spectrum_t{t}.png",
            f"Singular values of {what} at t = {t}",
            lambda p, t=t: spectrum_plot(result.spectra, result.models, t, p),
        )
    plot(
        "plots/effdim_vs_t.png",
        "Effective dimensionality against t",
        lambda p: effdim_plot(result.summary, result.models, p, against="t"),
    )
    if any(sum(1 for m in result.models if m["arm"] == arm) > 1 for arm in {m["arm"] for m in result.models}):
        plot(
            "plots/effdim_vs_checkpoint.png",
            "Effective dimensionality against checkpoint",
            lambda p: effdim_plot(result.summary, result.models, p, against="epoch"),
        )
    shape = settings["shape"]
    for t in settings["timesteps"]:
        rows = eigenvector_rows(result, t)
        plot(
            f"plots/eigenvectors_t{t}.png",
            f"Top singular vectors (left, u_k) of image 0 at t = {t}, matched to {rows[0][0]}",
            lambda p, t=t, rows=rows: eigenvector_grid(
                rows,
                shape,
                shown_ranks(settings["k"]),
                p,
                title=f"t = {t}: singular vectors, rows matched to the first model",
            ),
        )
    put("index.html", render_page(page_context(result, plots)))
    return written


def page_context(result: JacobianResult, plots: list[dict]) -> dict:
    s = result.settings
    table = []
    for model in result.models:
        for t in s["timesteps"]:
            cell = [r for r in result.summary if r["model"] == model["index"] and r["t"] == t]
            tr, pr = mean_ci([r["trace"] for r in cell]), mean_ci([r["participation_ratio"] for r in cell])
            bounds = [r["max_rel_bound"] for r in cell if r["max_rel_bound"] is not None]
            asym = [r["asymmetry"] for r in cell if r["asymmetry"] is not None]
            table.append(
                {
                    "model": _label(model, result.models),
                    "t": t,
                    "trace": tr,
                    "pr": pr,
                    "sigma_1": mean_ci([r["sigma_1"] for r in cell])[0],
                    "asymmetry": mean_ci(asym)[0] if asym else None,
                    "bound": max(bounds) if bounds else None,
                    "seconds": sum(r["seconds"] for r in cell),
                }
            )
    facts = [
        ("models", ", ".join(f"{_label(m, result.models)}: {m['checkpoint']}" for m in result.models)),
        ("setting", f"{s['setting']} ({'×'.join(map(str, s['shape']))} = {s['dim']} dimensions)"),
        (
            "differentiated",
            "x̂₀ with respect to y = x_t/√ᾱ_t: J = I − √(1−ᾱ_t) ∂ε̂/∂x_t"
            if s["quantity"] == "x0"
            else "the study's I − ∂ε̂/∂x_t",
        ),
        (
            "method",
            s["method"]
            + (
                f" (block Lanczos, {s['block']} columns per step, "
                + (f"until every bound is at most {s['rtol']:g} × its σ" if s["rtol"] else "")
                + (", " if s["rtol"] and s["depth"] is not None else "")
                + (f"at most {s['depth'] + 1} steps" if s["depth"] is not None else "")
                + f"; trace by {s['probes']} Hutchinson probes)"
                if s["method"] == "fast"
                else " (dense Jacobian, LAPACK SVD)"
            ),
        ),
        ("timesteps", ", ".join(map(str, s["timesteps"]))),
        ("images", f"{s['num_images']} (noise fixed by seed {s['seed']}, image and t)"),
        ("weights", "EMA where present" if s["use_ema"] else "raw training weights"),
        ("device", s["device"]),
    ]
    return {
        "css": report_css(),
        "facts": facts,
        "table": table,
        "plots": plots,
        "files": ["spectra.csv", "summary.csv", "jacobian.json"],
        "fast": s["method"] == "fast",
        "version": __version__,
    }


def render_page(context: dict) -> str:
    return render_template("jacobian.html", context, safe=("css",))  # the package's own CSS


def _label(model: dict, models: list[dict]) -> str:
    from ddpm_lens.output.jacobian_plots import _model_label

    return _model_label(model, models)
