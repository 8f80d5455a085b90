"""ddpm-lens: train, load and look inside baseline and curriculum DDPMs.

Public API (see README):

- ``load_model(config_path, ckpt_path, use_ema=True, device="cpu") -> (model, diffusion, config)``
- ``extract_features(model, x, t, layers) -> dict[str, Tensor]``
- ``compare_features(...)``: both models' activations and statistics in memory.
"""

__version__ = "0.1.0"

from ddpm_lens import _moved  # noqa: E402  old module paths, for one release

_moved.install()

_LAZY = {
    "load_model": "ddpm_lens.core.checkpoint",
    "extract_features": "ddpm_lens.core.features",
    "compare_features": "ddpm_lens.analysis.compare",
}


def __getattr__(name):
    # Lazy so that ``import ddpm_lens`` (and the CLI's --help) does not import torch.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ddpm_lens' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
