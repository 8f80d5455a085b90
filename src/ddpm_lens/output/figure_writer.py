"""Draws and writes the study's figures for each chunk, on a thread pool.

``OUT/sample_<i>/input_clean.png``, ``input_noisy_t<T>.png`` and
``<condition>/<layer>_baseline_vs_curriculum.png``. Figures are composed as arrays and
PNG-encoded on a thread pool (PIL and zlib release the GIL); a chunk's figures are drawn
while the next chunk runs through the models (one chunk in flight: a double buffer).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ddpm_lens.analysis.model_pair import MODEL_KEYS
from ddpm_lens.analysis.plan import Plan
from ddpm_lens.analysis.stream import Chunk
from ddpm_lens.analysis.timings import Timings
from ddpm_lens.data.datasets import to_uint8
from ddpm_lens.output import png, render
from ddpm_lens.output.run_folder import figure_path
from ddpm_lens.output.run_status import RUN_ID_KEY


class FigureWriter:
    """A sink for :func:`ddpm_lens.analysis.stream.run_stream`; call :meth:`close` at the end."""

    def __init__(
        self, out: Path, plan: Plan, timings: Timings, *, run_id: str = "", workers: int | None = None
    ):
        self.out, self.plan, self.timings = out, plan, timings
        self.text = {RUN_ID_KEY: run_id} if run_id else None  # stamped into every PNG
        self.pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2)
        self.lock = threading.Lock()
        self.paths: list[str] = []  # relative paths written, in completion order
        self._pending: list = []  # the previous chunk's figures

    @property
    def written(self) -> int:
        return len(self.paths)

    def __call__(self, chunk: Chunk) -> None:
        """Wait for the previous chunk's figures, then queue this chunk's."""
        self._wait()
        self._pending = [self.pool.submit(self._job, rel, make) for rel, make in self._jobs(chunk)]

    def close(self) -> None:
        try:
            self._wait()
        finally:
            self.pool.shutdown()

    def _wait(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def _job(self, rel: str, make) -> None:
        tic = time.perf_counter()
        array, pal = make()
        mid = time.perf_counter()
        png.write_png(self.out / rel, array, palette=pal, text=self.text, dpi=render.DPI)
        toc = time.perf_counter()
        self.timings.add("render", mid - tic)
        self.timings.add("write", toc - mid)
        with self.lock:
            self.paths.append(rel)

    def _jobs(self, chunk: Chunk) -> list:
        plan = self.plan
        figures = min(len(chunk.x0), plan.options.num_samples - chunk.first)
        rows = {
            (r["sample"], r["condition"], r["layer"], r["model"]): r
            for r in chunk.rows
            if not r["checkpoint"]
        }
        jobs = []
        for i in range(max(figures, 0)):
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
        return jobs

    def _comparison(self, chunk: Chunk, rows: dict, i: int, s: int, layer: str):
        cond = self.plan.conditions[s]
        g = chunk.first + i
        panels = []
        for key, model in zip(MODEL_KEYS, self.plan.models):
            maps = chunk.layers[key][layer]
            panels.append(
                render.Panel(
                    model.label,
                    maps.maps[i, s],
                    rows[(g, cond.name, layer, key)],
                    channels=maps.shown[i, s].tolist(),
                    normed=maps.normed[i, s],
                )
            )
        matched = rows[(g, cond.name, layer, "curriculum")].get("matched_corr")
        labels = [m.label for m in self.plan.models]
        note = (
            f"{labels[1]} channels matched one-to-one to {labels[0]}'s (mean r={matched:.2f})"
            if matched is not None
            else None
        )
        opts = self.plan.options
        kwargs = {
            "title": f"{layer} | {cond.name} | Sample {g}",
            "grid_size": opts.grid_size,
            "norm": opts.norm,
            "note": note,
            "cell_px": render.study_cell_px(opts.grid_size),  # the study's figure size at 150 dpi
        }
        return lambda: (render.comparison_indices(panels, **kwargs), render.palette())


def _input(x, caption: str):
    return lambda: (render.input_figure(to_uint8(x), caption=caption), None)
