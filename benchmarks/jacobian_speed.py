"""The denoiser's Jacobian spectrum: the study's way against ddpm-lens's, same model, same input, one run.

The study's way (``sun-messi/U-VIT-CS/generate_jacobian_single.py``): the dense Jacobian one
output at a time (a fresh forward and one backward per output pixel, the model's parameters
left requiring grad as theirs are), then ``torch.linalg.svd``. Ours: ``exact`` (one forward,
the n pull-backs batched, the chunk found by timing unless ``--chunk``, then the SVD) and
``fast`` (block Lanczos from products only, ``--block`` columns per step, until every bound is
within ``--rtol``). Each method runs in its own fresh process, one after the other, so its peak memory (RSS)
is its own; seconds are wall clock. Agreement: the largest relative difference of the top-k
singular values from the study's (or, with ``--rows``, from the exact path's).

It also times the *floor*: one forward pass at batch 1 and per image at batch 16. Every exact
method needs n products, and a product costs at least the forward pass's multiply-adds, so the
study's row (forward + backward) over a batched product bounds what any exact method can gain.

    python benchmarks/jacobian_speed.py                       # demo UNet, gray 32×32, t=500, k=80
    python benchmarks/jacobian_speed.py --model uvit-small    # the study's U-ViT (their MODEL_CONFIG)
    python benchmarks/jacobian_speed.py --setting full --methods floor study fast --rows 8 --k 100
    python benchmarks/jacobian_speed.py --spectra             # fast path's products against spectral decay

``--model uvit-small`` builds the study's script's U-ViT (img 64, patch 4, embed 256, depth 12,
8 heads) with seeded random weights (no trained weights ship; the cost does not depend on them);
``--config`` builds that config's UNet with weights perturbed off their zero-init; the default
is the shipped demo Baseline (trained, 1.2M parameters). ``--rows N`` times the study's way on
its first N rows only and scales to all n (labelled as such).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# the study's script's MODEL_CONFIG (generate_jacobian_single.py)
STUDY_UVIT = {"img_size": 64, "patch_size": 4, "embed_dim": 256, "depth": 12, "num_heads": 8}


def _model(args):
    import torch

    from ddpm_lens.core.checkpoint import load_model
    from ddpm_lens.core.config import load_config
    from ddpm_lens.core.diffusion import GaussianDiffusion
    from ddpm_lens.core.unet import build_unet

    def perturbed(model):
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
        return model

    if args.model == "uvit-small":
        from ddpm_lens.core.uvit import UViTConfig, build_uvit

        torch.manual_seed(0)
        cfg = load_config(ROOT / "configs/tiny.json")  # the linear T=1000 diffusion, as theirs
        model = perturbed(build_uvit(UViTConfig(**STUDY_UVIT)))
        return model, GaussianDiffusion.from_config(cfg.diffusion), 64
    if args.config:
        cfg = load_config(args.config)
        torch.manual_seed(0)
        model = perturbed(build_unet(cfg.model))
        return model, GaussianDiffusion.from_config(cfg.diffusion), cfg.dataset.resolution
    model, diffusion, cfg = load_model(None, str(ROOT / "src/ddpm_lens/demo/baseline.safetensors"))
    return model, diffusion, cfg.dataset.resolution


def _setup(args, *, params_grad: bool = False):
    import torch

    from ddpm_lens.analysis.jacobian_map import Setting, denoiser_map, noisy_point
    from ddpm_lens.data.datasets import build_dataset, first_n

    torch.set_num_threads(args.threads)
    model, diffusion, resolution = _model(args)
    model.eval().requires_grad_(params_grad)
    setting = Setting(args.setting, resolution)
    image = first_n(build_dataset("synthetic-faces", resolution=resolution, split="test"), 1)
    x = noisy_point(setting.clean(image)[0], 0, args.t, diffusion, 0)
    return model, denoiser_map(model, diffusion, args.t, setting, quantity=args.quantity), x, resolution


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _floor(model, resolution, args) -> dict:
    """Seconds of one forward at batch 1, and per image at batch 16 (best of 3)."""
    import torch

    out = {}
    for batch in (1, 16):
        x, t = torch.randn(batch, 3, resolution, resolution), torch.full((batch,), args.t)
        best = math.inf
        with torch.no_grad():
            model(x, t)
            for _ in range(3):
                start = time.perf_counter()
                model(x, t)
                best = min(best, (time.perf_counter() - start) / batch)
        out[f"forward_b{batch}"] = best
    return out


def _worker(method, args, queue):
    import torch

    from ddpm_lens.analysis.jacobian import Linearised, jacobian_by_pullbacks, top_singular

    model, f, x, resolution = _setup(args, params_grad=method == "study")
    n = x.numel()
    xw = x.clone().requires_grad_(True)  # warm-up, untimed, the same for every method
    torch.autograd.grad(f(xw)[0], xw)
    base = _rss_mib()
    out = {"method": method, "n": n, "load_before": os.getloadavg()[0]}
    start = time.perf_counter()
    if method == "study":
        rows = min(n, args.rows or n)
        jac = torch.zeros(n, n)
        for i in range(rows):  # their loop: a fresh forward and one backward per output
            xi = x.clone().detach().requires_grad_(True)
            jac[i] = torch.autograd.grad(f(xi)[i], xi)[0]
        rows_s = time.perf_counter() - start
        if rows == n:
            out["s"] = torch.linalg.svd(jac)[1][: args.k].tolist()
        out["seconds"] = rows_s * n / rows + (time.perf_counter() - start - rows_s)
        out["per_row"] = rows_s / rows
        out["extrapolated_from_rows"] = rows if rows < n else None
    elif method == "exact":
        op = Linearised(f, x, chunk=args.chunk)
        jac = jacobian_by_pullbacks(op)
        out["s"] = torch.linalg.svd(jac)[1][: args.k].tolist()
        out["seconds"] = time.perf_counter() - start
        out["chunk"] = op.chunks["pull"]
        out["products"] = op.products
    elif method == "fast":
        op = Linearised(f, x, chunk=args.chunk)
        trip = top_singular(op, args.k, block=args.block, depth=args.depth, rtol=args.rtol, seed=0)
        out.update(
            s=trip.s.tolist(),
            bound=trip.bound.tolist(),
            products=trip.products,
            steps=trip.steps,
            converged=trip.converged,
            chunk=f"{op.chunks['push']}/{op.chunks['pull']}",
            seconds=time.perf_counter() - start,
        )
    else:  # floor
        out.update(_floor(model, resolution, args))
        out["seconds"] = time.perf_counter() - start
    out["peak_rss_mib"] = _rss_mib()
    out["peak_above_model_mib"] = out["peak_rss_mib"] - base
    out["load_after"] = os.getloadavg()[0]
    queue.put(out)


def _run(method, args):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(method, args, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def _spectra(args) -> None:
    """Products the fast path needs for top-k within 1e-3 (its bound, and its actual error) on
    n×n maps with known spectra: the decay decides whether it beats the n pull-backs of the
    exact path."""
    import torch

    from ddpm_lens.analysis.jacobian import Linearised, top_singular

    n, k = 1024, args.k
    g = torch.Generator().manual_seed(0)
    u = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    i = torch.arange(1, n + 1, dtype=torch.float64)
    cases = {
        "σ_i = 0.5^(i/8) (a few dozen directions)": 0.5 ** (i / 8),
        "σ_i = i^-2": i**-2.0,
        "σ_i = i^-1": i**-1.0,
        "σ_i = i^-0.5": i**-0.5,
        "flat, like the demo's: i^-0.13 (1 - i/(n+1))^0.5": i**-0.13 * (1 - i / (n + 1)) ** 0.5,
    }
    print(f"n = {n}, top-{k}, block {args.block}: products until every bound ≤ {args.rtol:g}·σ")
    print(f"{'spectrum':<44} {'products':>9} {'steps':>6} {'max rel bound':>14} {'max rel error':>14}")
    for name, s in cases.items():
        a = (u * s) @ v.T
        a32 = a.float()
        op = Linearised(lambda x, a32=a32: a32 @ x, torch.zeros(n), chunk=n)
        t = top_singular(op, k, block=args.block, rtol=args.rtol)
        err = ((t.s.double() - s[:k]).abs() / s[:k]).max()
        bound = (t.bound / t.s).max()
        note = "" if t.converged else "  (ran to the full space: exact)"
        print(f"{name:<44} {t.products:>9} {t.steps:>6} {bound:>14.1e} {err:>14.1e}{note}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo", choices=("demo", "uvit-small", "config"))
    p.add_argument("--config", help="with --model config: that UNet with random, perturbed weights")
    p.add_argument("--setting", default="gray32", choices=("gray32", "full"))
    p.add_argument("--quantity", default="study", choices=("study", "x0"))
    p.add_argument("--t", type=int, default=500)
    p.add_argument("--k", type=int, default=80)
    p.add_argument(
        "--methods",
        nargs="+",
        default=["floor", "study", "exact", "fast"],
        choices=("floor", "study", "exact", "fast"),
    )
    p.add_argument("--rows", type=int, help="time the study's way on this many rows and extrapolate")
    p.add_argument("--chunk", type=int, help="products per batch (default: found by timing)")
    p.add_argument("--block", type=int, default=10, help="fast: products per step each way (default: 10)")
    p.add_argument("--depth", type=int, help="fast: at most depth + 1 steps (default: until --rtol)")
    p.add_argument("--rtol", type=float, default=1e-3, help="fast: stop once every bound is within RTOL")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--spectra", action="store_true", help="only the fast path against known spectra")
    args = p.parse_args(argv)
    if args.spectra:
        return _spectra(args)

    results = {}
    for method in args.methods:
        print(f"running {method} ...", flush=True)
        results[method] = _run(method, args)
    ref_name = "study" if "s" in results.get("study", {}) else "exact" if "exact" in results else None
    ref = results[ref_name]["s"] if ref_name else None
    print(f"\n{os.cpu_count()} CPUs, {args.threads} threads, model {args.model}, quantity {args.quantity}")
    print(f"n = {next(iter(results.values()))['n']}, setting {args.setting}, t = {args.t}, top-{args.k}")
    if "floor" in results:
        fl = results.pop("floor")
        row = results.get("study", {}).get("per_row")
        print(
            f"floor: forward {fl['forward_b1'] * 1e3:.1f} ms at batch 1, "
            f"{fl['forward_b16'] * 1e3:.1f} ms per image at batch 16"
            + (
                f"; the study's row {row * 1e3:.1f} ms, so an exact method needing n products of at "
                f"least a batched forward each gains at most {row / fl['forward_b16']:.1f}x"
                if row
                else ""
            )
        )
    print(
        f"{'method':<8} {'seconds':>9} {'speed-up':>9} {'peak RSS MiB':>13} {'above model':>12} "
        f"{'max rel diff':>13} {'max rel bound':>14} {'load':>10}  notes"
    )
    study_s = results.get("study", {}).get("seconds")
    for method, r in results.items():
        s = r.get("s")
        diff = max(abs(a - b) / abs(b) for a, b in zip(s, ref)) if (s and ref) else None
        bound = max(b / a for a, b in zip(r["s"], r["bound"])) if "bound" in r else None
        speed = study_s / r["seconds"] if study_s else None
        notes = []
        if r.get("extrapolated_from_rows"):
            notes.append(f"extrapolated from {r['extrapolated_from_rows']} rows")
        if "products" in r:
            notes.append(f"{r['products']} products")
        if "steps" in r:
            notes.append(
                f"{r['steps']} steps" + ("" if r["converged"] is None else f", rtol met: {r['converged']}")
            )
        if "chunk" in r:
            notes.append(f"chunk {r['chunk']}")
        print(
            f"{method:<8} {r['seconds']:>9.1f} {'' if speed is None else f'{speed:.2f}x':>9} "
            f"{r['peak_rss_mib']:>13.0f} {r['peak_above_model_mib']:>12.0f} "
            f"{'' if diff is None else f'{diff:.1e}':>13} {'' if bound is None else f'{bound:.1e}':>14} "
            f"{r['load_before']:>4.1f}-{r['load_after']:<4.1f}  {'; '.join(notes)}"
        )
    if ref_name:
        print(f"(max rel diff: against the {ref_name} path's top-{args.k})")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
