"""U-ViT (Bao et al., CVPR 2023), as the study's ``sun-messi/U-VIT-CS`` ``libs/uvit.py`` defines it.

A ViT over patch tokens with the timestep as one more token and long skips from the first half
of the blocks to the second. Parameter names and shapes are the study's, so its
``ckpts/<step>.ckpt/nnet.pth`` and ``nnet_ema.pth`` (bare state dicts) load with strict keys::

    patch_embed.proj          Conv2d(in_chans, D, p, stride p)     image -> (B, L, D) tokens
    time_embed.{0,2}          Linear D->4D, SiLU, Linear 4D->D     (only with mlp_time_embed)
    label_emb                 Embedding(num_classes, D)            (only with num_classes > 0)
    pos_embed                 (1, extras + L, D)                   extras: time token (+ label token)
    in_blocks.i, mid_block    pre-norm blocks: norm1, attn.{qkv,proj}, norm2, mlp.{fc1,fc2}
    out_blocks.i              the same plus skip_linear (2D -> D) on [x, skip of in_blocks.(n-1-i)]
    norm, decoder_pred        LayerNorm, Linear D -> p*p*in_chans, unpatchified (p1 p2 C order)
    final_layer               Conv2d(in_chans, in_chans, 3, padding 1) (conv=True) else identity

The forward takes ``(x, t)`` with x in [-1, 1] and t the DDPM timestep (0..T-1): the study's
``ScoreModel`` calls ``nnet(x_t, t * 999)`` with continuous t in [0, 1], which is our integer t
(its VPSDE with beta 0.1..20 is the continuous form of the linear 1e-4..0.02 schedule, T=1000).
It predicts the noise (``pred='noise_pred'``) or x_0 (``'x0_pred'``).

CS on U-ViT (the study's ``train_c.py``): during training, the patch tokens' embedding
dimensions after ``int(D (1 - sparsity))`` are zeroed (a prefix of the dimensions stays
active; ``token_sparsity`` here, set per stage by the trainer); evaluation and sampling use
every dimension, as the study's inference mode does. It is not part of the state dict.

Layer taps (:func:`uvit_layer_table`): the blocks' outputs are token sequences (B, extras + L, D);
:meth:`UViT.tokens_to_map` drops the time (and label) token and lays the L patch tokens out as
(B, D, H/p, W/p) maps, so every figure and statistic made for UNet feature maps applies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UViTConfig:
    """The ``nnet`` section of the study's U-ViT configs (``name='uvit'``), their defaults."""

    name: str = "uvit"
    img_size: int = 64
    patch_size: int = 4
    in_chans: int = 3
    embed_dim: int = 512
    depth: int = 12  # in_blocks depth // 2, one mid block, out_blocks depth // 2
    num_heads: int = 8
    mlp_ratio: float = 4.0
    qkv_bias: bool = False
    qk_scale: float | None = None
    mlp_time_embed: bool = False
    num_classes: int = -1  # > 0: a label token (class-conditional); -1: unconditional
    conv: bool = True  # final 3x3 conv
    skip: bool = True  # long skips into the out blocks

    # what the rest of the project reads from a model config
    @property
    def in_channels(self) -> int:
        return self.in_chans

    @property
    def out_channels(self) -> int:
        return self.in_chans

    @property
    def drop_rate(self) -> float:
        return 0.0


def uvit_timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) -> (B, dim): [cos(t f), sin(t f)] with f_i = max_period^(-i / half), zero-padded for odd dim."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half).to(t.device)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, qk_scale: float | None):
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        # channel layout of qkv: (3, heads, head_dim)
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # (B, H, N, hd)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block; with ``skip`` first mixes in a long skip: Linear([x, skip])."""

    def __init__(self, cfg: UViTConfig, *, skip: bool = False):
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, cfg.num_heads, cfg.qkv_bias, cfg.qk_scale)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, L, D), patches in row-major order


class UViT(nn.Module):
    def __init__(self, cfg: UViTConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_dim = cfg.embed_dim
        self.in_chans = cfg.in_chans
        self.patch_size = cfg.patch_size
        self.extras = 2 if cfg.num_classes > 0 else 1
        self.token_sparsity = 0.0  # CS: share of embedding dims masked after patch_embed (training only)
        d = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_chans, d)
        num_patches = (cfg.img_size // cfg.patch_size) ** 2
        self.time_embed = (
            nn.Sequential(nn.Linear(d, 4 * d), nn.SiLU(), nn.Linear(4 * d, d))
            if cfg.mlp_time_embed
            else nn.Identity()
        )
        if cfg.num_classes > 0:
            self.label_emb = nn.Embedding(cfg.num_classes, d)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.extras + num_patches, d))
        self.in_blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth // 2)])
        self.mid_block = Block(cfg)
        self.out_blocks = nn.ModuleList([Block(cfg, skip=cfg.skip) for _ in range(cfg.depth // 2)])
        self.norm = nn.LayerNorm(d)
        self.decoder_pred = nn.Linear(d, cfg.patch_size**2 * cfg.in_chans)
        self.final_layer = nn.Conv2d(cfg.in_chans, cfg.in_chans, 3, padding=1) if cfg.conv else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        """The study's init: truncated normal (std 0.02) linears and pos_embed, zero biases, unit norms."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02, a=-2.0, b=2.0)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def channel_mask_or_none(self) -> torch.Tensor | None:
        return None

    @property
    def downsample_factor(self) -> int:
        return self.patch_size

    def embed_mask(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
        """The CS mask over embedding dims (1 for the first int(D (1 - s)) dims), or None when off."""
        if not self.training or self.token_sparsity <= 0:
            return None
        active = max(1, min(int(self.embed_dim * (1.0 - self.token_sparsity)), self.embed_dim))
        mask = torch.zeros(self.embed_dim, dtype=dtype, device=device)
        mask[:active] = 1.0
        return mask

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {(h, w)} is not divisible by the patch size {p}")
        tokens = self.patch_embed(x)
        mask = self.embed_mask(tokens.dtype, tokens.device)
        if mask is not None:
            tokens = tokens * mask
        n = tokens.shape[1]
        time_token = self.time_embed(uvit_timestep_embedding(t, self.embed_dim)).unsqueeze(1)
        parts = [time_token.to(tokens.dtype), tokens]
        if y is not None:
            parts.insert(0, self.label_emb(y).unsqueeze(1))
        h_ = torch.cat(parts, dim=1) + self.pos_embed
        skips = []
        for blk in self.in_blocks:
            h_ = blk(h_)
            skips.append(h_)
        h_ = self.mid_block(h_)
        for blk in self.out_blocks:
            h_ = blk(h_, skips.pop())
        out = self.decoder_pred(self.norm(h_))[:, self.extras :, :]
        assert out.shape[1] == n
        gh, gw = h // p, w // p
        # (B, gh*gw, p*p*C) with channel order (p1, p2, C) -> (B, C, H, W)
        img = out.reshape(b, gh, gw, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)
        return self.final_layer(img)

    def tokens_to_map(self, out: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """A tap's output as maps: (B, extras + L, D) or (B, L, D) tokens -> (B, D, H/p, W/p)
        without the time/label tokens; image-shaped outputs (the final conv) pass unchanged."""
        if out.dim() != 3:
            return out
        n = self.pos_embed.shape[1] - self.extras
        if out.shape[1] == n + self.extras:
            out = out[:, self.extras :, :]
        side = grid or (math.isqrt(out.shape[1]),) * 2
        return out.transpose(1, 2).reshape(out.shape[0], out.shape[2], *side)


def build_uvit(cfg: UViTConfig) -> UViT:
    return UViT(cfg)


def uvit_layer_table(model: UViT) -> dict[str, str]:
    """Layer name -> module path in forward order: ``patch_embed`` (the patch tokens, before the
    time token joins), ``in_block_i``, ``mid_block``, ``out_block_i`` (after its long skip),
    ``final`` (the final conv's output: the prediction)."""
    table = {"patch_embed": "patch_embed"}
    table.update({f"in_block_{i}": f"in_blocks.{i}" for i in range(len(model.in_blocks))})
    table["mid_block"] = "mid_block"
    table.update({f"out_block_{i}": f"out_blocks.{i}" for i in range(len(model.out_blocks))})
    table["final"] = "final_layer"
    return table


def uvit_layer_channels(model: UViT) -> dict[str, int]:
    return {n: (model.in_chans if n == "final" else model.embed_dim) for n in uvit_layer_table(model)}


def uvit_seed_layers(model: UViT) -> list[str]:
    """The ``seed`` preset for U-ViT: ``patch_embed``, every ``in_block_i`` and ``mid_block`` -- the
    UNet seed's in_conv, encoder levels and bottleneck, i.e. the input side up to the middle, where
    the study's U-ViT CS mask acts (on patch_embed)."""
    return ["patch_embed", *(f"in_block_{i}" for i in range(len(model.in_blocks))), "mid_block"]
