"""Shared fixtures: tiny models whose weights are perturbed so numerics are exercised.

ddpm-torch zero-inits residual branches to ~1e-5, so a freshly initialised model barely
depends on t or attention; ``perturb`` adds O(0.05) noise to every weight to fix that.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import torch

from ddpm_lens.core.config import ModelConfig
from ddpm_lens.core.unet import build_unet
from ddpm_lens.core.uvit import UViT, UViTConfig

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped, with their reason, where torch sees no GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (benchmarks/gpu_check.sh runs these on one)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


TINY_MODEL = ModelConfig(
    hid_channels=32, ch_multipliers=(1, 1, 2, 2), num_res_blocks=1, apply_attn=(False, False, True, False)
)


def perturb(model: torch.nn.Module, *, scale: float = 0.05, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model


@pytest.fixture
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return perturb(build_unet(TINY_MODEL)).eval()


# --- training (tests/test_trainer.py, tests/test_distributed.py) -----------------------------
@pytest.fixture(scope="session")
def face_folder(tmp_path_factory):
    """16 synthetic faces as 16x16 PNGs: a `folder` dataset with 4-step epochs at batch 4."""
    from PIL import Image

    from ddpm_lens.data.datasets import build_dataset, first_n, to_uint8

    root = tmp_path_factory.mktemp("faces")
    for i, face in enumerate(to_uint8(first_n(build_dataset("synthetic-faces", resolution=16), 16))):
        Image.fromarray(face).save(root / f"{i:02d}.png")
    return root


# ---- checkpoints of two different tiny models, as a visualizer run would get them -------------
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def visualize_command(pair, out, *extra, samples: int = 2, seed: int = 0) -> list[str]:
    """``visualize`` on a checkpoint pair at t = 500, two layers, CPU, no progress bars: the
    argv the run-folder tests start from (``extra`` appended)."""
    return [
        "visualize",
        "--baseline_ckpt", str(pair[0]),
        "--curriculum_ckpt", str(pair[1]),
        "--num_samples", str(samples),
        "--timesteps", "500",
        "--layers", "in_conv", "bottleneck",
        "--seed", str(seed),
        "--output_dir", str(out),
        "--device", "cpu",
        "--no_progress",
        *extra,
    ]  # fmt: skip


def write_tiny_checkpoint(path, *, config: str = "configs/tiny.json", seed: int = 0, model_overrides=None):
    """A ddpm-lens checkpoint of a perturbed tiny model, carrying its config. Its EMA and raw
    weights differ (the EMA is the raw weights perturbed once more), so a loader that picks
    the wrong set changes every activation."""
    from ddpm_lens.core.checkpoint import save_checkpoint
    from ddpm_lens.core.config import load_config, with_overrides

    cfg = load_config(ROOT / config)
    if model_overrides:
        cfg = with_overrides(cfg, {f"model.{k}": v for k, v in model_overrides.items()})
    torch.manual_seed(seed)
    model = perturb(build_unet(cfg.model), seed=seed)
    raw = {k: v.clone() for k, v in model.state_dict().items()}
    ema = perturb(model, seed=seed + 1000).state_dict()
    save_checkpoint(
        {
            "model": raw,
            "ema": {"decay": 0.99, "shadow": ema, "num_updates": 9},
            "epoch": 3,
            "config": cfg.to_dict(),
        },
        path,
    )
    return path


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory):
    """(baseline, curriculum) checkpoint paths of two differently perturbed tiny models."""
    d = tmp_path_factory.mktemp("pair")
    return (
        write_tiny_checkpoint(d / "tiny_20260101_000000_3.pt", seed=0),
        write_tiny_checkpoint(d / "tiny_c_20260101_000000_3.pt", config="configs/tiny_c.json", seed=1),
    )


def run_torchrun(script, *args, nproc: int = 2) -> None:
    """``torchrun --standalone --nproc_per_node nproc script args...`` outside any outer torchrun
    (its variables removed), one thread per process, this checkout's ``src`` first on the path;
    fails the test with the tail of the workers' stderr unless every process exits 0."""
    import subprocess
    import sys

    import ddpm_lens

    env = {
        k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")
    }
    env.update(PYTHONPATH=str(Path(ddpm_lens.__file__).resolve().parents[1]), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    done = subprocess.run(
        [*cmd, str(script), *map(str, args)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op thread count set to ``n`` inside, put back after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """One intra-op thread for the test: on a shared 2-core machine, 2 threads stall each other."""
    with torch_threads(1):
        yield


@pytest.fixture
def two_threads():
    """Two intra-op threads (what a 2-core machine has), whatever this machine has."""
    with torch_threads(2):
        yield


def write_study_checkpoint(
    path, *, config: str, seed: int = 0, stage: int = 2, timestamp="20251219_132723", epoch: int = 3
):
    """A checkpoint in the layout of the study's CurriculumTrainer (sun-messi/curriculum-sparse-reg):
    ``model`` (with a CS model's three mask buffers: a partial mask, a non-zero accumulator),
    ``ema.shadow`` holding parameters only and differing from ``model``, ``optimizer``,
    ``scheduler``, ``curriculum_stage``, ``curriculum_config`` (the config's section, or
    ``{"stages": []}``), ``timestamp``, ``epoch``, ``loss``; no ``config`` of ddpm-lens'."""
    from ddpm_lens.core.config import load_config

    cfg = load_config(ROOT / config)
    torch.manual_seed(seed)
    model = perturb(build_unet(cfg.model, sparsity=cfg.sparsity, mask_seed=seed), seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    shadow = {k: p.detach() + 0.02 * torch.randn(p.shape, generator=g) for k, p in model.named_parameters()}
    state = model.state_dict()
    if cfg.sparsity is not None:
        state["channel_grad_accum"] = torch.rand(state["channel_mask"].shape, generator=g)
        state["channel_birth_stage"] = state["channel_mask"].long() * stage
    section = cfg.to_dict().get("curriculum", {"stages": []})
    torch.save(
        {
            "model": state,
            "optimizer": {"state": {}, "param_groups": [{"lr": 2e-5, "params": list(range(len(shadow)))}]},
            "ema": {"decay": 0.9999, "shadow": shadow, "num_updates": 99},
            "scheduler": {"last_epoch": 100, "base_lrs": [2e-5]},
            "curriculum_stage": stage if cfg.curriculum is not None else -1,
            "curriculum_config": section,
            "timestamp": timestamp,
            "epoch": epoch,
            "loss": 0.03,
        },
        path,
    )
    return path


# ---- a stand-in for the FID feature network (sample-quality tests) ---------------------------
class FakeFeatures:
    """What the Inception network offers, cheaply: 8-bit images pooled to 4x4, a fixed random
    projection to 32-d and a ReLU. Counts the images it has seen."""

    dims = 32

    def __init__(self, seed: int = 0, sha1: str = "fake-weights"):
        self.proj = torch.randn(48, self.dims, generator=torch.Generator().manual_seed(seed))
        self.weights_sha1 = sha1
        self.seen = 0

    def __call__(self, images):
        self.seen += images.shape[0]
        levels = ((images.float() + 1) * 127.5).round() / 255
        pooled = torch.nn.functional.adaptive_avg_pool2d(levels, 4).flatten(1)  # (B, 48)
        return torch.relu(pooled @ self.proj).numpy()

    def describe(self):
        return {"network": "fake", "dims": self.dims, "weights_sha1": self.weights_sha1}


@pytest.fixture
def fake_network():
    return FakeFeatures()


# ---- the study's U-ViT (tests/core/test_uvit*.py, tests/output/test_visualization_run_uvit.py) ----
UVIT_TINY = UViTConfig(img_size=16, patch_size=4, embed_dim=32, depth=4, num_heads=4, mlp_ratio=2)
UVIT_STUDY_CONFIG = '''import ml_collections

def d(**kwargs):
    """Helper of creating a config dict."""
    return ml_collections.ConfigDict(initial_dictionary=kwargs)

def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 7
    config.pred = 'noise_pred'
    config.curriculum = d(enabled=True, stages=[d(t_min=0.3, t_max=1.0, n_steps=10, name="a"),
                                                d(t_min=0.0, t_max=1.0, n_steps=30, name="b")])
    total_steps = sum(s['n_steps'] for s in config.curriculum.stages)
    config.train = d(n_steps=total_steps, batch_size=2*3, mode='uncond')
    config.optimizer = d(name='adamw', lr=0.0002, weight_decay=0.03, betas=(0.99, 0.99))
    config.lr_scheduler = d(name='customized', warmup_steps=50)
    config.nnet = d(name='uvit', img_size=16, patch_size=4, embed_dim=32, depth=4, num_heads=4, mlp_ratio=2,
                    qkv_bias=False, mlp_time_embed=False, num_classes=-1)
    config.dataset = d(name='celeba', path='assets/datasets/celeba', resolution=16)
    return config
'''


def tiny_uvit(seed: int = 0) -> UViT:
    torch.manual_seed(seed)
    return perturb(UViT(UVIT_TINY), scale=0.1, seed=seed).eval()


def write_run(tmp_path: Path) -> tuple[Path, Path, dict, dict]:
    """A study U-ViT config and a ckpts/<step>.ckpt folder with differing raw and EMA weights."""
    config = tmp_path / "celeba16_uvit.py"
    config.write_text(UVIT_STUDY_CONFIG)
    folder = tmp_path / "ckpts" / "40.ckpt"
    folder.mkdir(parents=True)
    raw, ema = tiny_uvit(1).state_dict(), tiny_uvit(2).state_dict()
    torch.save(raw, folder / "nnet.pth")
    torch.save(ema, folder / "nnet_ema.pth")
    torch.save(40, folder / "step.pth")
    return config, folder, raw, ema


def write_study_run(folder, *, config: str, epochs=(1, 2), seed: int = 0, run_seed: int = 1234):
    """A run folder as the study's train_curriculum.py leaves it, ``chkpts/<name>/<run_timestamp>/``:
    ``config.json`` in its trainer's layout (top-level ``seed``, ``model.block_size`` and
    ``out_channels``, ``train.beta1``/``beta2``, a disabled curriculum as ``{"stages": []}``) and
    one checkpoint per epoch, ``<name>_<save timestamp>_<epoch>.pt``, each with other weights.
    Returns the checkpoint paths."""
    import json

    from ddpm_lens.core.config import load_config

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = load_config(ROOT / config).to_dict()
    cfg["model"].update(out_channels=3, block_size=1)
    cfg["train"].update(beta1=0.9, beta2=0.999)
    cfg["train"].pop("seed")
    cfg["curriculum"] = cfg.get("curriculum", {"stages": []})
    cfg.setdefault("sparsity", {"enabled": False, "initial_sparsity": 0.8, "regrowth_method": "gradient"})
    cfg.setdefault("regularization", {"enabled": False, "lambda_max": 3e-5})
    (folder / "config.json").write_text(json.dumps({"seed": run_seed, **cfg}, indent=2))
    name = Path(config).stem
    return [
        write_study_checkpoint(
            folder / f"{name}_2025121{e}_1200{e:02d}_{e}.pt",
            config=config,
            seed=seed + 10 * e,
            timestamp=f"2025121{e}_1200{e:02d}",
            epoch=e,
        )
        for e in epochs
    ]
