"""A bidirectional transformer over token sequences, for masked diffusion.

    net = make_transformer("default", vocab_size=256, length=1024)   # 14.8M parameters
    logits = net(tokens)                                            # int [B, L] in 0..vocab_size -> [B, L, vocab_size]

Input ids run over ``0..vocab_size``: the last one, ``vocab_size``, is the mask token (see
:class:`cifar.tokens.TokenView`). The output has ``vocab_size`` logits per position and none for
the mask, since a denoiser never predicts "masked". Attention is not causal: every position sees
the whole sequence.

A masked diffusion model needs no time input (Zheng et al., 2025: the optimal denoiser depends on
the number of masked tokens only, which it can read from the input), so ``time_conditioning`` is
off by default. With it on, ``net(tokens, t)`` takes t [B] in [0, 1] and modulates every
LayerNorm with a scale and shift computed from t (adaLN, as in DiT); without it, t is ignored.

Pre-LayerNorm blocks (attention then MLP, GELU, ratio 4), learned absolute positions, untied
output head started at zero (uniform logits before training). Per block 12 d^2 parameters.

| preset | d | layers | heads | parameters (vocab 256, L 1024) |
|---|---|---|---|---|
| ``tiny`` | 64 | 2 | 2 | 0.20M |
| ``small`` | 128 | 4 | 4 | 0.99M |
| ``default`` | 384 | 8 | 6 | 14.8M |
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .unet import timestep_embedding

PRESETS = {
    "tiny": dict(d_model=64, n_layers=2, n_heads=2),
    "small": dict(d_model=128, n_layers=4, n_heads=4),
    "default": dict(d_model=384, n_layers=8, n_heads=6),
}


class Block(nn.Module):
    """x + attn(ln(x)), then x + mlp(ln(x)); with adaLN when a conditioning vector is given. [B, L, d] -> same."""

    def __init__(self, d: int, n_heads: int, mlp_ratio: int, dropout: float, cond_dim: int | None):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.ln1 = nn.LayerNorm(d, elementwise_affine=cond_dim is None)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d, elementwise_affine=cond_dim is None)
        self.mlp = nn.Sequential(nn.Linear(d, mlp_ratio * d), nn.GELU(), nn.Linear(mlp_ratio * d, d))
        self.ada = nn.Linear(cond_dim, 4 * d) if cond_dim else None  # scale1, shift1, scale2, shift2
        if self.ada is not None:
            nn.init.zeros_(self.ada.weight)
            nn.init.zeros_(self.ada.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        h1, h2 = self.ln1(x), None
        if self.ada is not None:
            s1, b1, s2, b2 = self.ada(cond)[:, None].chunk(4, dim=-1)
            h1 = h1 * (1 + s1) + b1
        q, k, v = self.qkv(h1).view(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))
        h2 = self.ln2(x)
        if self.ada is not None:
            h2 = h2 * (1 + s2) + b2
        return x + self.mlp(h2)


class TokenTransformer(nn.Module):
    """(tokens int [B, L] in 0..vocab_size, t [B] in [0, 1] or None) -> logits float [B, L, vocab_size]."""

    def __init__(self, vocab_size: int, length: int, d_model: int = 384, n_layers: int = 8, n_heads: int = 6,
                 mlp_ratio: int = 4, dropout: float = 0.0, time_conditioning: bool = False):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("length", length), ("d_model", d_model),
                            ("n_layers", n_layers), ("n_heads", n_heads)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.vocab_size, self.length, self.d_model = vocab_size, length, d_model
        self.time_conditioning = time_conditioning
        self.embed = nn.Embedding(vocab_size + 1, d_model)  # + the mask id
        self.pos = nn.Parameter(torch.randn(1, length, d_model) * 0.02)
        cond_dim = d_model if time_conditioning else None
        self.time_mlp = (nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
                         if time_conditioning else None)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, mlp_ratio, dropout, cond_dim) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    def forward(self, tokens: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        if tokens.ndim != 2 or tokens.shape[1] != self.length:
            raise ValueError(f"tokens must have shape [B, {self.length}], got {tuple(tokens.shape)}")
        if tokens.dtype.is_floating_point:
            raise TypeError(f"tokens must be integer ids, got {tokens.dtype}")
        cond = None
        if self.time_conditioning:
            if t is None:
                raise ValueError("this transformer was built with time_conditioning=True: pass t")
            t = torch.as_tensor(t, device=tokens.device, dtype=torch.float32)
            t = t.expand(tokens.shape[0]) if t.ndim == 0 else t
            cond = self.time_mlp(timestep_embedding(t, self.d_model))
        x = self.embed(tokens) + self.pos
        for block in self.blocks:
            x = block(x, cond)
        return self.head(self.ln_f(x))


def make_transformer(preset: str = "default", *, vocab_size: int, length: int, **overrides) -> TokenTransformer:
    """A :class:`TokenTransformer` from a preset ("tiny", "small", "default") with keyword overrides."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {preset!r}")
    return TokenTransformer(vocab_size, length, **{**PRESETS[preset], **overrides})
