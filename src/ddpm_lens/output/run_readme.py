"""The run's own ``README.md``, in the spirit of the study's document, with measured facts."""

from __future__ import annotations

from ddpm_lens.analysis.model_pair import MODEL_KEYS
from ddpm_lens.analysis.plan import Plan
from ddpm_lens.analysis.stream import StreamResult


def measured_shapes(rows: list[dict], layers: list[str]) -> dict[str, dict[str, list[int]]]:
    """layer -> model -> (C, H, W) as measured."""
    shapes: dict[str, dict[str, list[int]]] = {layer: {} for layer in layers}
    for r in rows:
        shapes[r["layer"]].setdefault(r["model"], r["shape"])
    return shapes


def epoch_cell(d: dict) -> str:
    """The epoch, else ``step S`` (a U-ViT ``<step>.ckpt/`` folder has no epoch), else None's text."""
    if d.get("epoch") is None and d.get("step") is not None:
        return f"step {d['step']}"
    return str(d.get("epoch"))


def stage_cell(d: dict) -> str:
    """``curriculum_stage`` as the run README shows it: 1-based with its name, "none", or "—"."""
    stage = d.get("curriculum_stage")
    if stage is None:
        return "—"
    return "none" if stage < 0 else f"{stage + 1} ({d.get('stage_name')})"


def seed_table_note(shapes: dict[str, dict[str, list[int]]]) -> list[str]:
    """One line on where the seed document's hand-written layer table differs from what is measured."""
    taps = [f"encoder_level_{i}" for i in range(4)] + ["bottleneck"]
    if not all(shapes.get(n, {}).get("baseline") for n in taps):
        return []
    sizes = [shapes[n]["baseline"][1] for n in taps]
    return [
        "",
        "The study's hand-written table lists `encoder_level_0..3` at 64/32/16/8 px and a 4×4 bottleneck; "
        "its extractor, like this one, taps the last module of each down level (the downsample where the "
        f"level has one), which measures {'/'.join(map(str, sizes[:4]))} px and {sizes[4]}×{sizes[4]} here "
        "(32/16/8/8 and 8×8 for CelebA-64; `--layers blocks` gives the blocks before each downsample).",
    ]


def run_readme(plan: Plan, result: StreamResult, figures: int, manifest: dict) -> str:
    """The run's own README, in the spirit of the study's document, with measured facts."""
    labels = [m.label for m in plan.models]
    conds = plan.conditions
    opts = plan.options
    norm = opts.norm
    figs, inputs = figures, opts.num_samples * (1 + sum(c.noisy for c in conds))
    shapes = measured_shapes(result.rows, plan.layers)
    lines = [
        "# Feature Activation Map Visualizations",
        "",
        f"Comparison of intermediate layer activations between **{labels[0]}** and **{labels[1]}** DDPMs.",
        "",
        "## Models",
        "",
        "| panel | checkpoint | epoch | curriculum stage | weights | config | SHA-256 |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in plan.models:
        d = m.describe()
        lines.append(
            f"| {d['label']} | `{d['checkpoint']}` | {epoch_cell(d)} | {stage_cell(d)} | {d['weights']} | "
            f"`{d['config']}` | `{d['sha256'][:16]}…` |"
        )
    comparisons = opts.num_samples * len(conds) * len(plan.layers)
    lines += [
        "",
        "## Generated files",
        "",
        f"**Total**: {figs} visualization files",
        f"- {inputs} input images ({opts.num_samples} samples × {1 + sum(c.noisy for c in conds)} images)",
        f"- {comparisons} feature comparisons ({opts.num_samples} samples × {len(conds)} conditions × "
        f"{len(plan.layers)} layers)",
        "- `stats.csv` / `stats.json`: one row per sample × condition × layer × model",
        "- `cka.csv` / `cka.json`: linear CKA between the two models per layer × condition, with a 95 % "
        "interval over images and its mismatched-image null (read CKA against the null, not 0)",
        "- `manifest.json`: the exact command, versions, seeds and checkpoint hashes",
        *(
            [
                "- `loss_by_t.csv` / `loss_by_t.json`: each model's denoising loss at each of "
                f"{opts.loss_timesteps} timesteps (p per t and Holm-adjusted across them)"
            ]
            if opts.loss_timesteps
            else []
        ),
        "",
        "Conditions: "
        + ", ".join(f"`{c.name}`" + (f" (t={c.t})" if c.noisy else " (clean image, t=0)") for c in conds)
        + ".",
        f"Inputs: {opts.stats_samples} images; figures for the first {opts.num_samples}. "
        f"Noise is drawn once per sample and timestep from seed {opts.seed} and fed identically "
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
    lines += seed_table_note(shapes)
    lines += [
        "",
        "## How to read the figures",
        "",
        "Each comparison PNG shows a header `layer | condition | Sample i`, then two panels side by side "
        f"({labels[0]} left, {labels[1]} right), each with μ, σ and sparsity and a grid of the "
        f"{opts.num_channels} channels with the highest spatial variance (ranked per model and input).",
        "",
        "- **μ / σ**: mean and standard deviation of the activations over **all channels of the layer** "
        "(the same numbers restricted to the shown channels are the `shown_*` columns of `stats.csv`).",
        f"- **sparsity**: share of activations with |x| < {opts.threshold:g}, over all channels, printed "
        "as the study printed it (two decimals of a per cent). It is **scale-dependent**: these layers "
        "have no ReLU, so the share reads about 1/σ, not the shape of the activations; the grey line "
        "under it gives the scale-free **Hoyer** sparseness (0 constant, 1 one-hot) that H1 uses.",
        "- **Colour**: viridis (dark purple low, bright yellow high); "
        + {
            "channel": "each map scaled to its own 2nd–98th percentile, so compare patterns, not "
            "magnitudes: the colour bar's 0–1 ('Activation Strength', the study's label) is that "
            "per-map range, not a value of the layer.",
            "model": "one 2nd–98th percentile range per panel.",
            "shared": "one 2nd–98th percentile range shared by both panels, so magnitudes compare.",
        }[norm],
        "- Small maps (8×8, 4×4) are upscaled nearest-neighbour so every cell is legible; the figure is "
        "the study's size at 150 dpi (about 2984×1427 px for an 8×8 grid).",
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
