"""Training the study's way on tiny configs: stages per epoch, CS regrowth, CR penalty, resume, keys.

16 faces at 16x16 and batch 4 (the face_folder fixture): 4 steps per epoch, so the tiny configs'
four stages (1, 1, 1, 2 epochs) take 20 steps.
"""

import csv
import glob
import math
from pathlib import Path

import pytest
import torch
from conftest import run_torchrun

from ddpm_lens.core.checkpoint import read_checkpoint
from ddpm_lens.core.config import load_config, save_config, with_overrides
from ddpm_lens.core.sparse_unet import MASK_BUFFERS
from ddpm_lens.core.unet import build_unet
from ddpm_lens.data.datasets import build_dataset
from ddpm_lens.train.group_l1 import bottleneck_adjacent_convs, group_l1
from ddpm_lens.train.run_files import prepare_run_dir
from ddpm_lens.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = {
    "dataset.name": "folder",
    "dataset.resolution": 16,
    "dataset.max_images": None,
    "train.batch_size": 4,
    "train.warmup": 2,
}
NO_SPARSITY_KEYS = [  # tiny_cs's stages without their own "sparsity": the t_min rule decides
    {"t_min": 0.5, "t_max": 1.0, "epochs": 1},
    {"t_min": 0.2, "t_max": 1.0, "epochs": 1},
    {"t_min": 0.05, "t_max": 1.0, "epochs": 1},
    {"t_min": 0.0, "t_max": 1.0, "epochs": 2},
]


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


def checkpoints(run_dir):
    return [
        read_checkpoint(p)
        for p in sorted(glob.glob(f"{run_dir}/*.pt"), key=lambda p: int(p[:-3].rsplit("_", 1)[1]))
    ]


@pytest.mark.parametrize(
    ("stages", "active"),
    [
        (None, [12, 25, 44, 64, 64]),  # the stages' own sparsity 0.8, 0.6, 0.3, 0
        # stage 0 and t_min >= 0.2 keep 0.8; then 0.8 (1 - sqrt(1 - 0.05 / 0.2)) = 0.107 -> 57; then 0 -> 64
        (NO_SPARSITY_KEYS, [12, 12, 57, 64, 64]),
    ],
)
def test_cs_active_channels_per_stage_follow_the_rule(tmp_path, face_folder, stages, active, capsys):
    overrides = {} if stages is None else {"curriculum__stages": stages}
    cfg = cfg_of("tiny_cs", train__epochs=2, **overrides)
    trainer = train(cfg, tmp_path / "cs", face_folder)
    assert "overriding train.epochs (2) with the stages' total (5)" in capsys.readouterr().out
    assert trainer.step == 20
    log = rows(tmp_path / "cs" / "epoch_log.csv")
    assert [int(r["active_channels"]) for r in log] == active
    names = ["coarse", "detail", "fine", "finest"] if stages is None else [f"stage_{i}" for i in (1, 2, 3, 4)]
    assert [r["stage_name"] for r in log] == [*names, names[-1]]
    assert [(int(r["t_lo"]), int(r["t_hi"])) for r in log] == [
        (500, 1000),
        (200, 1000),
        (50, 1000),
        (0, 1000),
        (0, 1000),
    ]
    ckpts = checkpoints(tmp_path / "cs")
    masks = [c["model"]["channel_mask"] for c in ckpts]
    assert [int(m.sum()) for m in masks] == active  # each checkpoint: the end of an epoch
    for before, after in zip(masks, masks[1:]):
        assert torch.all(after >= before)  # no channel is ever masked again
    born = ckpts[-1]["model"]["channel_birth_stage"]
    for epoch in range(1, 4):  # channels that became active at the start of stage `epoch` have it as birth
        new = (masks[epoch] - masks[epoch - 1]).bool()
        assert torch.all(born[new] == epoch)
    assert torch.all(born[masks[0].bool()] == 0)


def test_gradient_regrowth_in_training_picks_the_top_accumulated_channels(tmp_path, face_folder):
    train(cfg_of("tiny_cs", train__max_steps=8), tmp_path / "cs", face_folder)
    first, second = checkpoints(tmp_path / "cs")  # the ends of epochs 1 and 2 (stages 0 and 1)
    mask, accum = first["model"]["channel_mask"], first["model"]["channel_grad_accum"]
    assert torch.all(accum[mask == 1] == 0) and torch.all(
        accum[mask == 0] > 0
    )  # only masked channels collect
    masked = torch.nonzero(mask == 0).flatten()
    top = set(masked[torch.topk(accum[masked], 25 - 12).indices].tolist())
    new = set(torch.nonzero(second["model"]["channel_mask"] - mask).flatten().tolist())
    assert new == top
    assert torch.all(second["model"]["channel_grad_accum"][second["model"]["channel_mask"] == 1] == 0)


def test_cr_loss_is_mse_plus_the_penalty_over_the_batch(tmp_path, face_folder):
    cfg = cfg_of("tiny_cr")
    train(cfg, tmp_path / "cr", face_folder)
    log = rows(tmp_path / "cr" / "train_log.csv")
    lams = [1e-3, 5e-4, 1e-4, 0.0, 0.0]
    assert [float(r["lambda"]) for r in rows(tmp_path / "cr" / "epoch_log.csv")] == lams
    for r in log:
        loss, mse, reg = float(r["loss"]), float(r["mse"]), float(r["reg"])
        lam = lams[int(r["epoch"]) - 1]
        assert (reg > 0) == (lam > 0)
        assert loss == pytest.approx(mse + reg / 4, rel=1e-6, abs=1e-7)  # b = 4 images per micro-step
    torch.manual_seed(cfg.train.seed)  # the trainer's initial weights
    initial = build_unet(cfg.model)
    weights = [m.weight.detach() for _, m in bottleneck_adjacent_convs(initial)]
    assert float(log[0]["reg"]) == pytest.approx(1e-3 * float(group_l1(weights)), rel=1e-5)
    assert float(log[0]["reg"]) == pytest.approx(1e-3 * 64, rel=0.05)  # conv1 rows ~1, conv2 ~0 at init


def test_the_penalty_reaches_the_gradient(tmp_path, face_folder):
    def adjacent_l1(lam):
        stages = [{"t_min": 0.0, "t_max": 1.0, "epochs": 2, "lambda": lam}]
        trainer = train(
            cfg_of("tiny_cr", curriculum__stages=stages, train__lr=1e-2), tmp_path / str(lam), face_folder
        )
        return float(group_l1([m.weight for _, m in bottleneck_adjacent_convs(trainer.model)]))

    assert adjacent_l1(0.5) < 0.8 * adjacent_l1(0.0)


@pytest.mark.parametrize("name", ["tiny_cs", "tiny_cr", "soft"])
def test_resume_mid_stage_is_bit_exact_with_mask_and_accumulator(tmp_path, face_folder, name):
    if name == "soft":
        soft = [
            {"epochs": e, "alpha": a, "beta": b} for e, a, b in [(1, 3, 1), (1, 2, 2), (1, 1, 1), (2, 1, 3)]
        ]
        cfg = cfg_of(
            "tiny_cs", curriculum__mode="soft", curriculum__stages=soft, sparsity__regrowth_method="random"
        )
    else:
        cfg = cfg_of(name)
    n = 14  # ends inside epoch 4; the resumed half starts inside epoch 2 (stage 1)
    straight = train(with_overrides(cfg, {"train.max_steps": n}), tmp_path / "a", face_folder)
    first = train(with_overrides(cfg, {"train.max_steps": 6}), tmp_path / "b", face_folder)
    second = Trainer(with_overrides(cfg, {"train.max_steps": n}), run_dir=tmp_path / "b", progress=False)
    second.load(prepare_run_dir(tmp_path / "b", "b", resume=True, main=True))
    assert second.sampler.stage == first.sampler.stage == 1
    if name == "tiny_cs":
        for k in MASK_BUFFERS:
            assert torch.equal(getattr(second.model, k), getattr(first.model, k))
        assert second.model.channel_grad_accum.any()  # mid-stage: the accumulator is in use
    second.fit(build_dataset("folder", root=face_folder, resolution=16))
    for log in ("train_log.csv", "epoch_log.csv"):
        assert rows(tmp_path / "a" / log) == rows(tmp_path / "b" / log), log
    a, b = straight.state_dict(0), second.state_dict(0)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])  # buffers included
    assert all(torch.equal(a["ema"]["shadow"][k], b["ema"]["shadow"][k]) for k in a["ema"]["shadow"])
    assert a["sampler"] == b["sampler"] and a["curriculum_stage"] == b["curriculum_stage"] == 3


def test_checkpoints_carry_the_studys_keys_so_its_code_loads_them_strictly(tmp_path, face_folder):
    train(cfg_of("tiny_cs", train__max_steps=8), tmp_path / "cs", face_folder)
    paths = sorted((tmp_path / "cs").glob("cs_*.pt"))
    ckpt = read_checkpoint(paths[-1])
    assert list(ckpt)[:6] == [
        "model",
        "optimizer",
        "scheduler",
        "curriculum_stage",
        "curriculum_config",
        "timestamp",
    ]
    assert ckpt["curriculum_stage"] == 1 and paths[-1].name == f"cs_{ckpt['timestamp']}_2.pt"
    section = load_config(ROOT / "configs/tiny_cs.json").to_dict()["curriculum"]
    assert ckpt["curriculum_config"] == section and section["enabled"] is True
    # what the study's SparseUNet(...).load_state_dict(strict=True) and its EMA need: exactly these keys
    study_keys = ["channel_mask", "channel_birth_stage", "channel_grad_accum"]
    assert list(ckpt["model"])[:3] == study_keys
    assert set(ckpt["ema"]["shadow"]) == set(ckpt["model"]) - set(study_keys)
    assert ckpt["model"]["channel_birth_stage"].dtype == torch.int64
    assert not list((tmp_path / "cs").glob("samples_*.png"))  # num_samples 0: no grids
    baseline = cfg_of("tiny_study", train__max_steps=2)
    train(baseline, tmp_path / "base", face_folder)
    base = read_checkpoint(next((tmp_path / "base").glob("*.pt")))
    assert (base["curriculum_stage"], base["curriculum_config"]) == (-1, {"stages": []})
    assert not (tmp_path / "base" / "epoch_log.csv").exists()


def test_cs_and_cr_without_the_staged_curriculum_keep_mask_and_lambda_fixed(tmp_path, face_folder):
    trainer = train(
        cfg_of("tiny_cs", curriculum__enabled=False, train__epochs=2), tmp_path / "cs", face_folder
    )
    assert trainer.model.active_channels == 12 and trainer.sampler.stage == 0  # the uniform sampler's
    log = rows(tmp_path / "cs" / "epoch_log.csv")
    assert [(r["stage"], r["active_channels"]) for r in log] == [("-1", "12"), ("-1", "12")]
    train(cfg_of("tiny_cr", curriculum__enabled=False, train__max_steps=3), tmp_path / "cr", face_folder)
    assert all(float(r["reg"]) == 0.0 for r in rows(tmp_path / "cr" / "train_log.csv"))


WORKER = """
import sys
from pathlib import Path
import torch
from ddpm_lens.core.config import load_config
from ddpm_lens.data.datasets import build_dataset
from ddpm_lens.train.distributed import cleanup, init_distributed
from ddpm_lens.train.trainer import Trainer

config, data, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
info = init_distributed("cpu")
try:
    trainer = Trainer(load_config(config), run_dir=out / "ddp", dist=info, progress=False)
    trainer.fit(build_dataset("folder", root=data, resolution=16))
    torch.save(trainer.model.state_dict(), out / f"rank{info.rank}.pt")
finally:
    cleanup(info)
"""


@pytest.mark.slow  # two torchrun processes: ~12 s on 2 cores
def test_two_gloo_processes_grow_the_same_mask_as_one(tmp_path, face_folder):
    cfg = cfg_of("tiny_cs", train__batch_size=8, train__max_steps=5)  # 2 steps per epoch: stages 0, 1, 2
    config = tmp_path / "ddp.json"
    save_config(cfg, config)
    (tmp_path / "worker.py").write_text(WORKER)
    run_torchrun(tmp_path / "worker.py", config, face_folder, tmp_path)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    one = train(cfg, tmp_path / "one", face_folder).model.state_dict()
    assert int(one["channel_mask"].sum()) == 44  # stage 2 reached
    for k in MASK_BUFFERS:
        assert torch.equal(rank0[k], rank1[k]), k
    assert torch.equal(rank0["channel_mask"], one["channel_mask"])
    assert torch.allclose(rank0["channel_grad_accum"], one["channel_grad_accum"], rtol=1e-3)
    assert not math.isclose(float(one["channel_grad_accum"].sum()), 0.0)
