"""The files of a training run on disk: the per-step log, and finding the checkpoint to resume.

Everything under ``<chkpt_dir>/<name>/`` that is not a checkpoint's contents: the CSV logs
(per step, and per epoch for the study's modes; TensorBoard scalars when installed), the
progress bar that mirrors them, and the rules
for starting afresh or resuming (newest complete checkpoint; temp files of interrupted saves
are removed).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from tqdm.auto import tqdm

from ddpm_lens.core.checkpoint import parse_epoch, read_checkpoint
from ddpm_lens.train.study_modes import EPOCH_LOG_FIELDS
from ddpm_lens.util.atomic import check_writable, write_text
from ddpm_lens.util.errors import UserError, warn

LOG_FIELDS = ("step", "epoch", "loss", "lr", "stage", "t_lo", "t_hi", "mse", "reg")


class RunLog:
    """Rank 0's per-step CSV, optional TensorBoard scalars, and the progress bar; with ``epoch_log``
    also ``epoch_log.csv`` (EPOCH_LOG_FIELDS), whose rows are printed as they are written."""

    def __init__(
        self,
        run_dir: Path,
        *,
        start_step: int,
        total_steps: int,
        progress: bool,
        desc: str,
        start_epoch: int = 1,
        epoch_log: bool = False,
    ):
        self.path = run_dir / "train_log.csv"
        self._file, self._csv = _restart_csv(self.path, LOG_FIELDS, start_step)
        self.epoch_log = epoch_log
        epochs_csv = run_dir / "epoch_log.csv"
        self._epochs = _restart_csv(epochs_csv, EPOCH_LOG_FIELDS, start_epoch) if epoch_log else None
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
            for step, _, loss, lr, stage, _, _, mse, reg in rows:
                self._tb.add_scalar("train/loss", loss, step)
                self._tb.add_scalar("train/lr", lr, step)
                self._tb.add_scalar("train/stage", stage, step)
                if reg:
                    self._tb.add_scalar("train/mse", mse, step)
                    self._tb.add_scalar("train/reg", reg, step)
        step, _, loss, lr, stage, *_ = rows[-1]
        self._bar.set_postfix(step=step, loss=f"{loss:.4f}", lr=f"{lr:.2e}", stage=stage, refresh=False)
        self._bar.update(len(rows))

    def write_epoch(self, row: tuple, line: str) -> None:
        """One EPOCH_LOG_FIELDS row, appended and flushed, and ``line`` printed above the progress bar."""
        file, writer = self._epochs
        writer.writerow(row)
        file.flush()
        self._bar.write(line)

    def close(self) -> None:
        self._bar.close()
        self._file.close()
        if self._epochs is not None:
            self._epochs[0].close()
        if self._tb is not None:
            self._tb.close()


def _restart_csv(path: Path, header: tuple[str, ...], before: int):
    """``(file, writer)`` appending to ``path``, which keeps only the rows of an earlier run whose
    first column is below ``before`` (work after the resumed checkpoint is dropped)."""
    kept = _log_rows_before(path, before, len(header))
    write_text(path, "".join(",".join(map(str, r)) + "\n" for r in [header, *kept]))
    file = open(path, "a", newline="")  # noqa: SIM115 - closed by RunLog.close
    return file, csv.writer(file, lineterminator="\n")


def _log_rows_before(path: Path, first: int, width: int) -> list[list[str]]:
    """Rows of an existing log with ``width`` columns whose first column is below ``first``."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return [r for r in rows[1:] if len(r) == width and r[0].isdigit() and int(r[0]) < first]


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
    if main:  # a folder that cannot take checkpoints is found now, not after the first epoch
        check_writable(run_dir, flag="--chkpt-dir")
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
