"""Coverage of CKA's 95 % bootstrap interval over images, simulated: studies of n images whose
positions are correlated within an image (the generator of ``tests/analysis/test_image_cka.py``,
rho 0.5, 64 positions, 6 and 5 channels); the share of studies whose interval covers the
population CKA, with its binomial 95 % interval, for n = 5, 8, 12 and 40::

    PYTHONPATH=src:tests python benchmarks/cka_interval_coverage.py [--studies 1000]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from analysis.test_image_cka import feed, related_images
from scipy import stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=1000, help="simulated studies per n")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 8, 12, 40])
    args = parser.parse_args()
    for n in args.sizes:
        covered = 0
        for seed in range(10_000, 10_000 + args.studies):
            X, Y, truth = related_images(np.random.default_rng(seed), n)
            r = feed(X, Y).result()
            covered += bool(r["cka_ci_low"] <= truth <= r["cka_ci_high"])
        ci = stats.binomtest(covered, args.studies).proportion_ci()
        print(
            f"n = {n:>2} images: {covered}/{args.studies} = {covered / args.studies:.1%} covered "
            f"[{ci.low:.1%}, {ci.high:.1%}]"
        )
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
