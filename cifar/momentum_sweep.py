"""Lesson 03 at 32x32: the paper's magnitude score in pixel space, and one sweep over samplers x steps x guidance.

Wizadwongsa et al. (ICLR 2024) measure divergence artifacts with a *magnitude score*. Their official
code (``calculate_artifact_score``) normalises each latent channel by dataset statistics, takes the
absolute value and the maximum over channels, max-pools 64x64 -> 16x16, zeroes the cells below
tau = 3 and averages over the cells (the paper writes a sum, 256 times larger). Here the same steps
run on a sampler's raw output in model space (before clipping): per-RGB-channel statistics of the
training images, and a max-pool with kernel 2 (32x32 -> 16x16, the paper's 256 cells).

    mean, std = channel_stats(images)                            # uint8 [N, C, H, W] -> [C], [C]
    score = magnitude_score(x0, mean, std)                       # [B] float64, one per image
    sample = lambda name, n, s: sample_by_name(name, eps_model, x_T, betas, n, guidance=s, cond=y)
    grid = sweep(sample, names, steps, guidances, reference, mean, std)
    grid.score["PLMS4"][i, j]                                    # steps[i], guidances[j]

The sampler enters as a callable (the lesson passes :func:`minimal.momentum.sample_by_name` on a
learned network or on the exact denoiser of :mod:`cifar.empirical_mixture`); this lab imports no
other room of the project.
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["channel_stats", "magnitude_score", "rms_error", "Sweep", "sweep"]


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of a training set in model space ([-1, 1]).

    Args:
        images: uint8 [N, C, H, W] pixels (0..255) or a floating tensor in model space.

    Returns:
        ``(mean, std)``: float64 [C] each.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise TypeError(f"images must be a torch.Tensor [N, C, H, W], got {getattr(images, 'shape', type(images))}")
    x = images.double() / 127.5 - 1 if images.dtype == torch.uint8 else images.double()
    return x.mean((0, 2, 3)), x.std((0, 2, 3))


def magnitude_score(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, *, tau: float = 3.0,
                    kernel: int = 2) -> torch.Tensor:
    """The paper's magnitude score of each image (official code's mean over cells).

    Args:
        x: samples [B, C, H, W] in model space, not clipped.
        mean, std: [C], the training set's per-channel statistics (:func:`channel_stats`).
        tau: cells below tau (in standard deviations) count as zero.
        kernel: the max-pool kernel (2 turns 32x32 into the paper's 16x16 cells).

    Returns:
        [B] float64: the mean over cells of max-pooled |normalised x| where it is >= tau, else 0.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise TypeError(f"x must be a floating torch.Tensor [B, C, H, W], got {getattr(x, 'shape', type(x))}")
    if mean.shape != (x.shape[1],) or std.shape != (x.shape[1],):
        raise ValueError(f"mean and std must have shape [C] = [{x.shape[1]}], got {tuple(mean.shape)}, {tuple(std.shape)}")
    if not (std > 0).all():
        raise ValueError("std must be > 0 in every channel")
    z = ((x.double() - mean.double().view(1, -1, 1, 1)) / std.double().view(1, -1, 1, 1)).abs()
    cells = F.max_pool2d(z.amax(1, keepdim=True), kernel_size=kernel)      # [B, 1, H / k, W / k]
    return torch.where(cells >= tau, cells, torch.zeros_like(cells)).mean((1, 2, 3)).cpu()


def rms_error(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Root-mean-square pixel difference per image, [B, ...] x2 -> [B] float64 (model-space units)."""
    if x.shape != reference.shape:
        raise ValueError(f"x and reference must have the same shape, got {tuple(x.shape)} and {tuple(reference.shape)}")
    return (x.double() - reference.double()).pow(2).flatten(1).mean(1).sqrt().cpu()


@dataclass
class Sweep:
    """The sweep's results: arrays [len(steps), len(guidances)] per sampler name, and the samples."""

    names: list[str]
    steps: list[int]
    guidances: list[float]
    score: dict[str, np.ndarray] = field(default_factory=dict)     # mean magnitude score
    error: dict[str, np.ndarray] = field(default_factory=dict)     # mean RMS error against the reference
    outputs: dict[tuple[str, int, float], torch.Tensor] = field(default_factory=dict)   # (name, N, s) -> x0 (CPU)
    seconds: float = 0.0

    def at(self, name: str, num_steps: int, guidance: float) -> tuple[float, float]:
        """(score, error) of one setting."""
        i, j = self.steps.index(num_steps), self.guidances.index(guidance)
        return float(self.score[name][i, j]), float(self.error[name][i, j])


def sweep(sample: Callable[[str, int, float], torch.Tensor], names: Sequence[str], steps: Sequence[int],
          guidances: Sequence[float], reference: dict[float, torch.Tensor], mean: torch.Tensor,
          std: torch.Tensor) -> Sweep:
    """Run every sampler of ``names`` at every (steps, guidance) and score it against the reference.

    Args:
        sample: ``sample(name, num_steps, guidance) -> x0`` [B, C, H, W], always from the same noise
            and labels (e.g. :func:`minimal.momentum.sample_by_name` on the sampler's official grid).
        names: the sampler names, e.g. "PLMS4 + HB 0.8".
        steps, guidances: the grid.
        reference: guidance -> the reference samples [B, C, H, W] from the same noise and labels.
        mean, std: [C], for :func:`magnitude_score`.

    Returns:
        a :class:`Sweep`.
    """
    if not callable(sample):
        raise TypeError(f"sample must be callable (name, num_steps, guidance) -> x0, got {type(sample).__name__}")
    missing = [s for s in guidances if s not in reference]
    if missing:
        raise ValueError(f"reference must hold samples for every guidance, missing {missing}")
    out = Sweep(list(names), list(steps), [float(s) for s in guidances])
    started = time.time()
    for name in names:
        out.score[name] = np.zeros((len(steps), len(guidances)))
        out.error[name] = np.zeros((len(steps), len(guidances)))
        for (i, n), (j, s) in itertools.product(enumerate(steps), enumerate(guidances)):
            x0 = sample(name, n, float(s))
            out.score[name][i, j] = magnitude_score(x0, mean, std).mean().item()
            out.error[name][i, j] = rms_error(x0, reference[s]).mean().item()
            out.outputs[name, n, float(s)] = x0.cpu()
    out.seconds = time.time() - started
    return out
