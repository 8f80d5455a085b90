"""The training step on a GPU: autocast, channels_last and torch.compile against plain fp32.

Marked ``cuda``: skipped without a GPU; ``benchmarks/gpu_check.sh`` runs them (``pytest -m cuda``).
"""

import pytest
import torch

from ddpm_lens.core.config import load_config, with_overrides
from ddpm_lens.core.unet import build_unet
from ddpm_lens.data.datasets import build_dataset, first_n
from ddpm_lens.train.distributed import DistInfo
from ddpm_lens.train.trainer import Trainer

pytestmark = pytest.mark.cuda
STEPS = 4


def losses_and_weights(tmp_path, name, **overrides):
    """Losses of STEPS steps on one fixed batch of 16 faces (32x32, tiny model) and the final weights."""
    cfg = with_overrides(
        load_config("configs/tiny.json"),
        {"train.batch_size": 16, "train.warmup": 1, "train.image_intv": 0, "model.drop_rate": 0.0,
         **{f"train.{k}": v for k, v in overrides.items()}},
    )  # fmt: skip
    device = torch.device("cuda", torch.cuda.current_device())
    trainer = Trainer(cfg, run_dir=tmp_path / name, dist=DistInfo(0, 0, 1, device), progress=False)
    x = first_n(build_dataset("synthetic-faces", resolution=32), 16)
    losses = [float(trainer.train_step([x]).loss) for _ in range(STEPS)]
    weights = torch.cat([p.detach().float().flatten().cpu() for p in trainer.model.parameters()])
    return losses, weights


def initial_weights():
    cfg = load_config("configs/tiny.json")
    torch.manual_seed(cfg.train.seed)  # as Trainer does
    return torch.cat([p.detach().flatten() for p in build_unet(cfg.model).parameters()])


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    losses, weights = losses_and_weights(tmp_path_factory.mktemp("fp32"), "fp32")
    moved = (weights - initial_weights()).norm()
    assert moved > 0 and all(torch.isfinite(torch.tensor(losses)))
    return losses, weights, moved


# The same seed draws the same t, noise and flips in every mode, so the runs differ by arithmetic
# only. Adam turns small gradient differences into sign-sized updates where gradients are near 0,
# hence bounds relative to how far fp32 moved the weights; a broken mode (unscaled fp16
# gradients, a lost autocast, a stale compiled graph) misses them by orders of magnitude.
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_autocast_steps_track_the_fp32_steps(tmp_path, fp32, amp):
    losses, weights = losses_and_weights(tmp_path, amp, amp=amp)
    ref_losses, ref_weights, moved = fp32
    assert losses == pytest.approx(ref_losses, rel=0.05)
    assert (weights - ref_weights).norm() < 0.5 * moved


def test_channels_last_is_the_same_training(tmp_path, fp32):
    losses, weights = losses_and_weights(tmp_path, "cl", channels_last=True)
    assert losses == pytest.approx(fp32[0], rel=1e-2)
    assert (weights - fp32[1]).norm() < 0.1 * fp32[2]


def test_compiled_steps_match_eager_steps(tmp_path, fp32):
    losses, weights = losses_and_weights(tmp_path, "compiled", compile=True)
    assert losses == pytest.approx(fp32[0], rel=1e-2)
    assert (weights - fp32[1]).norm() < 0.1 * fp32[2]
