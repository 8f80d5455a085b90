"""The state of a training run: model, EMA, Adam, timestep sampler, step counter; no argparse.

One optimizer step (:meth:`Trainer.train_step`) is ddpm-torch's: MSE on the predicted noise,
optional gradient accumulation over ``num_accum`` micro-batches, gradient-norm clipping,
Adam with a linear lr warm-up ``min((step + 1) / warmup, 1)``, then an EMA of the weights
with decay ``min(decay, (1 + n) / (10 + n))``::

    trainer = Trainer(cfg, run_dir=Path("chkpts/tiny"), dist=init_distributed("cpu"))
    final = trainer.fit(build_dataset("synthetic-faces", resolution=32))

Reproducibility without saved RNG state: every step draws the *global* batch's timesteps,
noise and flips from a generator seeded by ``step_seed(seed, step)`` on every process, and each
process keeps its own slice; dropout uses torch's generator reseeded per (seed, step, rank);
data order is a permutation seeded by (seed, epoch). A resumed run therefore draws exactly
what an uninterrupted one would (bit-exact on the CPU), and K processes together see what one
process with the same global batch sees.

Files, written by rank 0 only, under ``run_dir`` = ``<chkpt_dir>/<name>``:

- ``<name>_<YYYYmmdd_HHMMSS>_<epoch>.pt`` every ``chkpt_intv`` epochs and at the end, written
  atomically, with ddpm-torch's keys (``model``, ``optimizer``, ``scheduler``, ``ema``,
  ``epoch``, ``loss``), the study's CurriculumTrainer keys (``curriculum_stage``,
  ``curriculum_config``, ``timestamp``; a CS model's mask buffers are in ``model``), plus
  ``config``, ``sampler``, ``step``, ``ddpm_lens_version``. ``epoch`` is the (1-based) epoch of
  the last step taken, so it counts completed epochs at epoch ends.
- ``config.json``: the run's effective config.
- ``train_log.csv``: one row per step (``step`` from 0, ``epoch`` from 1, loss, lr, stage,
  t_lo, t_hi: the step drew t in [t_lo, t_hi); mse and reg: the loss without the CR penalty
  and the penalty lambda * sum ||W_c||), appended every ``log_every`` steps;
  TensorBoard scalars in ``tensorboard/`` when ``torch.utils.tensorboard`` imports.
- ``epoch_log.csv``, with the study's staged curriculum, CS or CR: one row per epoch (stage,
  its name, t-range, active channels, channels regrown, lambda), also printed.
- ``samples_<epoch>.png`` every ``image_intv`` epochs and at the end (never if ``num_samples``
  is 0): EMA samples, DDIM with 50 steps and eta 0, from noise seeded with ``train.seed``.

The study's modes (:mod:`ddpm_lens.train.study_modes`): its staged curriculum sets the run's
epochs; CS regrows the SparseUNet's mask at stage changes; CR adds the group-L1 penalty.

Losses stay on the device and are read once every ``log_every`` steps (no per-step host sync,
except that adaptive curriculum pacing reads every step's loss). A NaN/inf loss stops the run
with a :class:`UserError` naming the step, and no checkpoint is written after it.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from ddpm_lens import __version__
from ddpm_lens.core.checkpoint import (
    checkpoint_name,
    read_checkpoint,
    save_checkpoint,
    strip_prefixes,
)
from ddpm_lens.core.config import Config, save_config
from ddpm_lens.core.diffusion import GaussianDiffusion
from ddpm_lens.core.unet import build_unet
from ddpm_lens.data.datasets import to_uint8
from ddpm_lens.output.grid import image_grid
from ddpm_lens.train.distributed import DistInfo, barrier, is_main, mean_over_ranks
from ddpm_lens.train.ema import EMA
from ddpm_lens.train.global_batches import GlobalBatches
from ddpm_lens.train.run_files import RunLog
from ddpm_lens.train.stage_schedule import run_epochs
from ddpm_lens.train.study_modes import StudyModes
from ddpm_lens.train.timesteps import build_timestep_sampler
from ddpm_lens.util.atomic import atomic_path
from ddpm_lens.util.errors import UserError, warn

SAMPLE_STEPS = 50  # DDIM steps of the sample grids
# Keys of the config that a resumed run must share with its checkpoint.
RESUME_SECTIONS = ("model", "diffusion", "curriculum", "sparsity", "regularization")


def step_seed(seed: int, step: int, stream: int | str = 0) -> int:
    """A 63-bit seed for (run seed, global step or stage, stream); stream 0 is shared by all ranks."""
    digest = hashlib.blake2b(f"{seed}/{step}/{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass
class StepRecord:
    """What one optimizer step logs; ``loss`` is a 0-d tensor still on the device."""

    step: int
    loss: torch.Tensor
    lr: float
    stage: int
    t_lo: int
    t_hi: int
    mse: torch.Tensor  # 0-d: the loss without the CR penalty
    reg: torch.Tensor  # 0-d: the CR penalty lambda * sum_c ||W_c|| (0 without CR)


class Trainer:
    """Model, EMA, optimizer, lr schedule, timestep sampler and step count of one run.

    ``run_dir`` receives checkpoints and logs (rank 0). ``dist`` comes from
    :func:`ddpm_lens.train.distributed.init_distributed`; None means one CPU process.
    """

    def __init__(
        self,
        cfg: Config,
        *,
        run_dir: str | os.PathLike,
        dist: DistInfo | None = None,
        log_every: int = 10,
        progress: bool = True,
    ):
        if log_every < 1:
            raise UserError(f"--log-every must be at least 1, got {log_every}")
        self.cfg, self.run_dir, self.name = cfg, Path(run_dir), Path(run_dir).name
        self.dist = dist or DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
        self.device = self.dist.device
        self.log_every, self.progress = log_every, progress
        tc = cfg.train
        cuda = self.device.type == "cuda"
        if tc.amp != "none" and not cuda and is_main(self.dist):
            warn(f"train.amp={tc.amp} applies on CUDA only; training in float32 on {self.device}")
        if cuda:
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels

        torch.manual_seed(tc.seed)  # the same initial weights (and CS mask) on every process
        self.model = build_unet(cfg.model, sparsity=cfg.sparsity, mask_seed=tc.seed).to(self.device)
        self.modes = StudyModes(cfg, self.model, main=is_main(self.dist))
        if tc.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.diffusion = GaussianDiffusion.from_config(cfg.diffusion)
        self.sampler = build_timestep_sampler(
            cfg.diffusion, cfg.curriculum, alphas_cumprod=self.diffusion.alphas_cumprod.numpy()
        )
        self.diffusion.to(self.device)
        # fused Adam: one kernel over all parameters (3-4x faster than the default loop, also on CPUs)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=tc.lr, betas=(tc.beta1, tc.beta2), fused=True
        )
        warmup = tc.warmup
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda=lambda s: min((s + 1) / warmup, 1.0) if warmup > 0 else 1.0
        )
        self.ema = EMA(self.model, tc.ema_decay) if tc.use_ema else None
        self.scaler = torch.amp.GradScaler("cuda") if (cuda and tc.amp == "fp16") else None
        self._amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.amp) if cuda else None

        self._ddp = None
        self.net: torch.nn.Module = self.model  # what the forward pass calls
        if self.dist.distributed:
            self._ddp = DistributedDataParallel(self.model, device_ids=[self.device] if cuda else None)
            self.net = self._ddp
        if tc.compile:
            self.net = torch.compile(self.net)
        self._gen = torch.Generator(device=self.device)
        self._dropout = cfg.model.drop_rate > 0
        self.step = 0  # optimizer steps taken
        self.last_checkpoint: Path | None = None
        self._loss_sum, self._loss_count = 0.0, 0  # losses read since the last checkpoint

    # one step ----------------------------------------------------------------------------
    def train_step(self, micro_batches: Sequence[torch.Tensor]) -> StepRecord:
        """One optimizer step on this process's micro-batches (each (b, C, H, W) in [-1, 1])."""
        tc, rank, world = self.cfg.train, self.dist.rank, self.dist.world_size
        step = self.step
        g = self._gen.manual_seed(step_seed(tc.seed, step))
        if self._dropout:
            torch.manual_seed(step_seed(tc.seed, step, 1 + rank))
        lr = self.optimizer.param_groups[0]["lr"]
        stage, (t_lo, t_hi) = self.sampler.stage, self.sampler.t_range
        self.modes.before_step(stage)  # U-ViT CS: the stage's token mask
        sums = torch.zeros(3, device=self.device)  # loss, MSE and CR penalty over the micro-batches
        last = len(micro_batches) - 1
        for i, x in enumerate(micro_batches):
            x = x.to(self.device, non_blocking=True)  # (b, C, H, W)
            b = x.shape[0]
            mine = slice(rank * b, (rank + 1) * b)  # this process's part of the global micro-batch
            t = self.sampler.sample(world * b, g, self.device)[mine]  # (b,)
            noise = torch.randn((world * b, *x.shape[1:]), generator=g, device=self.device)[mine]
            if self.cfg.dataset.random_flip:
                flip = (torch.rand(world * b, generator=g, device=self.device) < 0.5)[mine]
                x = torch.where(flip[:, None, None, None], x.flip(3), x)
            if tc.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
                noise = noise.contiguous(memory_format=torch.channels_last)
            sync = self._ddp.no_sync() if (self._ddp is not None and i < last) else contextlib.nullcontext()
            with sync:
                with self._autocast():
                    mse = self.diffusion.train_losses(self.net, x, t, noise).mean()
                reg = self.modes.penalty(stage)  # lambda * sum ||W_c||, or None
                # the study's UNet CR divides by the process's batch, its U-ViT CR does not
                loss = mse if reg is None else mse + (reg / b if self.modes.divide_penalty else reg)
                scaled = loss / len(micro_batches)
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            reg = sums.new_zeros(()) if reg is None else reg
            sums += torch.stack([loss.float(), mse.float(), reg.float()]).detach()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        self.modes.after_backward()  # CS: masked channels collect |grad| (before clipping)
        if tc.grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update()
        loss, mse, reg = mean_over_ranks(sums / len(micro_batches), self.dist)
        self.sampler.update(step, loss)
        self.step += 1
        return StepRecord(step, loss, lr, stage, t_lo, t_hi, mse, reg)

    def _autocast(self):
        if self._amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self._amp_dtype)

    # the loop ----------------------------------------------------------------------------
    def fit(self, dataset: Dataset) -> Path | None:
        """Train until ``train.epochs`` or ``train.max_steps``; returns the final checkpoint (rank 0)."""
        tc, world = self.cfg.train, self.dist.world_size
        if tc.batch_size % world:
            raise UserError(
                f"train.batch_size {tc.batch_size} is not divisible by the {world} processes: pick a multiple"
            )
        epochs = run_epochs(self.cfg)
        if epochs != tc.epochs and is_main(self.dist):
            print(f"[curriculum] overriding train.epochs ({tc.epochs}) with the stages' total ({epochs})")
        micro_per_epoch = len(dataset) // tc.batch_size
        steps_per_epoch = micro_per_epoch // tc.num_accum
        if steps_per_epoch == 0:
            raise UserError(
                f"the dataset has {len(dataset)} images, fewer than one step's batch_size x num_accum = "
                f"{tc.batch_size * tc.num_accum}: lower --batch-size or add images"
            )
        total = min(epochs * steps_per_epoch, tc.max_steps or epochs * steps_per_epoch)
        if self.step >= total:
            raise UserError(
                f"the run is already at step {self.step} of its {total}: "
                "raise --epochs or --max-steps to continue"
            )
        batches = GlobalBatches(
            len(dataset),
            global_batch=tc.batch_size,
            num_batches=steps_per_epoch * tc.num_accum,
            rank=self.dist.rank,
            world_size=world,
            seed=tc.seed,
        )
        loader = DataLoader(
            dataset,
            batch_sampler=batches,
            num_workers=tc.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=tc.num_workers > 0,
        )
        log = None
        if is_main(self.dist):
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / "config.json")
            log = RunLog(
                self.run_dir,
                start_step=self.step,
                total_steps=total,
                progress=self.progress,
                desc=self.name,
                start_epoch=math.ceil(self.step / steps_per_epoch) + 1,  # keeps a resumed epoch's row
                epoch_log=self.modes.active,
            )
        pending: list[StepRecord] = []
        grids = tc.image_intv > 0 and tc.num_samples > 0
        try:
            while self.step < total:
                epoch_start = self.step % steps_per_epoch == 0
                self._begin_epoch(self.step // steps_per_epoch, log if epoch_start else None, epochs)
                batches.set_epoch(
                    self.step // steps_per_epoch, start=(self.step % steps_per_epoch) * tc.num_accum
                )
                micro: list[torch.Tensor] = []
                for x in loader:
                    micro.append(x)
                    if len(micro) < tc.num_accum:
                        continue
                    pending.append(self.train_step(micro))
                    micro = []
                    if len(pending) >= self.log_every:
                        self._flush(pending, log, steps_per_epoch)
                    if self.step % steps_per_epoch == 0 or self.step == total:
                        break
                self._flush(pending, log, steps_per_epoch)
                epoch = math.ceil(self.step / steps_per_epoch)
                at_epoch_end = self.step % steps_per_epoch == 0
                end = self.step == total
                if (at_epoch_end and epoch % tc.chkpt_intv == 0) or end:
                    self.save(epoch)
                if grids and ((at_epoch_end and epoch % tc.image_intv == 0) or end):
                    self.save_samples(epoch)
        finally:
            if log is not None:
                log.close()
        barrier(self.dist)
        return self.last_checkpoint

    def _begin_epoch(self, epoch: int, log: RunLog | None, epochs: int) -> None:
        """The stage of 0-based ``epoch``; on a change, the CS mask regrows. Logged to ``log`` (None
        when resuming inside the epoch, whose row the log has)."""
        before = self.sampler.stage
        self.sampler.begin_epoch(epoch)
        stage = self.sampler.stage
        regrown = 0
        if stage != before:
            g = torch.Generator().manual_seed(step_seed(self.cfg.train.seed, stage, "regrowth"))
            regrown = self.modes.enter_stage(stage, g)
        if log is not None and log.epoch_log:
            row = self.modes.epoch_row(epoch + 1, stage, self.sampler.t_range, regrown)
            log.write_epoch(row, self.modes.describe(row, epochs))

    def _flush(self, pending: list[StepRecord], log: RunLog | None, steps_per_epoch: int) -> None:
        """Read the pending losses (one host sync), stop on NaN/inf, log them (rank 0)."""
        if not pending:
            return
        losses, mses, regs = torch.stack([torch.stack([r.loss, r.mse, r.reg]) for r in pending]).T.tolist()
        for r, loss in zip(pending, losses):
            if not math.isfinite(loss):
                last = self.last_checkpoint
                kept = f"the last good checkpoint {last} is kept" if last else "no checkpoint was written"
                raise UserError(
                    f"training stopped: the loss is {loss} at step {r.step} "
                    f"(epoch {r.step // steps_per_epoch + 1}); {kept}; "
                    f"lower train.lr (now {self.cfg.train.lr:g}) or check the data"
                )
        self._loss_sum += sum(losses)
        self._loss_count += len(losses)
        if log is not None:
            log.write(
                [
                    (r.step, r.step // steps_per_epoch + 1, loss, r.lr, r.stage, r.t_lo, r.t_hi, mse, reg)
                    for r, loss, mse, reg in zip(pending, losses, mses, regs)
                ]
            )
        pending.clear()

    # checkpoints ---------------------------------------------------------------------------
    def state_dict(self, epoch: int, when: datetime | None = None) -> dict[str, Any]:
        """The checkpoint: ddpm-torch's keys, the study's curriculum keys, config, sampler state,
        step and version."""
        cur = self.cfg.curriculum
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "curriculum_stage": self.sampler.stage if cur is not None else -1,
            "curriculum_config": self.cfg.to_dict()["curriculum"] if cur is not None else {"stages": []},
            "timestamp": (when or datetime.now()).strftime("%Y%m%d_%H%M%S"),
            "epoch": epoch,
            "loss": self._loss_sum / self._loss_count if self._loss_count else math.nan,
            "config": self.cfg.to_dict(),
            "sampler": self.sampler.state_dict(),
            "step": self.step,
            "ddpm_lens_version": __version__,
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def save(self, epoch: int) -> Path | None:
        """Write a checkpoint (rank 0; others return None); refuses weights that are not finite."""
        if not is_main(self.dist):
            return None
        finite = torch.stack([p.detach().isfinite().all() for p in self.model.parameters()]).all()
        if not finite:
            raise UserError(
                f"training stopped: the weights are not finite after step {self.step}; the last good "
                f"checkpoint is {self.last_checkpoint or 'none'}; lower train.lr (now {self.cfg.train.lr:g})"
            )
        when = datetime.now()
        path = self.run_dir / checkpoint_name(self.name, epoch, when)
        save_checkpoint(
            self.state_dict(epoch, when), path, fix="free some space or pass a --chkpt-dir on another disk"
        )
        self.last_checkpoint = path
        self._loss_sum, self._loss_count = 0.0, 0
        return path

    def load(self, path: str | os.PathLike) -> None:
        """Continue from a checkpoint written by :meth:`save` (same model, diffusion, curriculum)."""
        ckpt = read_checkpoint(path)
        needed = ("model", "optimizer", "scheduler", "step", "sampler", "config")
        missing = [k for k in needed if k not in ckpt] if isinstance(ckpt, dict) else list(needed)
        if missing:
            raise UserError(
                f"checkpoint {path} is not a ddpm-lens training checkpoint (no '{missing[0]}'); "
                "resume from a file written by ddpm-lens train"
            )
        ours = self.cfg.to_dict()
        for section in RESUME_SECTIONS:
            theirs = ckpt["config"].get(section) or {}
            mine = ours.get(section) or {}
            for key in sorted(set(theirs) | set(mine)):
                if theirs.get(key) != mine.get(key):
                    raise UserError(
                        f"checkpoint {path} was trained with {section}.{key}={theirs.get(key)} but the "
                        f"config has {mine.get(key)}: resume with the run's config "
                        f"({Path(path).parent / 'config.json'})"
                    )
        self.model.load_state_dict(strip_prefixes(ckpt["model"]))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.ema is not None:
            if "ema" not in ckpt:
                raise UserError(f"checkpoint {path} has no EMA weights but train.use_ema is true")
            self.ema.load_state_dict(ckpt["ema"])
        if self.scaler is not None and "scaler" in ckpt:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.sampler.load_state_dict(ckpt["sampler"])
        self.step = int(ckpt["step"])
        self.last_checkpoint = Path(path)

    # sample grids --------------------------------------------------------------------------
    @torch.no_grad()
    def save_samples(self, epoch: int) -> Path | None:
        """``samples_<epoch>.png``: a grid of EMA samples (DDIM, 50 steps, noise seeded by train.seed)."""
        if not is_main(self.dist):
            return None
        tc, res = self.cfg.train, self.cfg.dataset.resolution
        weights = self.ema.shadow if self.ema is not None else dict(self.model.named_parameters())
        self.model.eval()
        try:
            images = self.diffusion.sample(
                lambda x, t: torch.func.functional_call(self.model, weights, (x, t)),
                (tc.num_samples, self.cfg.model.in_channels, res, res),
                generator=torch.Generator(device=self.device).manual_seed(tc.seed),
                sampler="ddim",
                steps=min(SAMPLE_STEPS, self.cfg.diffusion.timesteps),
                device=self.device,
            )  # (N, C, R, R)
        finally:
            self.model.train()
        path = self.run_dir / f"samples_{epoch}.png"
        with atomic_path(path) as tmp:
            Image.fromarray(image_grid(to_uint8(images))).save(tmp, format="PNG")
        return path
