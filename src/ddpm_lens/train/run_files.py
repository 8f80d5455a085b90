"""The files of a training run on disk: the per-step log, and finding the checkpoint to resume.

Everything under ``<chkpt_dir>/<name>/`` that is not a checkpoint's contents: the CSV log
(and TensorBoard scalars when installed), the progress bar that mirrors it, and the rules
for starting afresh or resuming (newest complete checkpoint; temp files of interrupted saves
are removed).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from tqdm.auto import tqdm

from ddpm_lens.core.checkpoint import parse_epoch, read_checkpoint
from ddpm_lens.util.atomic import write_text
from ddpm_lens.util.errors import UserError, warn

LOG_FIELDS = ("step", "epoch", "loss", "lr", "stage", "t_lo", "t_hi")


class RunLog:
    """Rank 0's per-step CSV, optional TensorBoard scalars, and the progress bar."""

    def __init__(self, run_dir: Path, *, start_step: int, total_steps: int, progress: bool, desc: str):
        self.path = run_dir / "train_log.csv"
        kept = _log_rows_before(self.path, start_step)
        write_text(self.path, "".join(",".join(map(str, r)) + "\n" for r in [LOG_FIELDS, *kept]))
        self._file = open(self.path, "a", newline="")  # noqa: SIM115 - closed in close()
        self._csv = csv.writer(self._file, lineterminator="\n")
        self._tb = _tensorboard(run_dir / "tensorboard")
        self._bar = tqdm(
            total=total_steps,
            initial=start_step,
            desc=desc,
            unit="step",
            disable=not progress,
            dynamic_ncols=True,
        )

    def write(self, rows: list[tuple]) -> None:
        """Rows in LOG_FIELDS order, appended and flushed."""
        self._csv.writerows(rows)
        self._file.flush()
        if self._tb is not None:
            for step, _, loss, lr, stage, _, _ in rows:
                self._tb.add_scalar("train/loss", loss, step)
                self._tb.add_scalar("train/lr", lr, step)
                self._tb.add_scalar("train/stage", stage, step)
        step, _, loss, lr, stage, _, _ = rows[-1]
        self._bar.set_postfix(step=step, loss=f"{loss:.4f}", lr=f"{lr:.2e}", stage=stage, refresh=False)
        self._bar.update(len(rows))

    def close(self) -> None:
        self._bar.close()
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _log_rows_before(path: Path, step: int) -> list[list[str]]:
    """Rows of an existing log whose step is below ``step`` (work after the resumed checkpoint is dropped)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return [r for r in rows[1:] if len(r) == len(LOG_FIELDS) and r[0].isdigit() and int(r[0]) < step]


def _tensorboard(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(log_dir))


def find_latest_checkpoint(run_dir: str | os.PathLike, name: str) -> Path | None:
    """The complete checkpoint of run ``name`` with the most steps (then epoch, then time), or None.

    Interrupted saves leave only hidden ``.tmp`` files, which never match; unreadable files are
    skipped with a warning.
    """
    best, best_key = None, None
    for path in Path(run_dir).glob(f"{name}_*.pt"):
        try:
            ckpt = read_checkpoint(path)
        except UserError as exc:
            warn(f"skipping {path}: {exc}")
            continue
        step = ckpt.get("step", -1) if isinstance(ckpt, dict) else -1
        key = (step, parse_epoch(path) or 0, path.stat().st_mtime)
        if best_key is None or key > best_key:
            best, best_key = path, key
    return best


def prepare_run_dir(
    run_dir: str | os.PathLike, name: str, *, resume: bool | str | None, main: bool
) -> Path | None:
    """The checkpoint to continue from (None: a fresh run), checking the run folder first.

    ``resume``: None/False starts afresh and refuses a folder that already holds checkpoints of
    ``name``; True picks the newest complete one; a path names the file. Rank 0 (``main``)
    removes temp files left behind by interrupted saves.
    """
    run_dir = Path(run_dir)
    if main:
        stale = list(run_dir.glob(f".{name}_*.tmp"))
        for tmp in stale:
            tmp.unlink(missing_ok=True)
        if stale:
            warn(f"removed {len(stale)} partial checkpoint file(s) left by an interrupted save in {run_dir}")
    if not resume:
        existing = sorted(run_dir.glob(f"{name}_*.pt"))
        if existing:
            raise UserError(
                f"{run_dir} already holds checkpoints of run '{name}' (e.g. {existing[-1].name}): "
                "pass --resume to continue it, or a new --name"
            )
        return None
    if resume is True:
        latest = find_latest_checkpoint(run_dir, name)
        if latest is None:
            raise UserError(f"no checkpoint of run '{name}' in {run_dir} to resume: start without --resume")
        return latest
    path = Path(resume)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found: pass an existing .pt file to --resume")
    return path
