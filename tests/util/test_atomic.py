import errno
import os
import stat
import tempfile

import pytest

from ddpm_lens.util.atomic import atomic_path, check_writable, write_text
from ddpm_lens.util.errors import UserError


def test_replaces_whole_files_with_normal_permissions(tmp_path):
    path = tmp_path / "sub" / "f.txt"
    write_text(path, "one")
    write_text(path, "two", fsync=False)
    assert path.read_text() == "two"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600
    assert os.listdir(path.parent) == ["f.txt"]


def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "f.txt"
    write_text(path, "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_an_os_error_without_a_file_name_gets_the_path(tmp_path):
    path = tmp_path / "f.txt"
    with pytest.raises(OSError) as info, atomic_path(path) as tmp:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what write() raises on a full disk
    assert info.value.filename == str(path) and os.listdir(tmp_path) == []


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_check_writable_is_a_one_line_error_naming_the_flag(tmp_path, monkeypatch, code):
    assert check_writable(tmp_path / "new" / "dir", flag="--output_dir") == tmp_path / "new" / "dir"
    assert os.listdir(tmp_path) == []  # nothing created, the probe removed
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot write to --output .*file/sub"):
        check_writable(tmp_path / "file" / "sub", flag="--output")

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(UserError, match=f"cannot write to --output_dir {tmp_path}: {os.strerror(code)}"):
        check_writable(tmp_path, flag="--output_dir")


def _full_disk_write(tmp, *, exc):
    """A writer that gets half its bytes onto the disk, then fails as a full disk makes it."""
    tmp.write_bytes(b"x" * 1000)
    raise exc


@pytest.mark.parametrize(
    "exc",
    [OSError(errno.ENOSPC, "No space left on device"), RuntimeError("PytorchStreamWriter failed writing")],
)
def test_a_full_disk_is_one_line_naming_the_file_and_the_space(tmp_path, monkeypatch, exc):
    from ddpm_lens.util import atomic

    monkeypatch.setattr(atomic, "free_space", lambda path: 3 * 2**20)
    target = tmp_path / "ckpt.pt"
    full = atomic.disk_full_reported(target, needed=5 * 2**20, fix="free some space")
    with pytest.raises(UserError) as err, full, atomic_path(target) as tmp:
        _full_disk_write(tmp, exc=exc)
    assert str(err.value) == (
        f"no space left on the device while writing {target}: it needs about 5.0 MB, 3.0 MB free; "
        "free some space (nothing was written)"
    )
    assert list(tmp_path.iterdir()) == []  # the temp file went with the failure


def test_other_errors_pass_through(tmp_path, monkeypatch):
    from ddpm_lens.util import atomic

    monkeypatch.setattr(atomic, "free_space", lambda path: 10 * 2**20)  # room enough: not a full disk
    for exc in (RuntimeError("a bug"), OSError(errno.EIO, "I/O error")):
        with pytest.raises(type(exc)), atomic.disk_full_reported(tmp_path / "f", needed=2**20, fix="-"):
            raise exc
