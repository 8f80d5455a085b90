"""The study's comparison table as text: checkpoints as rows, runs as columns, best per run.

Laid out like the seed study's ``uvit_celeba64_fid_comparison.txt``: one section per metric,
``Checkpoint | run | run ...`` with a row per epoch, then ``BEST <METRIC>:`` lines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# metric -> (heading, scale shown, lower is better)
TABLE_METRICS = {
    "fid": ("FID (Fréchet Inception Distance, lower is better)", 1.0, True),
    "kid_mean": ("KID x 10^3 (unbiased MMD^2, cubic kernel; lower is better)", 1e3, True),
    "precision": ("Precision (Kynkäänniemi et al., k = 3; higher is better)", 1.0, False),
    "recall": ("Recall (Kynkäänniemi et al., k = 3; higher is better)", 1.0, False),
    "loss_mean": ("Held-out denoising loss, mean over the t grid (lower is better)", 1.0, True),
}
RULE = "=" * 80


def checkpoint_label(row: dict, duplicates: bool) -> str:
    """``epoch E``, or ``epoch E, step S`` where a run has several checkpoints of one epoch;
    ``step S`` for a checkpoint with a step and no epoch (U-ViT's ``<step>.ckpt/``)."""
    epoch = row.get("epoch")
    if epoch is None and row.get("step") is not None:
        return f"step {row['step']}"
    label = f"epoch {epoch}" if epoch is not None else row["checkpoint"]
    return f"{label}, step {row['step']}" if duplicates and row.get("step") is not None else label


def table_grid(rows: Sequence[dict], metric: str) -> tuple[list[str], list[str], dict]:
    """(runs, row labels in order, {(label, run): value}) for one metric."""
    runs = list(dict.fromkeys(r["run"] for r in rows))
    counts: dict = {}
    for r in rows:
        counts[(r["run"], r.get("epoch"))] = counts.get((r["run"], r.get("epoch")), 0) + 1
    cells, order = {}, {}
    for r in rows:
        label = checkpoint_label(r, counts[(r["run"], r.get("epoch"))] > 1)
        order.setdefault(label, ((r.get("epoch") is None), r.get("epoch") or 0, r.get("step") or 0))
        cells[(label, r["run"])] = r.get(metric)
    labels = sorted(order, key=lambda k: order[k])
    return runs, labels, cells


def best_rows(rows: Sequence[dict], metric: str) -> dict[str, dict]:
    """run -> its row with the best value of ``metric`` (NaN and missing values skipped)."""
    lower = TABLE_METRICS[metric][2]
    best: dict[str, dict] = {}
    for r in rows:
        v = r.get(metric)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        cur = best.get(r["run"])
        if cur is None or (v < cur[metric] if lower else v > cur[metric]):
            best[r["run"]] = r
    return best


def comparison_text(rows: Sequence[dict], *, header: Sequence[str] = ()) -> str:
    """The whole text file: a title block, then a section per metric present in ``rows``."""
    lines = [RULE, "ddpm-lens: sample quality across training", *header, RULE, ""]
    for metric, (heading, scale, _) in TABLE_METRICS.items():
        if not any(r.get(metric) is not None for r in rows):
            continue
        runs, labels, cells = table_grid(rows, metric)
        width = max(12, *(len(r) for r in runs))
        first = max(15, *(len(label) for label in labels))
        lines += [heading, ""]
        lines.append(f"{'Checkpoint':<{first}} | " + " | ".join(f"{r:>{width}}" for r in runs))
        lines.append("-" * (first + 3 + len(runs) * (width + 3) - 3))
        for label in labels:
            values = [_num(cells.get((label, r)), scale) for r in runs]
            lines.append(f"{label:<{first}} | " + " | ".join(f"{v:>{width}}" for v in values))
        lines += ["", f"BEST {metric.upper().replace('_MEAN', '')}:"]
        best = best_rows(rows, metric)
        name_width = max(len(r) for r in runs) + 1
        for run in runs:
            if run in best:
                b = best[run]
                where = checkpoint_label(b, False) + (
                    f" (step {b['step']})" if b.get("step") is not None else ""
                )
                lines.append(f"  {run + ':':<{name_width}} {_num(b[metric], scale)} @ {where}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _num(value, scale: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value * scale:.2f}" if abs(value * scale) >= 1 else f"{value * scale:.4f}"
