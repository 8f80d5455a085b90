"""What is accumulated across chunks for the pair: CKA and channel correlations per layer x
condition, and the one-to-one channel matching that ``--match_channels`` draws."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ddpm_lens.analysis.model_pair import MODEL_KEYS
from ddpm_lens.analysis.similarity import CKAAccumulator, CorrelationAccumulator, assign_channels

if TYPE_CHECKING:
    from ddpm_lens.analysis.plan import Plan
    from ddpm_lens.analysis.stream import Chunk


class PairAccumulators:
    """CKA and channel correlations per layer x condition, streamed over chunks."""

    def __init__(self, plan: Plan, *, cka: bool = True, match: bool = False):
        self.plan, self.want_cka, self.match = plan, cka, match
        self.cka: dict[tuple[str, str], CKAAccumulator] = {}
        self.corr: dict[tuple[str, str], CorrelationAccumulator] = {}
        self.positions: dict[str, int] = {}  # layer -> H*W, to turn examples back into samples
        self.skipped: set[str] = set()

    def update(self, chunk: Chunk) -> None:
        a, b = (chunk.layers[k] for k in MODEL_KEYS)
        num_samples = self.plan.options.num_samples
        for layer in self.plan.layers:
            xa, xb = a[layer].acts, b[layer].acts
            if xa.shape[-2:] != xb.shape[-2:]:
                self.skipped.add(layer)  # different spatial grids: no paired examples
                continue
            self.positions[layer] = int(xa.shape[-1] * xa.shape[-2])
            for s, cond in enumerate(self.plan.conditions):
                x, y = example_rows(xa[:, s]), example_rows(xb[:, s])  # (n, H*W, C)
                key = (layer, cond.name)
                if self.want_cka:
                    self.cka.setdefault(key, CKAAccumulator(x.shape[-1], y.shape[-1])).update(x, y)
                if self.match and chunk.first < num_samples:
                    n_fig = num_samples - chunk.first  # samples with figures in this chunk
                    self.corr.setdefault(key, CorrelationAccumulator(x.shape[-1], y.shape[-1])).update(
                        x[:n_fig].reshape(-1, x.shape[-1]), y[:n_fig].reshape(-1, y.shape[-1])
                    )

    def cka_rows(self) -> list[dict]:
        rows = []
        for layer in self.plan.layers:
            for cond in self.plan.conditions:
                acc = self.cka.get((layer, cond.name))
                if acc is None:
                    continue
                rows.append(
                    {
                        "layer": layer,
                        "condition": cond.name,
                        "t": cond.t,
                        "n_samples": acc.n // self.positions[layer],
                        "n_examples": acc.n,
                        "cka_debiased": acc.result(debiased=True) if acc.n >= 4 else float("nan"),
                        "cka_biased": acc.result(debiased=False),
                    }
                )
        return rows

    def matcher(self) -> dict[tuple[str, str], np.ndarray]:
        """(layer, condition) -> (C_baseline, C_curriculum) correlation matrix over the figure samples."""
        return {key: acc.result() for key, acc in self.corr.items()}


def example_rows(act: np.ndarray) -> np.ndarray:
    """(n, C, H, W) -> (n, H*W, C): every image position is one example (a view for
    channels-last memory; the accumulators read the rows from it without a copy)."""
    return np.moveaxis(act, 1, -1).reshape(act.shape[0], -1, act.shape[1])


def match_chunk(chunk: Chunk, corr: dict[tuple[str, str], np.ndarray], plan: Plan) -> None:
    """Reorder the curriculum's shown channels of the chunk's figure samples by a one-to-one
    assignment to the baseline's shown channels; record it in the curriculum rows."""
    rows = {(r["sample"], r["condition"], r["layer"]): r for r in chunk.rows if r["model"] == "curriculum"}
    names = [c.name for c in plan.conditions]
    for (layer, cname), matrix in corr.items():
        s = names.index(cname)
        base, cur = chunk.layers["baseline"][layer], chunk.layers["curriculum"][layer]
        for i in range(min(len(chunk.x0), plan.options.num_samples - chunk.first)):
            result = assign_channels(matrix[base.shown[i, s]])
            cur.show(i, s, result["assignment"])
            rows[(chunk.first + i, cname, layer)].update(
                matched_channels=result["assignment"].tolist(), matched_corr=result["mean_correlation"]
            )
