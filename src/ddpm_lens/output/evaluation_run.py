"""The files of ``ddpm-lens evaluate``: CSV, JSON, the study's table, plots and ``index.html``.

::

    OUT/evaluation.csv        one row per checkpoint: run, checkpoint, epoch, step, FID, KID, precision,
                              recall, held-out loss (mean and per t), seconds
    OUT/evaluation.json       the same rows, the per-t losses, the reference and every setting
    OUT/evaluation_table.txt  runs as columns, checkpoints as rows, best per run (as the study's)
    OUT/plots/quality_by_epoch.png, loss_by_t_last.png (each run's last checkpoint), loss_by_t_<run>.png
    OUT/index.html
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ddpm_lens.output.csv_table import csv_text
from ddpm_lens.output.evaluation_page import page_context, render_page
from ddpm_lens.output.evaluation_plots import last_loss_by_timestep, loss_by_timestep, quality_by_epoch
from ddpm_lens.output.evaluation_table import comparison_text
from ddpm_lens.output.report_page import json_safe, provenance
from ddpm_lens.output.run_folder import check_output_dir, check_replaceable, owned_files
from ddpm_lens.output.run_status import new_run_id
from ddpm_lens.util.atomic import write_text
from ddpm_lens.util.folder_lock import FolderLock

FILES = (
    "evaluation.csv",
    "evaluation.json",
    "evaluation_table.txt",
    "index.html",
    "plots/quality_by_epoch.png",
    "plots/loss_by_t_last.png",
)  # and plots/loss_by_t_<run>.png


def check_evaluation_dir(out_dir: str | os.PathLike) -> Path:
    """``out_dir`` once it can be written and holds none of the user's own files under the
    names evaluate writes (checked before any work; the folder is not created yet)."""
    out = check_output_dir(out_dir, create=False)
    if out.is_dir():
        check_replaceable(out, FILES, owned_files(out), flag="--output_dir")
    return out


def write_evaluation(
    out_dir: str | os.PathLike, evaluation, *, argv: list[str] | None = None
) -> dict[str, Path]:
    """Write every file of ``evaluation`` (:class:`ddpm_lens.analysis.training_evaluation.Evaluation`)
    under ``out_dir``; returns {relative name: path}, ``index.html`` last. Only files that an
    earlier ddpm-lens run wrote are replaced (``evaluation.json`` lists this run's)."""
    out = check_output_dir(out_dir)
    with FolderLock(out, flag="--output_dir"):
        return _write(out, evaluation, argv=argv)


def _write(out: Path, evaluation, *, argv: list[str] | None) -> dict[str, Path]:
    rows, settings = evaluation.rows, evaluation.settings
    runs = list(dict.fromkeys(r["run"] for r in rows))
    files = [*FILES, *(f"plots/loss_by_t_{_slug(run)}.png" for run in runs)]
    check_replaceable(out, files, owned_files(out), flag="--output_dir")
    written: dict[str, Path] = {}

    def put(name: str, text: str) -> None:
        write_text(out / name, text)
        written[name] = out / name

    put("evaluation.csv", csv_text([json_safe(r) for r in rows]))
    record = {
        **provenance(argv),
        "settings": settings,
        "reference": evaluation.reference,
        "rows": rows,
        "loss_rows": evaluation.loss_rows,
        "run_id": new_run_id(),
        "files": files,  # what this run wrote: a rerun may replace them
    }
    put(
        "evaluation.json", json.dumps(json_safe(record), indent=1, allow_nan=False, ensure_ascii=False) + "\n"
    )
    n_ref = ", ".join(map(str, sorted({r["n_reference"] for r in rows})))
    n = ", ".join(map(str, sorted({r["n"] for r in rows})))
    header = [
        f"Reference: {settings.get('reference')} ({n_ref} images)",
        f"Samples: {n} per checkpoint, {settings.get('sampler')}, seed {settings.get('seed')}",
        f"Features: {settings.get('network', {}).get('network')}",
    ]
    put("evaluation_table.txt", comparison_text(rows, header=header))
    quality_by_epoch(rows, out / "plots" / "quality_by_epoch.png")
    written["plots/quality_by_epoch.png"] = out / "plots" / "quality_by_epoch.png"
    quality_plots = [
        {
            "file": "plots/quality_by_epoch.png",
            "title": "FID, KID, precision, recall and held-out loss by epoch",
        }
    ]
    last_loss_by_timestep(evaluation.loss_rows, out / "plots" / "loss_by_t_last.png")
    written["plots/loss_by_t_last.png"] = out / "plots" / "loss_by_t_last.png"
    loss_plots = [
        {"file": "plots/loss_by_t_last.png", "title": "Held-out loss by timestep, each run's last checkpoint"}
    ]
    for run in runs:
        rel = f"plots/loss_by_t_{_slug(run)}.png"
        loss_by_timestep(evaluation.loss_rows, out / rel, run=run)
        written[rel] = out / rel
        loss_plots.append(
            {"file": rel, "title": f"Held-out loss by timestep, {run}, one line per checkpoint"}
        )
    files = ["evaluation.csv", "evaluation.json", "evaluation_table.txt"]
    context = page_context(evaluation, files=files, quality_plots=quality_plots, loss_plots=loss_plots)
    put("index.html", render_page(context))
    return written


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "run"
