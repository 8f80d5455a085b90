"""The report's plots under ``OUT/plots``: the denoising loss by timestep (when computed), one
per summarised statistic and layer axis (and timestep axis), and the CKA heatmap and curves of
baseline vs curriculum, drawn in parallel processes.

:func:`start_plots` returns at once with the list of plots while worker processes draw them, so
the report computes its verdicts and page meanwhile (matplotlib is ~90 % of the report's time);
:meth:`Plots.wait` joins them."""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ddpm_lens.analysis.image_cka import MAIN_PAIR
from ddpm_lens.analysis.stat_registry import BY_NAME, PLOT_ORDER
from ddpm_lens.output import plots


class Plots:
    """Plots being drawn: ``made`` lists them ({"file", "group", "title", "caption"}); :meth:`wait`
    returns once every file is written (re-raising a worker's error)."""

    def __init__(self, made: list[dict], jobs: list, pool: ProcessPoolExecutor | None):
        self.made, self._pool = made, pool
        self._futures = [pool.submit(_draw, *job) for job in jobs] if pool else []
        if pool is None:
            for job in jobs:
                _draw(*job)

    def wait(self) -> list[dict]:
        """Join the workers (once; later calls return at once)."""
        futures, pool, self._futures, self._pool = self._futures, self._pool, [], None
        try:
            for future in futures:
                future.result()
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        return self.made


def start_plots(made: list[dict], jobs: list) -> Plots:
    """Start drawing ``jobs`` (from :func:`plot_jobs`) under OUT/plots.

    Matplotlib is slow per plot, so with several cores they are drawn in parallel worker
    processes (spawned: the parent may hold torch's thread pools; they exit as soon as the
    parent dies, even by SIGKILL); with one core, or few plots, here and now.
    """
    workers = min(os.cpu_count() or 1, len(jobs))
    if workers < 2 or len(jobs) < 4:
        return Plots(made, jobs, None)
    return Plots(made, jobs, process_pool(workers))


def plot_jobs(out: Path, summary_rows, cka, *, labels, a, b, loss=None) -> tuple[list[dict], list]:
    """The report's plots, not drawn yet: ([{"file", "group", "title", "caption"}], jobs for
    :func:`start_plots`)."""
    made, jobs = [], []
    if loss:
        rel = "plots/loss_by_timestep.png"
        pair_labels = (labels.get(a, a), labels.get(b, b))
        jobs.append(("loss_vs_timestep", (loss, out / rel), {"labels": pair_labels}))
        made.append({"file": rel, "group": "loss", "title": "Denoising loss by timestep", "caption": ""})
    stats_present = list(dict.fromkeys(r["statistic"] for r in summary_rows))
    several_t = len({r.get("t") for r in summary_rows}) > 1 and all(
        r.get("t") is not None for r in summary_rows
    )
    for stat in sorted(stats_present, key=_plot_rank):
        title = BY_NAME[stat].title
        rel = f"plots/{stat}_by_layer.png"
        jobs.append(("stat_vs_layer", (summary_rows, out / rel), {"statistic": stat, "labels": labels}))
        made.append(
            {"file": rel, "group": stat, "title": f"{title} by layer", "caption": BY_NAME[stat].definition}
        )
        if several_t:
            rel = f"plots/{stat}_by_timestep.png"
            jobs.append(
                ("stat_vs_timestep", (summary_rows, out / rel), {"statistic": stat, "labels": labels})
            )
            made.append({"file": rel, "group": stat, "title": f"{title} by timestep", "caption": ""})
    cka = [r for r in cka or [] if r.get("pair", MAIN_PAIR) == MAIN_PAIR]
    if cka:
        pair = (labels.get(a, a), labels.get(b, b))
        jobs.append(("cka_heatmap", (cka, out / "plots/cka_heatmap.png"), {"pair": pair}))
        made.append({"file": "plots/cka_heatmap.png", "group": "cka", "title": "CKA by layer and condition"})
        if len({r.get("t") for r in cka}) > 1 and all(r.get("t") is not None for r in cka):
            jobs.append(("cka_vs_timestep", (cka, out / "plots/cka_by_timestep.png"), {"pair": pair}))
            made.append({"file": "plots/cka_by_timestep.png", "group": "cka", "title": "CKA by timestep"})
    return made, jobs


def process_pool(workers: int) -> ProcessPoolExecutor:
    """Spawned worker processes that end when their parent ends."""
    return ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_exit_with_parent
    )


def _exit_with_parent() -> None:
    """In a worker: a thread that waits for the parent's end (its sentinel) and then exits at once."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_wait_and_exit, args=(parent,), daemon=True).start()


def _wait_and_exit(parent) -> None:
    parent.join()
    os._exit(1)


def _draw(name: str, args: tuple, kwargs: dict) -> None:
    getattr(plots, name)(*args, **kwargs)


def _plot_rank(stat: str) -> int:
    """The hypotheses' statistics first (PLOT_ORDER), the others after them in registry order."""
    return PLOT_ORDER.index(stat) if stat in PLOT_ORDER else len(PLOT_ORDER) + list(BY_NAME).index(stat)
