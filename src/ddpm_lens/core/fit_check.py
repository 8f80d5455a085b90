"""Does a state dict fit an architecture? A mismatch is one line naming the missing,
unexpected and mis-shaped keys and the config values the weights imply."""

from __future__ import annotations

import re
from typing import Any

import torch

from ddpm_lens.util.errors import UserError


def infer_model_config(state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Model settings a ddpm-torch UNet state dict implies (for mismatch messages)."""
    out: dict[str, Any] = {}
    pw = state_dict.get("patch_embed.proj.weight")
    if pw is not None and pw.dim() == 4:  # a U-ViT (core/uvit.py)
        blocks = {m.group(1) for k in state_dict if (m := re.match(r"in_blocks\.(\d+)\.", k))}
        return {
            "embed_dim": int(pw.shape[0]),
            "in_chans": int(pw.shape[1]),
            "patch_size": int(pw.shape[2]),
            "depth": 2 * len(blocks),
            "mlp_time_embed": "time_embed.0.weight" in state_dict,
        }
    w = state_dict.get("in_conv.weight")
    if w is None or w.dim() != 4:
        return out
    hid = w.shape[0]
    out.update(in_channels=int(w.shape[1]), hid_channels=int(hid))
    levels = sorted(
        {int(m.group(1)) for k in state_dict if (m := re.match(r"downsamples\.level_(\d+)\.", k))}
    )
    mults, attn = [], []
    for i in levels:
        convs = [k for k in state_dict if re.match(rf"downsamples\.level_{i}\.0\.(0\.)?conv1\.weight$", k)]
        if convs:
            mults.append(int(state_dict[convs[0]].shape[0] // hid))
        attn.append(any(k.startswith(f"downsamples.level_{i}.") and ".project_in." in k for k in state_dict))
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"downsamples\.level_0\.(\d+)\.", k))}
    has_down = any(re.match(r"downsamples\.level_0\.\d+\.1\.weight$", k) for k in state_dict)
    out.update(ch_multipliers=mults, apply_attn=attn, num_res_blocks=len(blocks) - (1 if has_down else 0))
    return out


def check_fit(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], *, ckpt: str, config: str) -> None:
    """Raise a one-line UserError describing how ``state_dict`` fails to fit ``model``."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state_dict.items()}
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [
        f"{k}: checkpoint {list(got[k])} vs model {list(expected[k])}"
        for k in expected
        if k in got and got[k] != expected[k]
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:2])})")
    hint = infer_model_config(state_dict)
    fix = (
        (
            "; the checkpoint fits model settings "
            + ", ".join(f"{k}={v}" for k, v in hint.items())
            + f" — set them in the 'model' section of {config}"
        )
        if hint
        else ""
    )
    raise UserError(f"checkpoint {ckpt} does not fit config {config}: {'; '.join(parts)}{fix}")
