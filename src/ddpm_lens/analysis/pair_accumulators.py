"""What is accumulated across chunks: CKA per compared pair x layer x condition (with its
bootstrap interval over images and its mismatched-image null, :mod:`~ddpm_lens.analysis.image_cka`),
channel correlations of the pair, and the one-to-one channel matching that
``--match_channels`` draws, with its null: the same matching on the correlations of
mismatched images (baseline image i - 1 against curriculum image i), the matched r that
unrelated inputs reach (aligned faces share a layout, so it is well above 0).

The compared pairs: baseline vs curriculum (the first checkpoint of each arm), and, for an arm
with two or more checkpoints, its first against its second: "same recipe, other seed", the
reference that says how much CKA two trainings of one recipe share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ddpm_lens.analysis.image_cka import MAIN_PAIR, ImageCKA
from ddpm_lens.analysis.model_pair import MODEL_KEYS
from ddpm_lens.analysis.similarity import CorrelationAccumulator, assign_channels

if TYPE_CHECKING:
    from ddpm_lens.analysis.plan import Plan
    from ddpm_lens.analysis.stream import Chunk


def compared_pairs(plan: Plan) -> list[tuple[str, str, str]]:
    """(pair name, model id a, model id b): the pair, then each arm's first vs second checkpoint."""
    pairs = [(MAIN_PAIR, *MODEL_KEYS)]
    ids = {m.id for m in plan.models}
    for key in MODEL_KEYS:
        if f"{key}_1" in ids:
            pairs.append((f"{key}_vs_{key}_1", key, f"{key}_1"))
    return pairs


class PairAccumulators:
    """CKA of every compared pair and the pair's channel correlations per layer x condition,
    streamed over chunks."""

    def __init__(self, plan: Plan, *, cka: bool = True, match: bool = False):
        self.plan, self.want_cka, self.match = plan, cka, match
        self.pairs = compared_pairs(plan)
        self.cka: dict[tuple[str, str, str], ImageCKA] = {}  # (pair, layer, condition)
        self.corr: dict[tuple[str, str], CorrelationAccumulator] = {}
        self.null_corr: dict[tuple[str, str], CorrelationAccumulator] = {}
        self._last: dict[tuple[str, str], np.ndarray] = {}  # the previous chunk's last figure image, A's rows
        self.skipped: set[str] = set()

    def update(self, chunk: Chunk) -> None:
        num_samples = self.plan.options.num_samples
        for layer in self.plan.layers:
            for name, id_a, id_b in self.pairs:
                xa, xb = chunk.layers[id_a][layer].acts, chunk.layers[id_b][layer].acts
                if xa.shape[-2:] != xb.shape[-2:]:
                    self.skipped.add(layer)  # different spatial grids: no paired examples
                    continue
                for s, cond in enumerate(self.plan.conditions):
                    x, y = example_rows(xa[:, s]), example_rows(xb[:, s])  # (n, H*W, C)
                    if self.want_cka:
                        acc = self.cka.get((name, layer, cond.name))
                        if acc is None:
                            acc = ImageCKA(x.shape[-1], y.shape[-1], images=self.plan.options.stats_samples)
                            self.cka[(name, layer, cond.name)] = acc
                        acc.update(chunk.first, x, y)
                    if self.match and name == MAIN_PAIR and chunk.first < num_samples:
                        n_fig = num_samples - chunk.first  # samples with figures in this chunk
                        key = (layer, cond.name)
                        corr = self.corr.setdefault(key, CorrelationAccumulator(x.shape[-1], y.shape[-1]))
                        corr.update(x[:n_fig].reshape(-1, x.shape[-1]), y[:n_fig].reshape(-1, y.shape[-1]))
                        self._update_null(key, x[:n_fig], y[:n_fig])

    def cka_rows(self) -> list[dict]:
        """One row per pair x layer x condition: the pair first, the references after it."""
        rows = []
        for name, id_a, id_b in self.pairs:
            for layer in self.plan.layers:
                for cond in self.plan.conditions:
                    acc = self.cka.get((name, layer, cond.name))
                    if acc is None:
                        continue
                    head = {"pair": name, "a": id_a, "b": id_b, "layer": layer, "condition": cond.name}
                    rows.append({**head, "t": cond.t, **acc.result()})
        return rows

    def _update_null(self, key: tuple[str, str], x: np.ndarray, y: np.ndarray) -> None:
        """Correlations of A's figure image i - 1 with B's image i, x / y (n, H*W, C) this chunk's."""
        previous = self._last.get(key)
        xs = x[:-1] if previous is None else np.concatenate([previous[None], x[:-1]])
        ys = y[1:] if previous is None else y
        if len(xs):
            acc = self.null_corr.setdefault(key, CorrelationAccumulator(x.shape[-1], y.shape[-1]))
            acc.update(xs.reshape(-1, x.shape[-1]), ys.reshape(-1, y.shape[-1]))
        self._last[key] = np.array(x[-1])

    def matcher(self) -> dict[tuple[str, str], np.ndarray]:
        """(layer, condition) -> (C_baseline, C_curriculum) correlation matrix over the figure samples."""
        return {key: acc.result() for key, acc in self.corr.items()}

    def null_matcher(self) -> dict[tuple[str, str], np.ndarray]:
        """The same over mismatched figure samples (A's i - 1, B's i); absent with one figure sample."""
        return {key: acc.result() for key, acc in self.null_corr.items()}


def example_rows(act: np.ndarray) -> np.ndarray:
    """(n, C, H, W) -> (n, H*W, C): every image position is one example (a view for
    channels-last memory; the accumulators read the rows from it without a copy)."""
    return np.moveaxis(act, 1, -1).reshape(act.shape[0], -1, act.shape[1])


def match_chunk(
    chunk: Chunk,
    corr: dict[tuple[str, str], np.ndarray],
    plan: Plan,
    null: dict[tuple[str, str], np.ndarray] | None = None,
) -> None:
    """Reorder the curriculum's shown channels of the chunk's figure samples by a one-to-one
    assignment to the baseline's shown channels; record it in the curriculum rows, with
    ``matched_corr_null``: the mean r of the same assignment problem on ``null``'s
    mismatched-image correlations (what the matching reaches between unrelated inputs)."""
    null = null or {}
    rows = {
        (r["sample"], r["condition"], r["layer"]): r
        for r in chunk.rows
        if r["model"] == "curriculum" and not r["checkpoint"]
    }
    names = [c.name for c in plan.conditions]
    for (layer, cname), matrix in corr.items():
        s = names.index(cname)
        base, cur = chunk.layers["baseline"][layer], chunk.layers["curriculum"][layer]
        for i in range(min(len(chunk.x0), plan.options.num_samples - chunk.first)):
            result = assign_channels(matrix[base.shown[i, s]])
            cur.show(i, s, result["assignment"])
            row = rows[(chunk.first + i, cname, layer)]
            row.update(
                matched_channels=result["assignment"].tolist(), matched_corr=result["mean_correlation"]
            )
            mismatched = null.get((layer, cname))
            if mismatched is not None:
                row["matched_corr_null"] = assign_channels(mismatched[base.shown[i, s]])["mean_correlation"]
