"""Write the study's output tree from the visualizer's chunks.

``OUT/sample_<i>/input_clean.png``, ``input_noisy_t<T>.png`` and
``<condition>/<layer>_baseline_vs_curriculum.png``, then the run-level files
``stats.csv``, ``stats.json``, ``cka.csv``, ``cka.json``, ``manifest.json`` and
``README.md``. Every file is written atomically; nothing the run did not write is removed.
Figures are composed as arrays and PNG-encoded on a thread pool (PIL and zlib release the
GIL), one chunk of samples at a time.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ddpm_lens import png, render
from ddpm_lens.atomic import write_text
from ddpm_lens.data import to_uint8
from ddpm_lens.errors import UserError
from ddpm_lens.pipeline import MODEL_KEYS, Chunk, PairAccumulators, Plan, iter_chunks, match_chunk
from ddpm_lens.tables import csv_text

STAT_COLUMNS = ("mean", "std", "mean_abs", "min", "max", "sparsity")


def figure_path(sample: int, condition: str, layer: str) -> str:
    return f"sample_{sample}/{condition}/{layer}_baseline_vs_curriculum.png"


def check_output_dir(out_dir: str | os.PathLike) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--output_dir {out} is a file: pass a folder path")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create --output_dir {out}: {exc.strerror}") from None
    return out


class FigureWriter:
    """Renders and writes one chunk's figures on a thread pool; sums render/write time."""

    def __init__(self, out: Path, plan: Plan, *, grid_size: int, norm: str, workers: int | None = None):
        self.out, self.plan, self.grid_size, self.norm = out, plan, grid_size, norm
        self.pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2)
        self.lock = threading.Lock()
        self.written = 0

    def close(self) -> None:
        self.pool.shutdown()

    def _job(self, rel: str, make) -> None:
        tic = time.perf_counter()
        array, pal = make()
        mid = time.perf_counter()
        png.write_png(self.out / rel, array, palette=pal)
        toc = time.perf_counter()
        self.plan.timings.add("render", mid - tic)
        self.plan.timings.add("write", toc - mid)
        with self.lock:
            self.written += 1

    def write_chunk(self, chunk: Chunk) -> list:
        """Queue the chunk's figures; returns their futures (the caller waits when it likes)."""
        plan = self.plan
        figures = min(len(chunk.x0), plan.num_samples - chunk.first)
        if figures <= 0:
            return []
        rows = {(r["sample"], r["condition"], r["layer"], r["model"]): r for r in chunk.rows}
        jobs = []
        for i in range(figures):
            g = chunk.first + i
            for cond in plan.conditions:
                (self.out / f"sample_{g}" / cond.name).mkdir(parents=True, exist_ok=True)
            jobs.append((f"sample_{g}/input_clean.png", _input(chunk.x0[i], f"Clean Image (Sample {g})")))
            for s, cond in enumerate(plan.conditions):
                if cond.noisy:
                    caption = f"Noisy Image t={cond.t} (Sample {g})"
                    jobs.append(
                        (f"sample_{g}/input_noisy_t{cond.t}.png", _input(chunk.inputs[i, s], caption))
                    )
                for layer in plan.layers:
                    jobs.append(
                        (figure_path(g, cond.name, layer), self._comparison(chunk, rows, i, s, layer))
                    )
        return [self.pool.submit(self._job, rel, make) for rel, make in jobs]

    def _comparison(self, chunk: Chunk, rows: dict, i: int, s: int, layer: str):
        cond = self.plan.conditions[s]
        g = chunk.first + i
        panels = [
            render.Panel(
                model.label,
                chunk.maps[key][layer][i, s],
                rows[(g, cond.name, layer, key)],
                channels=chunk.shown[key][layer][i, s].tolist(),
                normed=chunk.normed[key][layer][i, s],
            )
            for key, model in zip(MODEL_KEYS, self.plan.models)
        ]
        matched = rows[(g, cond.name, layer, "curriculum")].get("matched_corr")
        labels = [m.label for m in self.plan.models]
        note = (
            f"{labels[1]} channels matched one-to-one to {labels[0]}'s (mean r={matched:.2f})"
            if matched is not None
            else None
        )
        title = f"{layer} | {cond.name} | Sample {g}"
        kwargs = {"title": title, "grid_size": self.grid_size, "norm": self.norm, "note": note}
        return lambda: (render.comparison_indices(panels, **kwargs), render.palette())


def _input(x, caption: str):
    return lambda: (render.input_figure(to_uint8(x), caption=caption), None)


def run_visualization(
    plan: Plan,
    out_dir: str | os.PathLike,
    *,
    grid_size: int = 8,
    norm: str = "channel",
    match_channels: bool = False,
    progress: bool = True,
) -> dict:
    """Stream every chunk through both models, write figures, then the run files. Returns a summary."""
    from tqdm.auto import tqdm

    out = check_output_dir(out_dir)
    wall = time.perf_counter()
    corr = None
    if match_channels:  # correlations over the figure samples come first: one extra pass over them
        pre = PairAccumulators(plan, cka=False, match=True)
        for chunk in iter_chunks(plan, limit=plan.num_samples):
            pre.update(chunk)
        corr = pre.matcher()
    accs = PairAccumulators(plan)
    writer = FigureWriter(out, plan, grid_size=grid_size, norm=norm)
    rows: list[dict] = []
    pending: list = []  # the previous chunk's figures: drawn while this chunk runs through the models
    bar = tqdm(total=plan.stats_samples, desc="visualize", unit="sample", disable=not progress)
    try:
        for chunk in iter_chunks(plan):
            accs.update(chunk)
            if corr is not None:
                match_chunk(chunk, corr, plan)
            for r in chunk.rows:
                r["figure"] = (
                    figure_path(r["sample"], r["condition"], r["layer"])
                    if (r["sample"] < plan.num_samples)
                    else None
                )
            chunk.acts = None  # the figures need only the shown maps: free the rest now
            for future in pending:
                future.result()
            pending = writer.write_chunk(chunk)
            rows += chunk.rows
            bar.update(len(chunk.x0))
        for future in pending:
            future.result()
    finally:
        bar.close()
        writer.close()
    cka = accs.cka_rows()
    tic = time.perf_counter()
    write_stats(out, plan, rows)
    write_cka(out, cka)
    plan.timings.add("write", time.perf_counter() - tic)
    return {
        "out": out,
        "figures": writer.written,
        "rows": rows,
        "cka": cka,
        "skipped_cka": sorted(accs.skipped),
        "wall": time.perf_counter() - wall,
    }


def stats_meta(plan: Plan) -> dict:
    return {
        "labels": [m.label for m in plan.models],
        "models": list(MODEL_KEYS),
        "threshold": plan.threshold,
        "num_samples": plan.num_samples,
        "stats_samples": plan.stats_samples,
        "num_channels": plan.num_channels,
        "conditions": [{"name": c.name, "t": c.t} for c in plan.conditions],
        "layers": plan.layers,
        "stats_over": "all channels of the layer (shown_* keys: the channels drawn)",
    }


def write_stats(out: Path, plan: Plan, rows: list[dict]) -> None:
    columns = [
        "sample",
        "condition",
        "t",
        "layer",
        "model",
        "shape",
        *STAT_COLUMNS,
        *(f"shown_{c}" for c in STAT_COLUMNS),
        "edge_energy",
        "autocorr",
        "shown_channels",
    ]
    if any("matched_corr" in r for r in rows):
        columns += ["matched_corr", "matched_channels"]
    columns.append("figure")
    write_text(out / "stats.csv", csv_text(rows, columns))
    write_text(out / "stats.json", json.dumps({**stats_meta(plan), "rows": rows}, allow_nan=True) + "\n")


def write_cka(out: Path, cka: list[dict]) -> None:
    columns = ["layer", "condition", "t", "n_samples", "n_examples", "cka_debiased", "cka_biased"]
    write_text(out / "cka.csv", csv_text(cka, columns))
    write_text(
        out / "cka.json",
        json.dumps(
            {
                "estimator": "linear CKA; debiased = unbiased HSIC (Song et al. "
                "2012), biased = Kornblith et al. 2019",
                "rows": cka,
            },
            allow_nan=True,
        )
        + "\n",
    )


def measured_shapes(rows: list[dict], layers: list[str]) -> dict[str, dict[str, list[int]]]:
    """layer -> model -> (C, H, W) as measured."""
    shapes: dict[str, dict[str, list[int]]] = {layer: {} for layer in layers}
    for r in rows:
        shapes[r["layer"]].setdefault(r["model"], r["shape"])
    return shapes


def write_manifest(out: Path, manifest: dict) -> None:
    write_text(out / "manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")


def run_readme(plan: Plan, result: dict, manifest: dict, *, norm: str) -> str:
    """The run's own README, in the spirit of the study's document, with measured facts."""
    labels = [m.label for m in plan.models]
    conds = plan.conditions
    figs, inputs = result["figures"], plan.num_samples * (1 + sum(c.noisy for c in conds))
    shapes = measured_shapes(result["rows"], plan.layers)
    lines = [
        "# Feature Activation Map Visualizations",
        "",
        f"Comparison of intermediate layer activations between **{labels[0]}** and **{labels[1]}** DDPMs.",
        "",
        "## Models",
        "",
        "| panel | checkpoint | epoch | weights | config | SHA-256 |",
        "|---|---|---|---|---|---|",
    ]
    for m in plan.models:
        d = m.describe()
        lines.append(
            f"| {d['label']} | `{d['checkpoint']}` | {d['epoch']} | {d['weights']} | `{d['config']}` | "
            f"`{d['sha256'][:16]}…` |"
        )
    comparisons = plan.num_samples * len(conds) * len(plan.layers)
    lines += [
        "",
        "## Generated files",
        "",
        f"**Total**: {figs} visualization files",
        f"- {inputs} input images ({plan.num_samples} samples × {1 + sum(c.noisy for c in conds)} images)",
        f"- {comparisons} feature comparisons ({plan.num_samples} samples × {len(conds)} conditions × "
        f"{len(plan.layers)} layers)",
        "- `stats.csv` / `stats.json`: one row per sample × condition × layer × model",
        "- `cka.csv` / `cka.json`: linear CKA between the two models per layer × condition",
        "- `manifest.json`: the exact command, versions, seeds and checkpoint hashes",
        "",
        "Conditions: "
        + ", ".join(f"`{c.name}`" + (f" (t={c.t})" if c.noisy else " (clean image, t=0)") for c in conds)
        + ".",
        f"Inputs: {plan.stats_samples} images; figures for the first {plan.num_samples}. "
        f"Noise is drawn once per sample and timestep from seed {plan.seed} and fed identically "
        "to both models.",
        "",
        "## Layer information (measured)",
        "",
        f"| Layer | {labels[0]} shape | {labels[1]} shape |",
        "|---|---|---|",
    ]
    for layer in plan.layers:
        a, b = (shapes[layer].get(k) for k in MODEL_KEYS)
        lines.append(f"| `{layer}` | ({', '.join(map(str, a))}) | ({', '.join(map(str, b))}) |")
    if any(shapes[layer].get("baseline") != shapes[layer].get("curriculum") for layer in plan.layers):
        lines += [
            "",
            "The two models' layer shapes differ; figures still show each model's own maps, and CKA is "
            "skipped where spatial sizes differ.",
        ]
    if "bottleneck" in shapes and shapes["bottleneck"].get("baseline", [0, 0, 0])[1:] != [4, 4]:
        h = shapes["bottleneck"]["baseline"][1]
        lines += [
            "",
            f"Note: the bottleneck (the UNet's middle block) runs at {h}×{h} here. With four "
            "resolution levels ddpm-torch downsamples only three times, so the 4×4 that the original "
            "study's table lists is not what these models compute.",
        ]
    lines += [
        "",
        "## How to read the figures",
        "",
        "Each comparison PNG shows a header `layer | condition | Sample i`, then two panels side by side "
        f"({labels[0]} left, {labels[1]} right), each with μ, σ and sparsity and a grid of the "
        f"{plan.num_channels} channels with the highest spatial variance (ranked per model and input).",
        "",
        "- **μ / σ**: mean and standard deviation of the activations over **all channels of the layer** "
        "(the same numbers restricted to the shown channels are the `shown_*` columns of `stats.csv`).",
        f"- **sparsity**: share of activations with |x| < {plan.threshold:g}, over all channels.",
        "- **Colour**: viridis (dark purple low, bright yellow high); "
        + {
            "channel": "each map scaled to its own 2nd–98th percentile, so compare patterns, not magnitudes.",
            "model": "one 2nd–98th percentile range per panel.",
            "shared": "one 2nd–98th percentile range shared by both panels, so magnitudes compare.",
        }[norm],
        "- Small maps (8×8, 4×4) are upscaled nearest-neighbour so every cell is legible.",
    ]
    if manifest.get("match_channels"):
        lines.append(
            f"- {labels[1]}'s channels are matched one-to-one to {labels[0]}'s shown channels by "
            "activation correlation over the figure samples (the note under each header gives the mean r)."
        )
    lines += [
        "",
        "## Recommended viewing order",
        "",
        "1. Inputs: `sample_X/input_clean.png` and the noisy inputs.",
        "2. Clean features: `sample_X/clean_t0/<layer>_baseline_vs_curriculum.png`.",
        "3. Mid-diffusion (t=500): `sample_X/noisy_t500/…`.",
        "4. Layer progression: one sample and condition, layers from `in_conv` to `bottleneck`.",
        "5. Across timesteps: one layer, `noisy_t100` → `noisy_t500` → `noisy_t900`.",
        "",
        "`index.html` (written by `ddpm-lens report`) puts the numbers, plots and every figure on one page.",
        "",
        "## Regenerating",
        "",
        "```bash",
        manifest["command"],
        "```",
        "",
    ]
    return "\n".join(lines)
