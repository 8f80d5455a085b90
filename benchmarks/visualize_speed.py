"""Benchmark: the study's default visualization job on two full-size CelebA-64 checkpoints.

Runs, in one invocation and each as its own process (so peak RSS and CPU time are that
job's alone, read with ``os.wait4``):

- ``ours``: the real ``python -m ddpm_lens visualize`` command with the seed's arguments
  (5 samples x 4 conditions x 6 layers), ``--repeat`` times (default 3; the median counts:
  this shared 2-core machine's speed varies by +-10 % from run to run);
- ``reference``: a straightforward re-creation of the study's tool: whole trainer
  checkpoints loaded, a full forward per input, each figure drawn with pyplot
  (``plt.subplots(1, 2, figsize=(20, 10))``, one ``imshow`` + colorbar per panel,
  ``savefig(dpi=150, bbox_inches='tight')``);
- ``ours`` again with 50 samples, to show the cost grows linearly with the figures, and
  with 45 statistics-only samples, to price dataset-scale statistics.

Wall times are from process start to exit, as a user experiences them; both sides pay the
same ~2-3 s of Python + torch start-up. The checkpoints are ddpm-torch trainer files
(model, Adam moments, EMA; ~546 MB each) of randomly initialised weights: timing does not
depend on what the weights learned.

    python benchmarks/visualize_speed.py            # ~6 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

LAYERS = ["in_conv", "encoder_level_0", "encoder_level_1", "encoder_level_2", "encoder_level_3", "bottleneck"]
TIMESTEPS = [100, 500, 900]


def make_trainer_checkpoint(path: Path, seed: int) -> None:
    import torch

    from ddpm_lens.core.config import load_config
    from ddpm_lens.core.unet import build_unet

    torch.manual_seed(seed)
    model = build_unet(load_config(ROOT / "configs/celeba.json").model)
    sd = model.state_dict()
    params = list(sd.values())
    optimizer = {
        "state": {
            i: {
                "step": torch.tensor(100.0),
                "exp_avg": torch.randn_like(p) * 1e-3,
                "exp_avg_sq": torch.rand_like(p) * 1e-6,
            }
            for i, p in enumerate(params)
        },
        "param_groups": [{"lr": 2e-5, "params": list(range(len(params)))}],
    }
    ema = {k: v + 1e-3 * torch.randn_like(v) for k, v in sd.items()}
    torch.save(
        {
            "model": sd,
            "optimizer": optimizer,
            "scheduler": {"last_epoch": 100},
            "ema": {"decay": 0.9999, "shadow": ema, "num_updates": 99},
            "epoch": 16,
            "loss": 0.03,
        },
        path,
    )


def make_checkpoint_pair(folder: Path) -> list[Path]:
    """Two full-size trainer files named as the study's, in ``folder``; prints what they are."""
    ckpts = [folder / "celeba_20251219_113720_16.pt", folder / "celeba64_c_20251219_132723_16.pt"]
    for seed, path in enumerate(ckpts):
        make_trainer_checkpoint(path, seed)
    size = ckpts[0].stat().st_size / 2**20
    print(
        f"machine: {os.cpu_count()} CPU cores, torch threads = cores; checkpoints: 2 x {size:.0f} MiB "
        "ddpm-torch trainer files (hid 128, 35.7M parameters, random init)"
    )
    return ckpts


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ours_command(ckpts, out: Path, num_samples: int, stats_samples: int | None = None) -> list[str]:
    """The seed's command through the real command-line entry point."""
    return [
        sys.executable,
        "-m",
        "ddpm_lens",
        "visualize",
        "--baseline_ckpt",
        str(ckpts[0]),
        "--curriculum_ckpt",
        str(ckpts[1]),
        "--config_baseline",
        str(ROOT / "configs/celeba.json"),
        "--config_curriculum",
        str(ROOT / "configs/celeba64_c.json"),
        "--num_samples",
        str(num_samples),
        "--timesteps",
        *map(str, TIMESTEPS),
        "--num_channels",
        "64",
        "--output_dir",
        str(out),
        "--dataset",
        "synthetic-faces",
        "--device",
        "cpu",
        "--no_report",
        "--no_progress",
        "--stats_samples",
        str(stats_samples or num_samples),
    ]


def run_reference(ckpts, out: Path, num_samples: int) -> dict:
    """The study's way: whole checkpoints, a full forward per input, pyplot per figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from ddpm_lens.core.config import load_config
    from ddpm_lens.core.diffusion import GaussianDiffusion
    from ddpm_lens.core.unet import build_unet, layer_table
    from ddpm_lens.data.datasets import build_dataset, to_uint8

    split = {}
    tic = time.perf_counter()
    cfg = load_config(ROOT / "configs/celeba.json")
    models = []
    for path in ckpts:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # the whole trainer file
        model = build_unet(cfg.model)
        model.load_state_dict(ckpt["ema"]["shadow"])
        models.append(model.eval())
    data = build_dataset("synthetic-faces", split="test", resolution=64)
    diffusion = GaussianDiffusion.from_config(cfg.diffusion)
    split["load"] = time.perf_counter() - tic

    render = write = forward = 0.0
    for i in range(num_samples):
        x0 = data[i][None]
        conds = [("clean_t0", 0, x0)]
        for t in TIMESTEPS:
            g = torch.Generator().manual_seed(1000 * i + t)
            conds.append((f"noisy_t{t}", t, diffusion.q_sample(x0, torch.tensor([t]), generator=g)))
        sample_dir = out / f"sample_{i}"
        for name, t, x in conds:
            tic = time.perf_counter()
            fig, ax = plt.subplots(figsize=(5, 5))
            ax.imshow(to_uint8(x)[0])
            ax.set_title(f"{name} (Sample {i})")
            ax.axis("off")
            (sample_dir / name).mkdir(parents=True, exist_ok=True)
            fig.savefig(
                sample_dir / f"input_{'clean' if t == 0 else f'noisy_t{t}'}.png", dpi=100, bbox_inches="tight"
            )
            plt.close(fig)
            render += time.perf_counter() - tic
            tic = time.perf_counter()
            feats = []
            for model in models:
                captured = {}
                modules = dict(model.named_modules())
                handles = [
                    modules[p].register_forward_hook(lambda _m, _i, o, n=n, c=captured: c.__setitem__(n, o))
                    for n, p in layer_table(model).items()
                    if n in LAYERS
                ]
                with torch.no_grad():
                    model(x, torch.tensor([t]))  # full forward, decoder included
                for h in handles:
                    h.remove()
                feats.append({n: v[0].numpy() for n, v in captured.items()})
            forward += time.perf_counter() - tic
            for layer in LAYERS:
                tic = time.perf_counter()
                fig, axes = plt.subplots(1, 2, figsize=(20, 10))
                for ax, label, act in zip(axes, ("Baseline", "Curriculum"), (f[layer] for f in feats)):
                    top = np.argsort(-act.reshape(len(act), -1).var(axis=1))[:64]
                    c, h, w = act.shape
                    grid = np.zeros((8 * h, 8 * w))
                    for k, ch in enumerate(top):
                        m = act[ch]
                        lo, hi = np.percentile(m, [2, 98])
                        r, col = divmod(k, 8)
                        grid[r * h : (r + 1) * h, col * w : (col + 1) * w] = np.clip(
                            (m - lo) / (hi - lo + 1e-8), 0, 1
                        )
                    im = ax.imshow(grid, cmap="viridis", interpolation="nearest")
                    fig.colorbar(im, ax=ax, fraction=0.046)
                    sparsity = 100 * float((np.abs(act) < 1e-3).mean())
                    ax.set_title(f"{label}\nμ={act.mean():.3f} σ={act.std():.3f}\nsparsity={sparsity:.1f}%")
                    ax.axis("off")
                fig.suptitle(f"{layer} | {name} | Sample {i}")
                mid = time.perf_counter()
                fig.savefig(
                    sample_dir / name / f"{layer}_baseline_vs_curriculum.png", dpi=150, bbox_inches="tight"
                )
                plt.close(fig)
                render += mid - tic
                write += time.perf_counter() - mid
    split.update(forward=forward, render=render, write=write)
    return {
        "peak_rss_mb": peak_rss_mb(),
        "split_s": {k: round(v, 3) for k, v in split.items()},
        "figures": len(list(out.rglob("*.png"))),
    }


def measure(cmd: list[str]) -> dict:
    """Run ``cmd`` as a child process; its wall time, CPU time and peak RSS (``os.wait4``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    tic = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, env=env, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - tic
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        if proc.returncode:
            sys.exit(f"{' '.join(cmd[:4])} failed:\n{stderr.read()}")
        lines = stdout.read().strip().splitlines()
    return {
        "process_wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "last_line": lines[-1] if lines else "",
    }


def run_ours_process(ckpts, out: Path, num_samples: int, stats_samples: int | None = None) -> dict:
    result = measure(ours_command(ckpts, out, num_samples, stats_samples))
    result["split_s"] = json.loads((out / "manifest.json").read_text())["timings_s"]
    result["figures"] = len(list(out.rglob("*.png")))
    return result


def run_reference_process(ckpts, out: Path, num_samples: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "--ckpts", *map(str, ckpts), "--out", str(out)]
    cmd += ["--num_samples", str(num_samples)]
    result = measure(cmd)
    result.update(json.loads(result.pop("last_line")))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # the reference's process
    p.add_argument("--ckpts", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--num_samples", type=int, default=5, help=argparse.SUPPRESS)
    p.add_argument("--repeat", type=int, default=3, help="runs of the 5-sample job (default: 3; median)")
    p.add_argument("--large", type=int, default=50, help="samples for the linearity run (default: 50)")
    p.add_argument(
        "--stats_extra",
        type=int,
        default=40,
        help="extra statistics-only images to price dataset-scale statistics (default: 40)",
    )
    args = p.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(os.cpu_count() or 2)
        print(json.dumps(run_reference([Path(c) for c in args.ckpts], Path(args.out), args.num_samples)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpts = make_checkpoint_pair(tmp)
        runs = [run_ours_process(ckpts, tmp / f"ours_{i}", 5) for i in range(args.repeat)]
        ref = run_reference_process(ckpts, tmp / "reference", 5)
        large = run_ours_process(ckpts, tmp / "ours_large", args.large)
        stats = run_ours_process(ckpts, tmp / "ours_stats", 5, 5 + args.stats_extra)
    ours = sorted(runs, key=lambda r: r["process_wall_s"])[len(runs) // 2]  # the median run

    def line(name, r):
        split = ", ".join(f"{k} {v:.2f}" for k, v in r["split_s"].items())
        return (
            f"{name:<24} {r['process_wall_s']:6.1f} s wall {r['cpu_s']:6.1f} s CPU  peak RSS "
            f"{r['peak_rss_mb']:5.0f} MiB {r['figures']:5d} PNGs  split (s): {split}"
        )

    print(line("reference (seed way)", ref))
    for i, r in enumerate(runs):
        print(line(f"ddpm-lens, 5 samples #{i + 1}", r))
    print(line(f"ddpm-lens, {args.large} samples", large))
    walls = sorted(r["process_wall_s"] for r in runs)
    print(
        "speed-up, end to end (process wall, start-up included): "
        f"{ref['process_wall_s'] / ours['process_wall_s']:.1f}x "
        f"for the median of {len(runs)} runs ({ref['process_wall_s'] / walls[-1]:.1f}x-"
        f"{ref['process_wall_s'] / walls[0]:.1f}x over the runs); CPU time "
        f"{ref['cpu_s'] / ours['cpu_s']:.1f}x less; peak RSS {max(r['peak_rss_mb'] for r in runs):.0f} MiB"
    )
    per_image = (stats["process_wall_s"] - ours["process_wall_s"]) / args.stats_extra
    print(
        f"dataset-scale statistics (--stats_samples): {per_image:.2f} s per extra image (4 conditions, "
        f"both models, stats + CKA), i.e. {per_image * 1000 / 60:.0f} min per 1,000 images; "
        f"peak RSS {stats['peak_rss_mb']:.0f} MiB at {5 + args.stats_extra} images"
    )
    per5 = ours["process_wall_s"] / ours["figures"]
    per_large = large["process_wall_s"] / large["figures"]
    print(
        f"cost per PNG: {1000 * per5:.1f} ms at 5 samples, {1000 * per_large:.1f} ms at {args.large} samples "
        f"(ratio {per_large / per5:.2f}; 1.0 = linear, below 1 = fixed start-up cost amortised)"
    )


if __name__ == "__main__":
    main()
