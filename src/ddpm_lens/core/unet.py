"""The DDPM UNet, with ddpm-torch's parameter names so its checkpoints load with strict=True.

Layout for L = len(ch_multipliers) levels and R = num_res_blocks::

    embed            timestep MLP (hid -> 4 hid -> 4 hid)
    in_conv          3x3 conv, in_channels -> hid
    downsamples.level_i[0..R-1]   residual blocks (each followed by attention where apply_attn[i])
    downsamples.level_i[R]        downsample, for every level but the last
    middle           residual block, attention, residual block
    bottleneck_mask  no weights: multiplies the middle's output by a channel mask (CS models) or passes it
    upsamples.level_i[0..R]       residual blocks on [h, skip] (attention as in the encoder)
    upsamples.level_i[R+1]        nearest x2 upsample (+ 3x3 conv), for every level but the first
    out_conv         GroupNorm, SiLU, 3x3 conv

:func:`layer_table` is the project's one map from study layer names (``in_conv``,
``encoder_block_i``, ``encoder_level_i``, ``bottleneck``, ``bottleneck_masked``,
``decoder_block_i``, ``decoder_level_i``, ``output``) to module paths.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ddpm_lens.core.any_model import module_layer_channels, module_layer_table
from ddpm_lens.core.config import ModelConfig, SparsityConfig
from ddpm_lens.core.nn import SamePad2d, conv1x1, conv3x3, group_norm, linear, timestep_embedding
from ddpm_lens.core.uvit import UViT, UViTConfig, build_uvit, uvit_layer_channels, uvit_layer_table


class ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, *, emb_dim: int, drop_rate: float):
        super().__init__()
        self.norm1 = group_norm(c_in)
        self.conv1 = conv3x3(c_in, c_out)
        self.fc = linear(emb_dim, c_out)
        self.norm2 = group_norm(c_out)
        self.dropout = nn.Dropout(drop_rate)
        self.conv2 = conv3x3(c_out, c_out, scale=0.0)
        self.skip = conv1x1(c_in, c_out) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in, H, W); t_emb: (B, emb_dim) -> (B, C_out, H, W)
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.fc(F.silu(t_emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class AttentionBlock(nn.Module):
    """Single-head self-attention over all H*W positions, with an identity skip."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.project_in = conv1x1(channels, 3 * channels)
        self.project_out = conv1x1(channels, channels, scale=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.project_in(self.norm(x)).reshape(b, 3 * c, h * w).chunk(3, dim=1)  # (B, C, HW) each
        # (B, 1, HW, C): one head; logits q.k / sqrt(C), softmax over key positions
        out = F.scaled_dot_product_attention(*(z.transpose(1, 2)[:, None] for z in (q, k, v)))
        out = out[:, 0].transpose(1, 2).reshape(b, c, h, w)
        return x + self.project_out(out)


class TimestepSequential(nn.Sequential):
    """A Sequential whose residual blocks also receive the timestep embedding."""

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, t_emb) if isinstance(layer, (ResidualBlock, TimestepSequential)) else layer(x)
        return x


def _block(c_in: int, c_out: int, *, attn: bool, emb_dim: int, drop_rate: float) -> nn.Module:
    res = ResidualBlock(c_in, c_out, emb_dim=emb_dim, drop_rate=drop_rate)
    return TimestepSequential(res, AttentionBlock(c_out)) if attn else res


def _downsample(channels: int, with_conv: bool) -> nn.Module:
    if with_conv:
        return nn.Sequential(SamePad2d(3, 2), conv3x3(channels, channels, stride=2, padding=0))
    return nn.AvgPool2d(2, 2)


def _upsample(channels: int, with_conv: bool) -> nn.Module:
    up = nn.Upsample(scale_factor=2, mode="nearest")
    return nn.Sequential(up, conv3x3(channels, channels)) if with_conv else up


class BottleneckMask(nn.Module):
    """Where a channel mask meets the middle block's output: ``h * mask`` per channel, or ``h``.

    It has no state of its own (a CS model keeps its mask as the model's buffer ``channel_mask``,
    where the study's checkpoints have it); it exists so that ``bottleneck_masked`` can be tapped.
    """

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # h: (B, C, H, W); mask: (C,) of 0/1 or None
        return h if mask is None else h * mask.view(1, -1, 1, 1).to(h.dtype)


class UNet(nn.Module):
    """Noise-prediction UNet: ``forward(x (B, C, H, W), t (B,) int) -> (B, out_channels, H, W)``."""

    def __init__(
        self,
        *,
        in_channels: int = 3,
        hid_channels: int = 128,
        out_channels: int | None = None,
        ch_multipliers=(1, 2, 2, 2),
        num_res_blocks: int = 2,
        apply_attn=(False, False, True, False),
        drop_rate: float = 0.0,
        resample_with_conv: bool = True,
    ):
        super().__init__()
        self.in_channels, self.hid_channels = in_channels, hid_channels
        self.out_channels = out_channels or in_channels
        self.ch_multipliers, self.num_res_blocks = tuple(ch_multipliers), num_res_blocks
        self.apply_attn = tuple(apply_attn)
        levels = len(self.ch_multipliers)
        emb_dim = 4 * hid_channels
        kw = {"emb_dim": emb_dim, "drop_rate": drop_rate}

        self.embed = nn.Sequential(linear(hid_channels, emb_dim), nn.SiLU(), linear(emb_dim, emb_dim))
        self.in_conv = conv3x3(in_channels, hid_channels)

        skips = [hid_channels]  # channels of every tensor the encoder hands to the decoder
        ch = hid_channels
        self.downsamples = nn.ModuleDict()
        for i, mult in enumerate(self.ch_multipliers):
            blocks: list[nn.Module] = []
            for _ in range(num_res_blocks):
                blocks.append(_block(ch, hid_channels * mult, attn=self.apply_attn[i], **kw))
                ch = hid_channels * mult
                skips.append(ch)
            if i != levels - 1:
                blocks.append(_downsample(ch, resample_with_conv))
                skips.append(ch)
            self.downsamples[f"level_{i}"] = nn.Sequential(*blocks)

        self.middle = TimestepSequential(
            ResidualBlock(ch, ch, **kw), AttentionBlock(ch), ResidualBlock(ch, ch, **kw)
        )
        self.bottleneck_mask = BottleneckMask()

        self.upsamples = nn.ModuleDict()
        for i in reversed(range(levels)):
            mult = self.ch_multipliers[i]
            blocks = []
            for _ in range(num_res_blocks + 1):
                blocks.append(_block(ch + skips.pop(), hid_channels * mult, attn=self.apply_attn[i], **kw))
                ch = hid_channels * mult
            if i != 0:
                blocks.append(_upsample(ch, resample_with_conv))
            self.upsamples[f"level_{i}"] = nn.Sequential(*blocks)
        # ModuleDict keeps insertion order; state_dict order follows ddpm-torch (level_0 first).
        self.upsamples = nn.ModuleDict({f"level_{i}": self.upsamples[f"level_{i}"] for i in range(levels)})

        self.out_conv = nn.Sequential(group_norm(ch), nn.SiLU(), conv3x3(ch, self.out_channels, scale=0.0))

    def channel_mask_or_none(self) -> torch.Tensor | None:
        """The bottleneck's channel mask (C,), or None: a plain UNet masks nothing."""
        return None

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_multipliers) - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.downsample_factor or x.shape[-2] % self.downsample_factor:
            raise ValueError(f"image size {tuple(x.shape[-2:])} is not divisible by {self.downsample_factor}")
        t_emb = self.embed(timestep_embedding(t, self.hid_channels))  # (B, 4 hid)
        h = self.in_conv(x)
        hs = [h]
        for level in self.downsamples.values():
            for layer in level:
                h = _call(layer, h, t_emb)
                hs.append(h)
        h = self.bottleneck_mask(self.middle(h, t_emb), self.channel_mask_or_none())
        for i in reversed(range(len(self.ch_multipliers))):
            for j, layer in enumerate(self.upsamples[f"level_{i}"]):
                if j <= self.num_res_blocks:
                    h = layer(torch.cat([h, hs.pop()], dim=1), t_emb)
                else:
                    h = layer(h)
        return self.out_conv(h)


def _call(layer: nn.Module, h: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
    return layer(h, t_emb) if isinstance(layer, (ResidualBlock, TimestepSequential)) else layer(h)


def build_unet(cfg: ModelConfig, *, sparsity: SparsityConfig | None = None, mask_seed: int = 0) -> UNet:
    """The UNet of ``cfg``; with an enabled ``sparsity`` section the study's CS model
    (:class:`~ddpm_lens.core.sparse_unet.SparseUNet`), its initial mask drawn from ``mask_seed``.
    A :class:`~ddpm_lens.core.uvit.UViTConfig` gives the study's U-ViT (its CS mask is no module
    state: the trainer sets ``token_sparsity`` per stage)."""
    if isinstance(cfg, UViTConfig):
        return build_uvit(cfg)
    kwargs = {
        "in_channels": cfg.in_channels,
        "hid_channels": cfg.hid_channels,
        "out_channels": cfg.out_channels,
        "ch_multipliers": cfg.ch_multipliers,
        "num_res_blocks": cfg.num_res_blocks,
        "apply_attn": cfg.apply_attn,
        "drop_rate": cfg.drop_rate,
        "resample_with_conv": cfg.resample_with_conv,
    }
    if sparsity is None:
        return UNet(**kwargs)
    from ddpm_lens.core.sparse_unet import SparseUNet  # it subclasses UNet

    return SparseUNet(initial_sparsity=sparsity.initial_sparsity, mask_seed=mask_seed, **kwargs)


def layer_table(model: UNet) -> dict[str, str]:
    """Study layer name -> module path, in the order the forward pass produces them.

    As the study's ``FeatureExtractor`` hooks them: ``encoder_level_i`` is the *last module* of
    down level i, i.e. its downsample where it has one (half the level's resolution), else its
    last residual block; ``decoder_level_i`` is likewise the last module of up level i (its
    upsample where present). ``encoder_block_i`` / ``decoder_block_i`` are the level's last
    residual block (after its attention where the level has one), at the level's resolution.
    ``bottleneck`` is the middle block's output, before any CS channel mask;
    ``bottleneck_masked`` is after it (the same values for a model without a mask). ``output``
    is the final conv stack. Where two names share a module they stay adjacent, in this order.

    A U-ViT has its own table (:func:`~ddpm_lens.core.uvit.uvit_layer_table`: ``patch_embed``,
    ``in_block_i``, ``mid_block``, ``out_block_i``, ``final``); any other module, the table of
    the names it was given (:func:`~ddpm_lens.core.any_model.module_layer_table`).
    """
    if isinstance(model, UViT):
        return uvit_layer_table(model)
    if not isinstance(model, UNet):
        return module_layer_table(model)
    r = model.num_res_blocks
    levels = len(model.ch_multipliers)
    table = {"in_conv": "in_conv"}
    for i in range(levels):
        last = len(model.downsamples[f"level_{i}"]) - 1
        table[f"encoder_block_{i}"] = f"downsamples.level_{i}.{r - 1}"
        table[f"encoder_level_{i}"] = f"downsamples.level_{i}.{last}"
    table["bottleneck"] = "middle"
    table["bottleneck_masked"] = "bottleneck_mask"
    for i in reversed(range(levels)):
        last = len(model.upsamples[f"level_{i}"]) - 1
        table[f"decoder_block_{i}"] = f"upsamples.level_{i}.{r}"
        table[f"decoder_level_{i}"] = f"upsamples.level_{i}.{last}"
    table["output"] = "out_conv"
    return table


def layer_channels(model: UNet) -> dict[str, int]:
    """Output channels of each named layer (same keys as :func:`layer_table`); resampling keeps them."""
    if isinstance(model, UViT):
        return uvit_layer_channels(model)
    if not isinstance(model, UNet):
        return module_layer_channels(model)
    out = {}
    for name in layer_table(model):
        if name.startswith(("encoder_", "decoder_")):
            out[name] = model.hid_channels * model.ch_multipliers[int(name.rsplit("_", 1)[1])]
        elif name.startswith("bottleneck"):
            out[name] = model.hid_channels * model.ch_multipliers[-1]
        else:
            out[name] = model.hid_channels if name == "in_conv" else model.out_channels
    return out


def iter_layers(model: UNet) -> Iterator[tuple[str, nn.Module]]:
    """(study name, module) pairs in forward order."""
    modules = dict(model.named_modules())
    for name, path in layer_table(model).items():
        yield name, modules[path]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
