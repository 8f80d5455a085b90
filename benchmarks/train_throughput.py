"""Training throughput of ddpm-lens's step against a plain ddpm-torch-style step, on 2 CPU threads.

For configs/tiny.json (batch 16, 32x32) and configs/celeba.json (batch 8, 64x64, a few steps)
it times, after one warm-up step each and interleaved so that both see the same machine load:

- ours: ``Trainer.train_step`` (timesteps, noise, flips, forward, backward, clipping, Adam,
  lr schedule, EMA, curriculum bookkeeping);
- reference: the step written plainly (random t and noise, q_sample, UNet forward, MSE on
  eps, backward, clipping, Adam);
- core: forward + backward + clipping + our optimizer (fused Adam) alone, on inputs prepared
  beforehand.

It prints images/s of ours and of the reference, their ratio, and the share of our step time
spent outside forward+backward+optimizer, ``(ours - core) / ours``. Data loading is left out
of all three (one fixed batch of synthetic faces). Run it from the repository root::

    PYTHONPATH=src python benchmarks/train_throughput.py   # 1-2 minutes on an idle 2-core machine

On a GPU, ``--device cuda`` times one config at one batch (default configs/celeba.json at 128) for
the reference fp32 step and our step in fp32, bf16 autocast + channels_last, and that plus
torch.compile (``--no_compile`` leaves the last out), each after warm-up steps, with the device
synchronised around every timed step (benchmarks/gpu_check.sh runs it)::

    PYTHONPATH=src python benchmarks/train_throughput.py --device cuda --batch 128
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ddpm_lens.core.config import load_config, with_overrides
from ddpm_lens.core.diffusion import GaussianDiffusion
from ddpm_lens.core.unet import build_unet
from ddpm_lens.data.datasets import build_dataset, first_n
from ddpm_lens.train.distributed import DistInfo
from ddpm_lens.train.trainer import Trainer

THREADS = 2
CASES = [("configs/tiny.json", 16, 8), ("configs/celeba.json", 8, 2)]  # config, batch, timed steps


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(config: str, batch: int, steps: int) -> dict[str, float]:
    cfg = with_overrides(
        load_config(config),
        {"dataset.name": "synthetic-faces", "train.batch_size": batch, "train.image_intv": 0},
    )
    x = first_n(build_dataset("synthetic-faces", resolution=cfg.dataset.resolution), batch)  # (B, 3, R, R)
    with tempfile.TemporaryDirectory() as tmp:
        ours = Trainer(cfg, run_dir=Path(tmp) / "bench", progress=False)

    torch.manual_seed(cfg.train.seed)
    model = build_unet(cfg.model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    diffusion = GaussianDiffusion.from_config(cfg.diffusion)
    sqrt_ab = diffusion.sqrt_alphas_cumprod.float()
    sqrt_1m_ab = diffusion.sqrt_one_minus_alphas_cumprod.float()
    T = cfg.diffusion.timesteps

    def reference_step():
        t = torch.randint(0, T, (batch,))
        noise = torch.randn_like(x)
        x_t = sqrt_ab[t].view(-1, 1, 1, 1) * x + sqrt_1m_ab[t].view(-1, 1, 1, 1) * noise
        loss = F.mse_loss(model(x_t, t), noise)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_norm)
        opt.step()

    t_fixed = torch.randint(0, T, (batch,))
    noise_fixed = torch.randn_like(x)
    x_t_fixed = sqrt_ab[t_fixed].view(-1, 1, 1, 1) * x + sqrt_1m_ab[t_fixed].view(-1, 1, 1, 1) * noise_fixed

    core_opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, fused=True)

    def core_step():
        loss = F.mse_loss(model(x_t_fixed, t_fixed), noise_fixed)
        core_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_norm)
        core_opt.step()

    def our_step():
        ours.train_step([x])

    times: dict[str, list[float]] = {"ours": [], "reference": [], "core": []}
    steps_by_name = {"ours": our_step, "reference": reference_step, "core": core_step}
    for fn in (our_step, reference_step, core_step):  # warm-up
        fn()
    for _ in range(steps):
        for name, fn in steps_by_name.items():
            times[name].append(timed(fn))
    return {name: statistics.median(v) for name, v in times.items()}


CUDA_VARIANTS = (
    ("ours fp32", {}),
    ("ours bf16 + channels_last", {"train.amp": "bf16", "train.channels_last": True}),
    (
        "ours bf16 + channels_last + compile",
        {"train.amp": "bf16", "train.channels_last": True, "train.compile": True},
    ),
)


def cuda_bench(config: str, batch: int, steps: int, *, compile: bool = True) -> list[tuple[str, float]]:
    """(mode, images/s) on the current CUDA device: the plain fp32 step, then our step per variant."""
    device = torch.device("cuda", torch.cuda.current_device())
    torch.backends.cudnn.benchmark = True
    cfg = with_overrides(
        load_config(config),
        {"dataset.name": "synthetic-faces", "train.batch_size": batch, "train.image_intv": 0},
    )
    x = first_n(build_dataset("synthetic-faces", resolution=cfg.dataset.resolution), batch).to(device)

    def rate(step, warmup: int = 3) -> float:
        for _ in range(warmup):
            step()
        times = []
        for _ in range(steps):
            torch.cuda.synchronize()
            tic = time.perf_counter()
            step()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - tic)
        return batch / statistics.median(times)

    results = [("reference fp32 (plain ddpm-torch-style step)", rate(_plain_step(cfg, x)))]
    torch.cuda.empty_cache()
    dist = DistInfo(rank=0, local_rank=0, world_size=1, device=device)
    for name, overrides in CUDA_VARIANTS:
        if "train.compile" in overrides and not compile:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(
                with_overrides(cfg, overrides), run_dir=Path(tmp) / "bench", dist=dist, progress=False
            )
        results.append((name, rate(lambda trainer=trainer: trainer.train_step([x]))))
        del trainer
        torch.cuda.empty_cache()
    return results


def _plain_step(cfg, x: torch.Tensor):
    """:func:`bench`'s reference step with a model of its own, on ``x``'s device."""
    torch.manual_seed(cfg.train.seed)
    model = build_unet(cfg.model).to(x.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    diffusion = GaussianDiffusion.from_config(cfg.diffusion).to(x.device)
    sqrt_ab = diffusion.sqrt_alphas_cumprod.float()
    sqrt_1m_ab = diffusion.sqrt_one_minus_alphas_cumprod.float()

    def step():
        t = torch.randint(0, cfg.diffusion.timesteps, (x.shape[0],), device=x.device)
        noise = torch.randn_like(x)
        x_t = sqrt_ab[t].view(-1, 1, 1, 1) * x + sqrt_1m_ab[t].view(-1, 1, 1, 1) * noise
        loss = F.mse_loss(model(x_t, t), noise)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_norm)
        opt.step()

    return step


def cuda_main(args) -> None:
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    print(
        f"config {args.config}, batch {args.batch}, median of {args.steps} timed steps after 3 warm-up steps"
    )
    results = cuda_bench(args.config, args.batch, args.steps, compile=not args.no_compile)
    reference = results[0][1]
    for name, images_per_s in results:
        print(f"{name:<46}{images_per_s:>10.1f} img/s{images_per_s / reference:>7.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--config", default="configs/celeba.json", help="--device cuda: the config timed")
    parser.add_argument("--batch", type=int, default=128, help="--device cuda: the batch size")
    parser.add_argument("--steps", type=int, default=10, help="--device cuda: timed steps per mode")
    parser.add_argument("--no_compile", action="store_true", help="--device cuda: leave torch.compile out")
    args = parser.parse_args()
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: CUDA is not available")
        cuda_main(args)
        return
    torch.set_num_threads(THREADS)
    print(f"machine: {cpu_name()}, {THREADS} threads, torch {torch.__version__}")
    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes share the cores when above ~0.5)")
    print(f"{'config':<22}{'batch':>6}{'ours img/s':>12}{'ref img/s':>11}{'ratio':>7}{'outside f+b+opt':>17}")
    for config, batch, steps in CASES:
        m = bench(config, batch, steps)
        ours, ref = batch / m["ours"], batch / m["reference"]
        outside = (m["ours"] - m["core"]) / m["ours"]
        row = f"{config:<22}{batch:>6}{ours:>12.2f}{ref:>11.2f}{ours / ref:>7.2f}{outside:>16.1%}"
        print(row, flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
