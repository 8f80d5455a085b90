import os
import stat

import pytest

from ddpm_lens.util.atomic import atomic_path, write_text


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
