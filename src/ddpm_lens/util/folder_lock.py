"""One run at a time in an output folder: an exclusive ``fcntl.flock`` on ``FOLDER/.ddpm-lens.lock``.

The lock file holds the pid of the run that has it, so a second run is told which process
to wait for. The kernel drops the lock when its process dies (even by SIGKILL), so a stale
lock file never blocks anyone; the holder removes the file when it lets go. On a filesystem that
has no locks (some network mounts answer ``flock`` with ENOLCK or EOPNOTSUPP) the run goes on
unlocked, with a warning that a concurrent run into the folder would not be noticed.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ddpm_lens.util.errors import UserError, warn

LOCK_NAME = ".ddpm-lens.lock"


class FolderLock:
    """``with FolderLock(folder, flag="--output_dir"):`` (``folder`` must exist); a UserError
    naming the other run's pid when another process holds it."""

    def __init__(self, folder: Path, *, flag: str):
        self.path, self.flag, self.fd = Path(folder) / LOCK_NAME, flag, None

    def __enter__(self) -> FolderLock:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise UserError(
                    f"cannot write to {self.flag} {self.path.parent}: {exc.strerror}; "
                    "pass a folder you can write to"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise UserError(
                    f"{self.flag} {self.path.parent} is in use by another ddpm-lens run (pid {pid}): "
                    f"wait for it to finish, or pass another {self.flag}"
                ) from None
            except OSError as exc:  # no locks on this filesystem: go on, and say what is lost
                os.close(fd)
                self.path.unlink(missing_ok=True)  # its pid would mean nothing
                warn(
                    f"cannot lock {self.flag} {self.path.parent} ({exc.strerror}): another run into "
                    "this folder at the same time would not be noticed; run one at a time"
                )
                return self
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else the holder removed the file between our open and our lock: again
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # before the unlock: see the inode check above
            os.close(self.fd)
            self.fd = None
