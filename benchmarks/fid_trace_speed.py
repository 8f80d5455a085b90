"""FID's tr (S_a S_b)^(1/2) two ways at 2048-d, interleaved in one run: the eigenvalues of the
product (what :func:`~ddpm_lens.analysis.sample_quality.frechet_distance` uses) against
``scipy.linalg.sqrtm`` (its checked fallback, pytorch-fid's way). Prints each one's seconds, the
speed ratio and how far the two FIDs differ, for 2048-d statistics of 1000 (full-rank) and of
200 (singular) non-negative random features, as Inception pool features are::

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/fid_trace_speed.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from ddpm_lens.analysis.sample_quality import _trace_sqrtm, trace_sqrt_product


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="timings of each method per case")
    parser.add_argument("--dim", type=int, default=2048)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for n in (1000, 200):
        a, b = (np.abs(rng.normal(size=(n, args.dim))) * np.linspace(0.2, 2, args.dim) for _ in range(2))
        sa, sb = (np.cov(x, rowvar=False) for x in (a, b))
        ma, mb = a.mean(0), b.mean(0)
        base = float((ma - mb) @ (ma - mb) + np.trace(sa) + np.trace(sb))
        times: dict[str, list[float]] = {"eig": [], "sqrtm": []}
        values = {}
        for _ in range(args.repeats):
            for name in ("sqrtm", "eig"):
                tic = time.perf_counter()
                values[name] = _trace_sqrtm(sa, sb, 1e-6) if name == "sqrtm" else trace_sqrt_product(sa, sb)
                times[name].append(time.perf_counter() - tic)
        if values["eig"] is None:
            print(f"n = {n}: the eigenvalues failed their check (sqrtm would be used)")
            continue
        fid = {k: base - 2 * v for k, v in values.items()}
        eig, sq = min(times["eig"]), min(times["sqrtm"])
        gap = abs(fid["eig"] - fid["sqrtm"])
        print(
            f"n = {n:>4}, d = {args.dim}: eig {eig:.1f} s, sqrtm {sq:.1f} s (best of {args.repeats}): "
            f"{sq / eig:.2f}x; FID {fid['eig']:.6f} vs {fid['sqrtm']:.6f}, "
            f"|diff| {gap:.2e} ({gap / abs(fid['sqrtm']):.1e} relative)"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
