"""A small U-Net for 32x32 images, conditioned on time and (optionally) a class.

The classic DDPM layout (Ho et al., 2020), trimmed: residual blocks whose GroupNorm is modulated
by the time(+class) embedding (scale and shift), downsampling by strided convolutions, nearest
upsampling, self-attention at the coarse resolutions, skip connections between the two halves.

    net = make_unet("default", num_classes=10)   # 6.9M parameters
    out = net(x, t, y)                           # x [B, 3, 32, 32], t [B] in [0, 1], y [B] -> [B, 3, 32, 32]

Time ``t`` is a float in [0, 1] (continuous-time lessons pass t, discrete ones pass step / T), a
tensor of shape [B] or a scalar. Its sinusoidal embedding uses ``1000 t``, the range DDPM's
embedding was designed for.

Class conditioning (``num_classes=K``) embeds ids 0..K-1 plus a *null class* ``K`` (``net.null_class``)
that stands for "no label": ``y=None`` means the null class for the whole batch. Train with labels
dropped to the null class with probability p (:func:`drop_labels`) and the same net gives both
terms of classifier-free guidance, ``eps(x, t, null) + w (eps(x, t, y) - eps(x, t, null))``.

The output has ``out_channels`` channels and no fixed meaning: the lesson's loss decides whether it
is eps, x_0 or a score. The last convolution starts at zero, so an untrained net outputs 0.

Presets (parameters with ``num_classes=None``; a class table adds (K+1) x 4*channels):

| preset | channels | mults | blocks/level | attention at | parameters |
|---|---|---|---|---|---|
| ``tiny`` | 16 | (1, 2) | 1 | none | 0.17M |
| ``small`` | 32 | (1, 2, 2) | 1 | 8x8 | 1.19M |
| ``default`` | 64 | (1, 2, 2) | 2 | 8x8 | 6.95M |
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "tiny": dict(channels=16, channel_mults=(1, 2), num_res_blocks=1, attention_levels=()),
    "small": dict(channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,)),
    "default": dict(channels=64, channel_mults=(1, 2, 2), num_res_blocks=2, attention_levels=(2,)),
}


def timestep_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal embedding of ``scale * t``: [B] -> [B, dim] (dim even)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = scale * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4), channels)


class ResBlock(nn.Module):
    """x + conv(act(norm(conv(act(norm(x)))) modulated by the embedding)). [B, C_in, H, W] -> [B, C_out, H, W]."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)  # scale and shift of the second norm
        self.norm2, self.dropout = _norm(c_out), nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions, residual. [B, C, H, W] -> same."""

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """U-Net: (x [B, in_channels, H, W], t [B] in [0, 1], y [B] int or None) -> [B, out_channels, H, W].

    ``channel_mults[i]`` sets the width at level i (resolution H / 2**i); ``attention_levels``
    lists the levels with self-attention (the middle always has one when any level does);
    H and W must be divisible by ``2 ** (len(channel_mults) - 1)``.
    """

    def __init__(self, in_channels: int = 3, out_channels: int | None = None, channels: int = 64,
                 channel_mults: tuple[int, ...] = (1, 2, 2), num_res_blocks: int = 2,
                 attention_levels: tuple[int, ...] = (1, 2), num_classes: int | None = None,
                 dropout: float = 0.0, num_heads: int = 4):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("channels", channels), ("num_res_blocks", num_res_blocks)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be None or a positive int, got {num_classes!r}")
        if any(not 0 <= lvl < len(channel_mults) for lvl in attention_levels):
            raise ValueError(f"attention_levels {attention_levels} must index channel_mults {channel_mults}")
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels, self.out_channels, self.num_classes = in_channels, out_channels, num_classes
        self.channels, self.levels = channels, len(channel_mults)
        emb_dim = 4 * channels
        self.time_mlp = nn.Sequential(nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1)

        self.down, skips, c = nn.ModuleList(), [channels], channels
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                block = nn.ModuleList([ResBlock(c, channels * mult, emb_dim, dropout)])
                c = channels * mult
                if level in attention_levels:
                    block.append(Attention(c, num_heads))
                self.down.append(block)
                skips.append(c)
            if level < len(channel_mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(c, c, 3, stride=2, padding=1)]))
                skips.append(c)
        self.mid1 = ResBlock(c, c, emb_dim, dropout)
        self.mid_attn = Attention(c, num_heads) if attention_levels else nn.Identity()
        self.mid2 = ResBlock(c, c, emb_dim, dropout)

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                block = nn.ModuleList([ResBlock(c + skips.pop(), channels * mult, emb_dim, dropout)])
                c = channels * mult
                if level in attention_levels:
                    block.append(Attention(c, num_heads))
                self.up.append(block)
            if level > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)]))
        self.head = nn.Sequential(_norm(c), nn.SiLU(), nn.Conv2d(c, out_channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    @property
    def null_class(self) -> int | None:
        """The id meaning "no label" (``num_classes``), or None for an unconditional net."""
        return self.num_classes

    def embed(self, t: torch.Tensor, y: torch.Tensor | None, batch: int, device) -> torch.Tensor:
        t = torch.as_tensor(t, device=device)
        if t.dtype in (torch.int32, torch.int64, torch.uint8, torch.int16):
            raise TypeError("t must be a float in [0, 1]; for integer steps pass t / T")
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must have shape [{batch}] or be a scalar, got {tuple(t.shape)}")
        emb = self.time_mlp(timestep_embedding(t, self.channels))
        if self.class_emb is not None:
            if y is None:
                y = torch.full((batch,), self.num_classes, device=device, dtype=torch.long)
            elif y.shape != (batch,):
                raise ValueError(f"y must have shape [{batch}], got {tuple(y.shape)}")
            emb = emb + self.class_emb(y)
        elif y is not None:
            raise ValueError("y was given but this UNet is unconditional (num_classes=None)")
        return emb

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, y: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape [B, {self.in_channels}, H, W], got {tuple(x.shape)}")
        if x.shape[-1] % 2 ** (self.levels - 1) or x.shape[-2] % 2 ** (self.levels - 1):
            raise ValueError(f"H and W must be divisible by {2 ** (self.levels - 1)}, got {tuple(x.shape[-2:])}")
        emb = self.embed(t, y, x.shape[0], x.device)
        h = self.stem(x)
        hs = [h]
        for block in self.down:
            for layer in block:
                h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for block in self.up:
            if isinstance(block[0], ResBlock):
                h = torch.cat([h, hs.pop()], dim=1)
            for layer in block:
                h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return self.head(h)


def make_unet(preset: str = "default", **overrides) -> UNet:
    """A :class:`UNet` from a preset ("tiny", "small", "default") with keyword overrides."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {preset!r}")
    return UNet(**{**PRESETS[preset], **overrides})


def drop_labels(y: torch.Tensor, p: float, null_class: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by ``null_class`` with probability ``p`` (classifier-free guidance training). [B] -> [B]."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p!r}")
    drop = torch.rand(y.shape, generator=generator, device=y.device) < p
    return torch.where(drop, torch.full_like(y, null_class), y)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
