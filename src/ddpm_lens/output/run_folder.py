"""The run's output folder: checked before any work, where each figure goes, and what a run
wrote into it (so that a run that fails on a full disk can take back exactly that)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from ddpm_lens.util.atomic import check_writable
from ddpm_lens.util.errors import UserError

# The visualizer's PNGs: inputs per sample, one comparison figure per condition and layer.
FIGURE_GLOBS = ("sample_*/input_*.png", "sample_*/*/*_baseline_vs_curriculum.png")


def figure_path(sample: int, condition: str, layer: str) -> str:
    return f"sample_{sample}/{condition}/{layer}_baseline_vs_curriculum.png"


def figure_files(out: Path) -> list[str]:
    """Every visualizer PNG in ``out`` (relative POSIX paths, sorted), whichever run drew it."""
    return sorted({p.relative_to(out).as_posix() for pattern in FIGURE_GLOBS for p in out.glob(pattern)})


def check_output_dir(out_dir: str | os.PathLike) -> Path:
    """``out_dir``, created if needed, once a file can be written in it (else a UserError)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--output_dir {out} is a file: pass a folder path")
    check_writable(out, flag="--output_dir")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create --output_dir {out}: {exc.strerror}") from None
    return out


@dataclass
class Snapshot:
    """The files and folders under ``out`` before a run: (inode, mtime) per file."""

    out: Path
    files: dict[str, tuple[int, int]]
    dirs: set[str]

    @classmethod
    def take(cls, out: Path) -> Snapshot:
        files, dirs = {}, set()
        for p in out.rglob("*"):
            rel = p.relative_to(out).as_posix()
            if p.is_dir():
                dirs.add(rel)
            elif p.is_file():
                st = p.stat()
                files[rel] = (st.st_ino, st.st_mtime_ns)
        return cls(out, files, dirs)

    def written(self) -> dict[str, int]:
        """Files created or replaced since the snapshot (atomic writes give a new inode): size per path."""
        now = Snapshot.take(self.out)
        return {
            rel: (self.out / rel).stat().st_size
            for rel, key in now.files.items()
            if self.files.get(rel) != key
        }

    def remove_written(self) -> int:
        """Remove what was written since the snapshot, and the folders made for it; how many files."""
        written = self.written()
        for rel in written:
            (self.out / rel).unlink(missing_ok=True)
        now = Snapshot.take(self.out)
        for rel in sorted(now.dirs - self.dirs, key=lambda d: d.count("/"), reverse=True):
            with contextlib.suppress(OSError):  # not empty: holds something this run did not write
                (self.out / rel).rmdir()
        return len(written)
