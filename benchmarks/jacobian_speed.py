"""The denoiser's Jacobian spectrum: the study's way against ddpm-lens's, same model, same input, one run.

The study's way (``sun-messi/U-VIT-CS/generate_jacobian_single.py``): the dense Jacobian one
output at a time (a forward and a backward pass per output pixel), then ``torch.linalg.svd``.
Ours: ``exact`` (``torch.func.jacrev``: one forward, the pull-backs batched ``--chunk`` at a time,
then the SVD) and ``fast`` (randomized block Krylov SVD from products only, with its bound).
Each method runs in its own fresh process, one after the other, so its peak memory (RSS) is its
own; seconds are wall clock. Agreement: the largest relative difference of the top-k singular
values from the study's (or, with ``--rows``, from the exact path's).

    python benchmarks/jacobian_speed.py                          # demo model, gray 32×32, t=500, k=80
    python benchmarks/jacobian_speed.py --setting full --methods fast --k 100 --depth 1
    python benchmarks/jacobian_speed.py --config configs/celeba.json --rows 8  # study-size UNet

``--config`` without ``--ckpt`` builds that UNet with random weights perturbed off their
zero-init (as the tests do); without either, the shipped demo Baseline (trained, 1.2M parameters).
``--rows N`` times the study's way on its first N rows only and scales to all n (labelled as such).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _setup(args):
    import torch

    from ddpm_lens.analysis.jacobian_map import Setting, denoiser_map, noisy_point
    from ddpm_lens.core.checkpoint import load_model
    from ddpm_lens.core.config import load_config
    from ddpm_lens.core.diffusion import GaussianDiffusion
    from ddpm_lens.core.unet import build_unet
    from ddpm_lens.data.datasets import build_dataset, first_n

    torch.set_num_threads(args.threads)
    if args.config and not args.ckpt:
        cfg = load_config(args.config)
        torch.manual_seed(0)
        model = build_unet(cfg.model)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
        diffusion = GaussianDiffusion.from_config(cfg.diffusion)
    else:
        ckpt = args.ckpt or str(ROOT / "src/ddpm_lens/demo/baseline.safetensors")
        model, diffusion, cfg = load_model(args.config, ckpt)
    model.eval().requires_grad_(False)
    setting = Setting(args.setting, cfg.dataset.resolution)
    image = first_n(build_dataset("synthetic-faces", resolution=cfg.dataset.resolution, split="test"), 1)
    x = noisy_point(setting.clean(image)[0], 0, args.t, diffusion, 0)
    return denoiser_map(model, diffusion, args.t, setting), x


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker(method, args, queue):
    import torch

    from ddpm_lens.analysis.jacobian import Linearised, dense_jacobian, top_singular

    f, x = _setup(args)
    n = x.numel()
    xw = x.clone().requires_grad_(
        True
    )  # warm-up, untimed, the same for every method: one forward and backward
    torch.autograd.grad(f(xw)[0], xw)
    base = _rss_mib()
    start = time.perf_counter()
    out = {"method": method, "n": n}
    if method == "study":
        rows = min(n, args.rows or n)
        jac = torch.zeros(n, n)
        for i in range(rows):  # their loop: a fresh forward and one backward per output
            xi = x.clone().detach().requires_grad_(True)
            jac[i] = torch.autograd.grad(f(xi)[i], xi)[0]
        rows_s = time.perf_counter() - start
        if rows == n:
            s = torch.linalg.svd(jac)[1]
            out["s"] = s[: args.k].tolist()
        out["seconds"] = rows_s * n / rows + (time.perf_counter() - start - rows_s)
        out["extrapolated_from_rows"] = rows if rows < n else None
    elif method == "exact":
        jac = dense_jacobian(f, x, chunk=args.chunk)
        s = torch.linalg.svd(jac)[1]
        out["s"] = s[: args.k].tolist()
        out["seconds"] = time.perf_counter() - start
    else:
        op = Linearised(f, x, chunk=args.chunk)
        trip = top_singular(op, args.k, oversample=args.oversample, depth=args.depth, seed=0)
        out["s"] = trip.s.tolist()
        out["bound"] = trip.bound.tolist()
        out["products"] = trip.products
        out["seconds"] = time.perf_counter() - start
    out["peak_rss_mib"] = _rss_mib()
    out["peak_above_model_mib"] = out["peak_rss_mib"] - base
    queue.put(out)


def _rates(args) -> None:
    """The per-output cost of the study's way and of the exact path, interleaved in one process
    (``--interleave ROUNDS``): each round times ``--rows`` study rows, then one batch of ``--chunk``
    pull-backs after the exact path's single forward; both are scaled to all n outputs."""
    import torch
    from torch.func import vjp, vmap

    f, x = _setup(args)
    n = x.numel()
    xw = x.clone().requires_grad_(True)
    torch.autograd.grad(f(xw)[0], xw)  # warm-up
    _, pull = vjp(f, x)
    vmap(lambda c: pull(c)[0])(torch.eye(n)[: args.chunk])  # warm-up of the batched pull-back
    study, ours = [], []
    for r in range(args.interleave):
        start = time.perf_counter()
        for i in range(args.rows):
            xi = x.clone().detach().requires_grad_(True)
            torch.autograd.grad(f(xi)[i], xi)
        study.append((time.perf_counter() - start) / args.rows)
        start = time.perf_counter()
        _, pull = vjp(f, x)
        forward = time.perf_counter() - start
        basis = torch.eye(n)[r * args.chunk % n :][: args.chunk]
        start = time.perf_counter()
        vmap(lambda c, pull=pull: pull(c)[0])(basis)
        ours.append((forward, (time.perf_counter() - start) / len(basis)))
        load = os.getloadavg()[0]
        print(
            f"round {r}: study {study[-1]:.3f} s/row, exact {ours[-1][1]:.3f} s/column "
            f"(+{forward:.2f} s forward once), load {load:.1f}",
            flush=True,
        )
    s_row = sum(study) / len(study)
    o_col = sum(o[1] for o in ours) / len(ours)
    o_fwd = sum(o[0] for o in ours) / len(ours)
    print(
        f"n = {n}: study {s_row * n:.0f} s, exact {o_fwd + o_col * n:.0f} s (pull-backs only, SVD not "
        f"included), ratio {s_row * n / (o_fwd + o_col * n):.1f}x"
    )


def _run(method, args):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(method, args, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="JSON config (without --ckpt: that UNet with random, perturbed weights)")
    p.add_argument("--ckpt", help="checkpoint (default: the shipped demo Baseline)")
    p.add_argument("--setting", default="gray32", choices=("gray32", "full"))
    p.add_argument("--t", type=int, default=500)
    p.add_argument("--k", type=int, default=80)
    p.add_argument(
        "--methods", nargs="+", default=["study", "exact", "fast"], choices=("study", "exact", "fast")
    )
    p.add_argument("--rows", type=int, help="time the study's way on this many rows and extrapolate")
    p.add_argument("--chunk", type=int, default=32)
    p.add_argument("--oversample", type=int, default=10)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--interleave", type=int, help="ROUNDS: time the study's rows and our columns alternately")
    args = p.parse_args(argv)
    if args.interleave:
        args.rows = args.rows or 4
        return _rates(args)

    results = {}
    for method in args.methods:
        print(f"running {method} ...", flush=True)
        results[method] = _run(method, args)
    ref_name = "study" if "s" in results.get("study", {}) else "exact" if "exact" in results else None
    ref = results[ref_name]["s"] if ref_name else None
    load = os.getloadavg()
    print(
        f"\nload average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs, "
        f"{args.threads} threads"
    )
    print(f"n = {next(iter(results.values()))['n']}, setting {args.setting}, t = {args.t}, top-{args.k}")
    print(
        f"{'method':<8} {'seconds':>10} {'speed-up':>9} {'peak RSS MiB':>13} {'above model':>12} "
        f"{'max rel diff':>13} {'max rel bound':>14}"
    )
    study_s = results.get("study", {}).get("seconds")
    for method, r in results.items():
        s = r.get("s")
        diff = (
            max(abs(a - b) / abs(b) for a, b in zip(s, ref)) if (s is not None and ref is not None) else None
        )
        bound = max(b / a for a, b in zip(r["s"], r["bound"])) if "bound" in r else None
        speed = study_s / r["seconds"] if study_s else None
        note = (
            f" (extrapolated from {r['extrapolated_from_rows']} rows)"
            if r.get("extrapolated_from_rows")
            else ""
        )
        note += f" ({r['products']} products)" if "products" in r else ""
        print(
            f"{method:<8} {r['seconds']:>10.1f} {'' if speed is None else f'{speed:.1f}x':>9} "
            f"{r['peak_rss_mib']:>13.0f} {r['peak_above_model_mib']:>12.0f} "
            f"{'' if diff is None else f'{diff:.1e}':>13} {'' if bound is None else f'{bound:.1e}':>14}{note}"
        )
    if ref_name:
        print(f"(max rel diff: against the {ref_name} path's top-{args.k})")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "load": load, "results": results}, indent=1)
        )


if __name__ == "__main__":
    main()
