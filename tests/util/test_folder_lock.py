"""The output folder's lock: a second holder is refused; a filesystem without locks warns and goes on."""

from __future__ import annotations

import errno
import fcntl

import pytest

from ddpm_lens.util.errors import UserError
from ddpm_lens.util.folder_lock import LOCK_NAME, FolderLock


def test_a_second_holder_is_refused_and_the_file_goes_with_the_first(tmp_path):
    with FolderLock(tmp_path, flag="--output_dir"):
        assert (tmp_path / LOCK_NAME).exists()
        fd = (tmp_path / LOCK_NAME).open("rb")
        with pytest.raises(BlockingIOError):  # the lock is really held
            fcntl.flock(fd.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        fd.close()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_filesystem_without_locks_warns_once_and_runs_unlocked(tmp_path, monkeypatch, capsys):
    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with FolderLock(tmp_path, flag="--output_dir") as lock:
        assert lock.fd is None
        assert not (tmp_path / LOCK_NAME).exists()  # no pid file that would claim a lock
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: cannot lock --output_dir")
    assert "No locks available" in err[0]


def test_an_unwritable_folder_is_a_user_error(tmp_path):
    with (
        pytest.raises(UserError, match="cannot write to --output_dir"),
        FolderLock(tmp_path / "missing", flag="--output_dir"),
    ):
        pass
