"""Atomic file writing: readers see the old file or the whole new one, never half of one."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ddpm_lens.util.errors import UserError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # the errnos of a write that found no space


@contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success (fsync it and) rename it onto ``path``.

    The rename makes the write atomic against crashes of the process; ``fsync`` also makes
    it durable against power loss (checkpoints want that; figures that can be redrawn don't).

    On any exception the temp file is removed and ``path`` is untouched; an ``OSError`` that
    names no file (a full disk during ``write``) is given ``path`` as its ``filename``::

        with atomic_path("out/figure.png") as tmp:
            image.save(tmp, format="PNG")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 (or a writer's own) -> like any new file
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            exc.filename = str(path)
        raise


def write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> None:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str, *, fsync: bool = True) -> None:
    write_bytes(path, text.encode("utf-8"), fsync=fsync)


def mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def free_space(path: str | os.PathLike) -> int:
    """Bytes free on the disk that holds ``path`` (or the nearest folder of it that exists)."""
    path = Path(path).absolute()
    return shutil.disk_usage(next(p for p in (path, *path.parents) if p.exists())).free


def no_space_error(path: str | os.PathLike, *, needed: float, fix: str) -> UserError:
    """The one line for a full disk: the file, the space it needs and what is free."""
    return UserError(
        f"no space left on the device while writing {path}: it needs about {mb(needed)}, "
        f"{mb(free_space(Path(path).parent))} free; {fix} (nothing was written)"
    )


@contextmanager
def disk_full_reported(path: str | os.PathLike, *, needed: float, fix: str) -> Iterator[None]:
    """Around an :func:`atomic_path` write of about ``needed`` bytes to ``path``: a full disk
    becomes :func:`no_space_error`'s one line (``fix`` says what to do). A full disk is an
    ``OSError`` with a :data:`DISK_FULL` errno, or another error raised while less than
    ``needed`` is free (``torch.save``'s zip writer reports a short write as a ``RuntimeError``,
    safetensors as a ``SafetensorError``)."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno not in DISK_FULL:
            raise
        if not isinstance(exc, OSError) and free_space(Path(path).parent) >= needed:
            raise
        raise no_space_error(path, needed=needed, fix=fix) from None


def check_writable(folder: str | os.PathLike, *, flag: str) -> Path:
    """Make sure files can be written in ``folder`` (or, if it does not exist yet, in the
    folder it would be created in), before any work; nothing is left behind.

    A read-only file system (EROFS), a folder without write permission (EACCES, EPERM) or a
    path through a file is a one-line :class:`UserError` naming ``flag`` and the folder.
    """
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".ddpm-lens-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(
            f"cannot write to {flag} {folder}: {exc.strerror or exc}; pass a folder you can write to"
        ) from None
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
