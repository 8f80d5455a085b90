"""Training the study's U-ViT (core/uvit.py) baseline, C, CS and CR on tiny configs; resuming bit-exactly.

16 faces at 16x16 and batch 4 (the face_folder fixture): 4 steps per epoch, so the tiny U-ViT
configs' four stages (1, 1, 1, 2 epochs) take 20 steps; the model is tiny_uvit's at 16 px (16 tokens).
"""

import csv
from pathlib import Path

import pytest
import torch

from ddpm_lens.core.checkpoint import load_model, read_checkpoint
from ddpm_lens.core.config import load_config, with_overrides
from ddpm_lens.core.unet import build_unet
from ddpm_lens.core.uvit import UViT
from ddpm_lens.data.datasets import build_dataset
from ddpm_lens.train.group_l1 import group_l1
from ddpm_lens.train.run_files import prepare_run_dir
from ddpm_lens.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = {
    "dataset.name": "folder",
    "dataset.resolution": 16,
    "dataset.max_images": None,
    "model.img_size": 16,
    "train.batch_size": 4,
    "train.warmup": 2,
}


def cfg_of(name: str, **overrides):
    cfg = with_overrides(load_config(ROOT / f"configs/{name}.json"), SMALL)
    return with_overrides(cfg, {k.replace("__", "."): v for k, v in overrides.items()})


def train(cfg, run_dir, face_folder) -> Trainer:
    trainer = Trainer(cfg, run_dir=run_dir, progress=False)
    trainer.fit(build_dataset("folder", root=face_folder, resolution=16))
    return trainer


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_cs_mask_zeroes_the_last_embedding_dims_in_training_only():
    torch.manual_seed(0)
    model = build_unet(cfg_of("tiny_uvit_cs").model)
    assert isinstance(model, UViT)
    x, t = torch.rand(2, 3, 16, 16) * 2 - 1, torch.tensor([3, 700])
    model.train()
    model.token_sparsity = 0.75  # 64 dims: the first int(64 * 0.25) = 16 stay active
    model(x, t).square().sum().backward()
    rows_norm = model.patch_embed.proj.weight.grad.flatten(1).norm(dim=1)
    assert (rows_norm[16:] == 0).all() and (rows_norm[:16] > 0).all()
    model.eval()  # evaluation uses every dim, as the study's inference mode
    masked = model.train()(x, t)
    model.token_sparsity = 0.0
    assert not torch.equal(masked, model(x, t))
    model.token_sparsity = 0.75
    with torch.no_grad():
        assert torch.equal(model.eval()(x, t), model.eval()(x, t))
        assert model.embed_mask(torch.float32, torch.device("cpu")) is None


def test_cs_activates_the_stages_embedding_dims(tmp_path, face_folder):
    cs = train(cfg_of("tiny_uvit_cs"), tmp_path / "cs", face_folder)
    log = rows(tmp_path / "cs" / "epoch_log.csv")
    assert [int(r["active_channels"]) for r in log] == [16, 32, 48, 64, 64]
    assert cs.model.token_sparsity == 0.0


def test_cr_adds_the_stages_penalty_on_patch_embed(tmp_path, face_folder):
    cfg = cfg_of("tiny_uvit_cr")
    train(cfg, tmp_path / "cr", face_folder)
    lams = [1e-2, 1e-3, 1e-4, 0.0, 0.0]
    assert [float(r["lambda"]) for r in rows(tmp_path / "cr" / "epoch_log.csv")] == lams
    steps = rows(tmp_path / "cr" / "train_log.csv")
    for r in steps:
        loss, mse, reg = float(r["loss"]), float(r["mse"]), float(r["reg"])
        assert (reg > 0) == (lams[int(r["epoch"]) - 1] > 0)
        assert loss == pytest.approx(mse + reg, rel=1e-6, abs=1e-7)  # the U-ViT CR: not divided by the batch
    torch.manual_seed(cfg.train.seed)  # the trainer's initial weights
    initial = build_unet(cfg.model).patch_embed.proj.weight.detach()
    assert float(steps[0]["reg"]) == pytest.approx(1e-2 * float(group_l1([initial])), rel=1e-5)


@pytest.mark.parametrize("name", ["tiny_uvit", "tiny_uvit_c", "tiny_uvit_cs", "tiny_uvit_cr"])
def test_resume_mid_stage_is_bit_exact(tmp_path, face_folder, name):
    cfg = cfg_of(name)
    n = 14  # ends inside epoch 4; the resumed half starts inside epoch 2
    straight = train(with_overrides(cfg, {"train.max_steps": n}), tmp_path / "a", face_folder)
    train(with_overrides(cfg, {"train.max_steps": 6}), tmp_path / "b", face_folder)
    second = Trainer(with_overrides(cfg, {"train.max_steps": n}), run_dir=tmp_path / "b", progress=False)
    second.load(prepare_run_dir(tmp_path / "b", "b", resume=True, main=True))
    second.fit(build_dataset("folder", root=face_folder, resolution=16))
    logs = ["train_log.csv"] + (["epoch_log.csv"] if name != "tiny_uvit" else [])
    for log in logs:
        assert rows(tmp_path / "a" / log) == rows(tmp_path / "b" / log), log
    a, b = straight.state_dict(0), second.state_dict(0)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["ema"]["shadow"][k], b["ema"]["shadow"][k]) for k in a["ema"]["shadow"])


def test_checkpoints_hold_the_studys_nnet_keys_and_load_back(tmp_path, face_folder):
    cfg = cfg_of("tiny_uvit_cs", train__max_steps=8)
    train(cfg, tmp_path / "cs", face_folder)
    path = sorted((tmp_path / "cs").glob("cs_*.pt"))[-1]
    ckpt = read_checkpoint(path)
    # the study's UViT(**config.nnet).load_state_dict(..., strict=True) needs exactly these keys and shapes
    reference = {k: tuple(v.shape) for k, v in UViT(cfg.model).state_dict().items()}
    for weights in (ckpt["model"], ckpt["ema"]["shadow"]):
        assert {k: tuple(v.shape) for k, v in weights.items()} == reference
    assert not any(
        torch.equal(ckpt["model"][k], ckpt["ema"]["shadow"][k])
        for k in ("pos_embed", "mid_block.mlp.fc1.weight")
    )
    for use_ema, source in ((True, ckpt["ema"]["shadow"]), (False, ckpt["model"])):
        model, _, loaded = load_model(None, path, use_ema=use_ema)
        assert isinstance(model, UViT) and loaded.model == cfg.model
        assert all(torch.equal(model.state_dict()[k], v) for k, v in source.items())
