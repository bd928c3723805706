r"""Seeded toy datasets on a line and in the plane.

Every function takes ``seed=`` (an int) and draws all its randomness from one
``torch.Generator`` seeded with it, so the same seed gives identical data on any machine and
different seeds give different data. Points come back as float32 tensors ``[n, D]``.

The mixtures also return their :class:`~toy2d.mixture.GaussianMixture`, whose exact denoiser and
score are the perfect model to compare a learned one with.

Sources of the parameters:

* :func:`mixture_1d`, :func:`grid`: Aithal et al. (NeurIPS 2024), hallucination via mode interpolation.
  Their 1D data has equal-weight modes at {1, 2, 3} with std 0.05. Their 2D grid has means 2(i, j),
  i, j in {-2..2}, std 0.05, divided by the data's global std 2.8289 (so spacing 0.707 and std
  0.0177 in model units); ``grid(n, spacing=2 / 2.8289, std=0.05 / 2.8289)`` reproduces it.
  ``rotated=True`` turns the grid 45 degrees into a diamond.
* :func:`nine_gaussians`, :func:`two_rings`, :func:`checkerboard`: Deveney et al. (2023), closing
  the ODE-SDE gap; the exact parameters of their ``blob``, ``circles2`` and ``checker`` sets.
* :func:`moons`: the classic two interleaving half circles, centred at the origin.

As in the papers' code, equal-weight mixtures are assigned round-robin (exactly n/K points per
component, up to rounding) and then shuffled, so small sets have no sampling error in the weights.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from .mixture import GaussianMixture

__all__ = ["mixture_1d", "grid", "nine_gaussians", "two_rings", "checkerboard", "moons",
           "sample_balanced"]

# Aithal et al.'s grid is divided by this global std: sqrt(0.05^2 + 4 * 2) (see the module docstring).
HALLUCINATION_GRID_SCALE = math.sqrt(0.05 ** 2 + 8.0)


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return n


def _generator(seed) -> torch.Generator:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return torch.Generator().manual_seed(seed)


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _balanced_labels(n: int, K: int, generator: torch.Generator) -> torch.Tensor:
    """Labels 0..K-1 round-robin (i % K), shuffled: each class gets n // K or n // K + 1 points. [n]"""
    return (torch.arange(n) % K)[torch.randperm(n, generator=generator)]


def sample_balanced(mixture: GaussianMixture, n: int, generator: torch.Generator,
                    return_labels: bool = False):
    """n points [n, D] (float32) from a mixture, and their component labels [n] if ``return_labels``.

    Equal weights are assigned round-robin (then shuffled), other weights multinomially."""
    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}")
    _check_n(n)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    equal = torch.allclose(mixture.weights, torch.full_like(mixture.weights, 1.0 / mixture.K))
    if equal:
        labels = _balanced_labels(n, mixture.K, generator)
    else:
        labels = torch.multinomial(mixture.weights, n, replacement=True, generator=generator)
    x = mixture._sample_given_labels(labels, generator).to(torch.float32)
    return (x, labels) if return_labels else x


def mixture_1d(n: int, means: Sequence[float] = (1.0, 2.0, 3.0), std: float = 0.05,
               weights: Optional[Sequence[float]] = None, seed: int = 0):
    """A 1D Gaussian mixture (default: Aithal et al.'s modes {1, 2, 3}, std 0.05, equal weights).

    Returns ``(x [n, 1] float32, GaussianMixture)``. The data is in raw units (not normalised).
    """
    _check_n(n)
    std = _check_positive(std, "std")
    means_t = torch.as_tensor(list(means), dtype=torch.float64)
    if means_t.dim() != 1 or means_t.numel() == 0:
        raise ValueError(f"means must be a non-empty sequence of floats, got {means!r}")
    if weights is not None and len(weights) != means_t.numel():
        raise ValueError(f"weights must have one entry per mean ({means_t.numel()}), got {len(weights)}")
    generator = _generator(seed)
    mixture = GaussianMixture(weights, means_t[:, None], stds=std)
    return sample_balanced(mixture, n, generator), mixture


def grid(n: int, k: int = 5, spacing: float = 1.0, std: float = 0.05, rotated: bool = False, seed: int = 0):
    """A k x k grid of equal-weight Gaussians centred at 0 (Aithal et al.'s 2D set, up to scale).

    Means are ``spacing * (i - (k-1)/2, j - (k-1)/2)``; ``rotated=True`` turns the grid by 45 degrees
    into a diamond (nearest neighbours then lie along the diagonals). Returns ``(x [n, 2], GaussianMixture)``.
    """
    _check_n(n)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    spacing = _check_positive(spacing, "spacing")
    std = _check_positive(std, "std")
    generator = _generator(seed)
    ticks = spacing * (torch.arange(k, dtype=torch.float64) - (k - 1) / 2)
    means = torch.cartesian_prod(ticks, ticks).reshape(-1, 2)  # [k*k, 2]
    if rotated:
        c = s = math.sqrt(0.5)  # cos 45 = sin 45
        rotation = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
        means = means @ rotation.T
    mixture = GaussianMixture(None, means, stds=std)
    return sample_balanced(mixture, n, generator), mixture


def nine_gaussians(n: int, seed: int = 0):
    r"""Deveney et al.'s "Gaussian mixture": 9 equal-weight Gaussians with covariance 0.0845 I (std 0.29)
    centred at (+-1.3, +-1.3), (0, 0), (+-2.6, 0) and (0, +-2.6). Returns ``(x [n, 2], GaussianMixture)``."""
    _check_n(n)
    generator = _generator(seed)
    means = torch.tensor([[1.3, -1.3], [-1.3, 1.3], [1.3, 1.3], [-1.3, -1.3], [0.0, 0.0],
                          [2.6, 0.0], [-2.6, 0.0], [0.0, 2.6], [0.0, -2.6]], dtype=torch.float64)
    covs = 0.0845 * torch.eye(2, dtype=torch.float64).expand(9, 2, 2)  # 0.65^2 * 0.2, as in their code
    mixture = GaussianMixture(None, means, covs)
    return sample_balanced(mixture, n, generator), mixture


def two_rings(n: int, seed: int = 0) -> torch.Tensor:
    """Deveney et al.'s "Circles": two concentric rings of radius 1.3 and 2.8 with equal mass,
    radial noise std 0.2 and a uniform angle. Returns x [n, 2] (shuffled)."""
    _check_n(n)
    generator = _generator(seed)
    ring = _balanced_labels(n, 2, generator)
    radius = torch.tensor([1.3, 2.8], dtype=torch.float64)[ring]
    r = radius + 0.2 * torch.randn(n, generator=generator, dtype=torch.float64)
    theta = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    return torch.stack([r * torch.cos(theta), r * torch.sin(theta)], dim=1).to(torch.float32)


def checkerboard(n: int, seed: int = 0) -> torch.Tensor:
    """Deveney et al.'s "Checkerboard": uniform on the 8 black cells (side 1.5) of a 4 x 4 board over
    [-3, 3]^2, equal mass per cell. Cell (i, j) (column i, row j, from the bottom-left corner) is
    black when i + j is even, as in their code. Returns x [n, 2] (shuffled)."""
    _check_n(n)
    generator = _generator(seed)
    cells = torch.tensor([(i, j) for j in range(4) for i in range(4) if (i + j) % 2 == 0], dtype=torch.float64)
    corner = -3.0 + 1.5 * cells[_balanced_labels(n, 8, generator)]  # bottom-left corner of each point's cell
    return (corner + 1.5 * torch.rand(n, 2, generator=generator, dtype=torch.float64)).to(torch.float32)


def moons(n: int, noise: float = 0.05, seed: int = 0) -> torch.Tensor:
    """Two interleaving half circles of radius 1 (upper: centre (0, 0); lower: centre (1, 0.5)), shifted
    so the set is centred at the origin, plus Gaussian noise of std ``noise`` (>= 0). Returns x [n, 2]."""
    _check_n(n)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0 or not math.isfinite(noise):
        raise ValueError(f"noise must be a non-negative finite number, got {noise!r}")
    generator = _generator(seed)
    moon = _balanced_labels(n, 2, generator)
    angle = math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    upper = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    lower = torch.stack([1 - torch.cos(angle), 0.5 - torch.sin(angle)], dim=1)
    x = torch.where(moon[:, None] == 0, upper, lower) - torch.tensor([0.5, 0.25], dtype=torch.float64)
    x = x + noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return x.to(torch.float32)
