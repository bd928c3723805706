"""Token views of images, for masked (discrete) diffusion.

A :class:`TokenView` turns uint8 images [N, 3, 32, 32] into integer sequences [N, L] and back:

* ``TokenView("grey", 256)``: luma (ITU-R BT.601 weights) in 256 levels, one token per pixel:
  L = 1024, vocabulary 256. The default view, :data:`GREY256`.
* ``TokenView("rgb", 4)``: each channel quantised to 4 levels, one token per pixel holding all three
  (token = r * levels**2 + g * levels + b): L = 1024, vocabulary 4**3 = 64.
* ``size=16`` average-pools the image to 16x16 first (L = 256), for CPU-sized runs.

The mask token is reserved *after* the vocabulary: ``view.mask_id == view.vocab_size``; a network
that reads masked sequences embeds ``vocab_size + 1`` ids and predicts ``vocab_size`` logits.

    view = TokenView("grey", 256)
    tokens = view.encode(images)        # int64 [N, 1024] in 0..255
    back = view.decode(tokens)          # uint8 [N, 3, 32, 32] (grey repeated over R, G, B)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

KINDS = ("grey", "rgb")
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class TokenView:
    """How images become tokens. ``kind`` in ("grey", "rgb"); ``levels`` per channel; ``size`` of the side."""

    kind: str = "grey"
    levels: int = 256
    size: int = 32

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.levels, int) or not 2 <= self.levels <= 256:
            raise ValueError(f"levels must be an int in 2..256, got {self.levels!r}")
        if self.kind == "rgb" and self.levels > 16:
            raise ValueError(f"rgb views take at most 16 levels per channel (4096 tokens), got {self.levels}")
        if not isinstance(self.size, int) or self.size < 1 or 32 % self.size:
            raise ValueError(f"size must divide 32, got {self.size!r}")

    @property
    def vocab_size(self) -> int:
        """Number of image tokens (the mask id is not counted)."""
        return self.levels if self.kind == "grey" else self.levels ** 3

    @property
    def mask_id(self) -> int:
        """The reserved mask token, equal to ``vocab_size``."""
        return self.vocab_size

    @property
    def length(self) -> int:
        """Tokens per image, ``size * size``."""
        return self.size * self.size

    def _quantise(self, v: torch.Tensor) -> torch.Tensor:  # float 0..255 -> int 0..levels-1
        return (v * (self.levels / 256.0)).floor().clamp(0, self.levels - 1).long()

    def _level_value(self, q: torch.Tensor) -> torch.Tensor:  # int level -> uint8, the bin's centre
        return ((q.float() + 0.5) * (256.0 / self.levels) - 0.5).round().clamp(0, 255).to(torch.uint8)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [N, 3, 32, 32] -> int64 [N, L] with values in 0..vocab_size-1."""
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
            raise TypeError(f"images must be a uint8 tensor, got {type(images).__name__} {getattr(images, 'dtype', '')}")
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, 32, 32):
            raise ValueError(f"images must have shape [N, 3, 32, 32], got {tuple(images.shape)}")
        x = images.float()
        if self.size != 32:
            x = F.avg_pool2d(x, 32 // self.size)
        if self.kind == "grey":
            grey = (x * torch.tensor(LUMA, device=x.device).view(1, 3, 1, 1)).sum(1).round()
            return self._quantise(grey).flatten(1)
        q = self._quantise(x.round())
        return (q[:, 0] * self.levels ** 2 + q[:, 1] * self.levels + q[:, 2]).flatten(1)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """int [N, L] -> uint8 [N, 3, size, size]. Mask tokens decode to mid-grey (128)."""
        if not isinstance(tokens, torch.Tensor) or tokens.dtype.is_floating_point:
            raise TypeError(f"tokens must be an integer tensor, got {getattr(tokens, 'dtype', type(tokens).__name__)}")
        if tokens.ndim != 2 or tokens.shape[1] != self.length:
            raise ValueError(f"tokens must have shape [N, {self.length}], got {tuple(tokens.shape)}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() > self.mask_id):
            raise ValueError(f"tokens must lie in 0..{self.mask_id} (mask id included)")
        masked = tokens == self.mask_id
        t = tokens.long().clamp(max=self.vocab_size - 1).view(-1, self.size, self.size)
        if self.kind == "grey":
            out = self._level_value(t)[:, None].expand(-1, 3, -1, -1).clone()
        else:
            lv = self.levels
            out = torch.stack([self._level_value(t // lv ** 2), self._level_value(t // lv % lv), self._level_value(t % lv)], 1)
        out[masked.view(-1, 1, self.size, self.size).expand_as(out)] = 128
        return out


GREY256 = TokenView("grey", 256)
MASK_ID = GREY256.mask_id  # 256: the mask id of the default view
