import numpy as np

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
