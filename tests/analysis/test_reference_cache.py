import numpy as np
import pytest

from ddpm_lens.analysis import reference_cache
from ddpm_lens.analysis.reference_cache import cache_path, default_cache_dir, load_cached, store

KEY = {"dataset": "celeba", "split": "test", "resolution": 64, "n": 10, "network": {"weights_sha1": "abc"}}


def test_default_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DDPM_LENS_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("DDPM_LENS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "ddpm-lens"


def test_stored_features_come_back_only_under_their_whole_key(tmp_path):
    feats = np.random.default_rng(0).random((10, 4), dtype=np.float32)
    path = store(tmp_path, KEY, features=feats, mu=feats.mean(0), sigma=np.cov(feats, rowvar=False))
    assert path.name.startswith("celeba_test_64_10_") and path.parent.name == "fid_reference"
    back = load_cached(tmp_path, KEY)
    assert np.array_equal(back["features"], feats) and back["sigma"].shape == (4, 4)
    for change in ({"n": 11}, {"network": {"weights_sha1": "abd"}}, {"split": "valid"}):
        assert cache_path(tmp_path, {**KEY, **change}) != path
        assert load_cached(tmp_path, {**KEY, **change}) is None
    assert list(tmp_path.rglob("*.tmp")) == []


def test_a_damaged_file_is_recomputed_not_trusted(tmp_path, capsys):
    path = cache_path(tmp_path, KEY)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"truncated")
    assert load_cached(tmp_path, KEY) is None and "recomputing" in capsys.readouterr().err


def test_a_file_whose_stored_key_differs_is_not_used(tmp_path, monkeypatch):
    store(tmp_path, KEY, features=np.zeros((2, 2)), mu=np.zeros(2), sigma=np.zeros((2, 2)))
    # the same file name (as after a hash collision) but another key inside
    monkeypatch.setattr(reference_cache, "cache_path", lambda d, k: cache_path(d, KEY))
    assert load_cached(tmp_path, {**KEY, "n": 12}) is None
    assert load_cached(tmp_path, KEY) is not None


def _stored(tmp_path):
    feats = np.random.default_rng(1).random((10, 4), dtype=np.float32)
    return store(tmp_path, KEY, features=feats, mu=feats.mean(0), sigma=np.cov(feats, rowvar=False))


@pytest.mark.parametrize("damage", ["truncated", "bit-flip", "swapped-arrays"])
def test_a_damaged_entry_is_reported_in_one_line_discarded_and_not_used(tmp_path, capsys, damage):
    path = _stored(tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "truncated":  # BadZipFile, a traceback, before
        data = data[: len(data) // 2]
    elif damage == "bit-flip":  # one bit of the features' bytes
        data[data.index(b"features.npy") + 400] ^= 0x04
    path.write_bytes(bytes(data))
    if damage == "swapped-arrays":  # a whole, readable file whose numbers are not the ones stored
        with np.load(path) as z:
            arrays = dict(z)
        arrays["mu"] = arrays["mu"] + 1
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    assert load_cached(tmp_path, KEY) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "damaged" in err and "recomputing" in err
    assert not path.exists()  # discarded: the next run recomputes and stores it again
    _stored(tmp_path)
    assert load_cached(tmp_path, KEY) is not None and capsys.readouterr().err == ""


def test_a_full_disk_leaves_the_entry_uncached_with_a_one_line_warning(tmp_path, monkeypatch, capsys):
    import errno

    from ddpm_lens.util import atomic

    def disk_fills(f, **arrays):
        f.write(b"PK" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_fills)
    monkeypatch.setattr(atomic, "free_space", lambda path: 2**10)
    assert _stored(tmp_path) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no space left on the device while writing" in err
    assert "0.0 MB free" in err
    assert "--cache_dir" in err and list((tmp_path / "fid_reference").iterdir()) == []


def test_a_killed_writers_temp_file_is_removed_by_the_next_store(tmp_path):
    import os
    import time

    path = cache_path(tmp_path, KEY)
    path.parent.mkdir(parents=True)
    dead, live = path.parent / f".{path.name}.abc123.tmp", path.parent / f".{path.name}.def456.tmp"
    dead.write_bytes(b"half")  # SIGKILL mid-write, two hours ago
    os.utime(dead, (time.time() - 7200,) * 2)
    live.write_bytes(b"half")  # another run writing the same entry now
    _stored(tmp_path)
    assert not dead.exists() and live.exists() and load_cached(tmp_path, KEY) is not None
