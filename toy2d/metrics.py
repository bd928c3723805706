r"""How far apart are two point clouds, and is a point inside the data's support?

* :func:`w2_squared`: the squared 2-Wasserstein distance between the empirical measures of two
  samples, exactly (optimal assignment) or by slicing (random 1D projections).
* :func:`mmd`: the squared maximum mean discrepancy with a Gaussian (RBF) kernel.
* :func:`in_support`: whether each point lies within ``k_std`` standard deviations of some
  component of a Gaussian mixture (the course's rule for "not a hallucination").

Why scipy and not POT for exact W2: for two samples of equal size ``n`` with uniform weights 1/n,
the optimal transport plan can be taken to be a permutation (Birkhoff: the extreme points of the
doubly stochastic matrices are permutation matrices), so exact OT *is* the linear assignment
problem, which ``scipy.optimize.linear_sum_assignment`` solves exactly. scipy is already a
dependency; POT would add one for nothing.

Sliced W2: for a unit direction :math:`\theta`, the 1D W2 between projections is the mean squared
difference of sorted values (quantile coupling). We return
:math:`D\cdot\mathbb E_\theta\,W_2^2(\theta_\#\mu, \theta_\#\nu)`, estimated with ``n_projections``
random directions drawn as random orthonormal frames of ``D`` directions. The factor ``D`` puts it
in the same units as W2^2, and it is a lower bound: for one frame, projecting the optimal coupling
gives :math:`\sum_i W_2^2(\theta_{i\#}\mu, \theta_{i\#}\nu) \le \sum_i \mathbb E_\pi(\theta_i\cdot(X-Y))^2
= \mathbb E_\pi|X-Y|^2 = W_2^2`, so the estimate never exceeds the exact value (equal sizes), and
equals it for a pure translation. It can be several times smaller when two sets differ in shape
rather than place (the 9-Gaussian mixture against the two rings: about a quarter), so use it for
large sets and compare sliced with sliced.
(POT's ``sliced_wasserstein_distance`` returns :math:`SW_2` itself, without the factor D and the square.)
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .mixture import GaussianMixture

__all__ = ["w2_squared", "mmd", "in_support", "median_bandwidth", "EXACT_W2_MAX"]

# Up to this many points per set, method="auto" solves the assignment exactly (~1 s at 2048 points).
EXACT_W2_MAX = 2048


def _check_cloud(x, name: str, dim: Optional[int] = None) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of shape [n, D], got {type(x).__name__}")
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape [n, D] with n >= 1, got {tuple(x.shape)}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} must have D = {dim} columns like x, got {x.shape[1]}")
    x = x.detach().to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must be finite")
    return x


def w2_squared(x: torch.Tensor, y: torch.Tensor, method: str = "auto", n_projections: int = 256,
               seed: int = 0) -> float:
    """Squared 2-Wasserstein distance between the empirical measures of x [n, D] and y [m, D].

    method: "exact" (optimal assignment; needs n == m), "sliced" (D x the mean 1D W2^2 over
    ``n_projections`` random directions (rounded up to a multiple of D), seeded by ``seed``; a lower
    bound on W2^2, exact for translations), or "auto"
    (exact when n == m <= EXACT_W2_MAX, sliced otherwise).
    """
    if method not in ("auto", "exact", "sliced"):
        raise ValueError(f"method must be 'auto', 'exact' or 'sliced', got {method!r}")
    x = _check_cloud(x, "x")
    y = _check_cloud(y, "y", x.shape[1])
    if isinstance(n_projections, bool) or not isinstance(n_projections, int) or n_projections < 1:
        raise ValueError(f"n_projections must be a positive int, got {n_projections!r}")
    if method == "exact" and x.shape[0] != y.shape[0]:
        raise ValueError(f"method='exact' needs equal sizes (x has {x.shape[0]} points, y has {y.shape[0]}); "
                         "use method='sliced' or subsample")
    if method == "auto":
        method = "exact" if x.shape[0] == y.shape[0] <= EXACT_W2_MAX else "sliced"
    if method == "exact":
        cost = torch.cdist(x, y) ** 2                              # |x_i - y_j|^2  [n, n]
        rows, cols = linear_sum_assignment(cost.numpy())           # the optimal permutation
        return float(cost[rows, cols].mean())                     # W2^2 = (1/n) sum_i |x_i - y_sigma(i)|^2
    return _sliced_w2_squared(x, y, n_projections, seed)


def _sliced_w2_squared(x: torch.Tensor, y: torch.Tensor, n_projections: int, seed: int) -> float:
    D = x.shape[1]
    g = torch.Generator().manual_seed(seed)
    # Directions come in random orthonormal frames (D at a time; Haar-random rotations by QR with the
    # sign fix). Each direction is uniform on the sphere, and within a frame sum_i (theta_i . u)^2 = |u|^2,
    # so a translation is measured exactly rather than up to Monte Carlo error.
    frames = -(-n_projections // D)
    q, r = torch.linalg.qr(torch.randn(frames, D, D, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]
    theta = q.permute(1, 0, 2).reshape(D, frames * D)             # [D, P] unit columns
    px, py = (x @ theta).sort(dim=0).values, (y @ theta).sort(dim=0).values   # [n, P], [m, P]
    n, m = px.shape[0], py.shape[0]
    if n == m:
        per_direction = ((px - py) ** 2).mean(dim=0)               # 1D W2^2 = mean (sorted - sorted)^2  [P]
    else:
        # 1D W2^2 = int_0^1 (F^-1(u) - G^-1(u))^2 du; both quantile functions are step functions, so the
        # integral is an exact sum over the merged breakpoints {i/n} U {j/m}.
        cuts = torch.unique(torch.cat([torch.arange(1, n + 1, dtype=torch.float64) / n,
                                       torch.arange(1, m + 1, dtype=torch.float64) / m]))
        widths = torch.diff(cuts, prepend=cuts.new_zeros(1))
        middle = cuts - widths / 2
        fx = px[torch.clamp(torch.floor(middle * n).long(), max=n - 1)]
        fy = py[torch.clamp(torch.floor(middle * m).long(), max=m - 1)]
        per_direction = (widths[:, None] * (fx - fy) ** 2).sum(dim=0)
    return float(D * per_direction.mean())


def median_bandwidth(x: torch.Tensor, y: torch.Tensor, max_points: int = 1000, seed: int = 0) -> float:
    """The median heuristic: the median pairwise distance in the pooled sample (a seeded subsample of
    at most ``max_points`` points), used as the RBF bandwidth."""
    pooled = torch.cat([_check_cloud(x, "x"), _check_cloud(y, "y", x.shape[1])])
    if pooled.shape[0] > max_points:
        pooled = pooled[torch.randperm(pooled.shape[0], generator=torch.Generator().manual_seed(seed))[:max_points]]
    dist = torch.pdist(pooled)
    dist = dist[dist > 0]
    return float(dist.median()) if dist.numel() else 1.0


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidth: Optional[float] = None) -> float:
    r"""Squared MMD between x [n, D] and y [m, D] with the RBF kernel :math:`k(a, b) = \exp(-|a-b|^2 / 2h^2)`.

    The biased (V-statistic) estimate :math:`\overline{k(x,x')} + \overline{k(y,y')} - 2\,\overline{k(x,y)}`:
    non-negative, and exactly 0 for identical sets. ``bandwidth`` h defaults to the median heuristic.
    Computed blockwise, so tens of thousands of points fit in memory.
    """
    x = _check_cloud(x, "x")
    y = _check_cloud(y, "y", x.shape[1])
    if bandwidth is None:
        bandwidth = median_bandwidth(x, y)
    elif isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or not bandwidth > 0 \
            or not math.isfinite(bandwidth):
        raise ValueError(f"bandwidth must be None or a positive number, got {bandwidth!r}")
    gamma = 1.0 / (2.0 * bandwidth ** 2)
    value = _mean_kernel(x, x, gamma) + _mean_kernel(y, y, gamma) - 2 * _mean_kernel(x, y, gamma)
    return max(value, 0.0)  # round-off can leave -1e-17


def _mean_kernel(a: torch.Tensor, b: torch.Tensor, gamma: float, block: int = 2048) -> float:
    total = 0.0
    for i in range(0, a.shape[0], block):
        total += torch.exp(-gamma * torch.cdist(a[i:i + block], b) ** 2).sum().item()
    return total / (a.shape[0] * b.shape[0])


def in_support(x: torch.Tensor, mixture: GaussianMixture, k_std: float = 5.0) -> torch.Tensor:
    r"""bool [B]: is x [B, D] within ``k_std`` standard deviations of some component of ``mixture``?

    Distance is Mahalanobis, :math:`\sqrt{(x-\mu_k)^\top\Sigma_k^{-1}(x-\mu_k)}` (for isotropic
    components: Euclidean distance / std). A point outside every component's ``k_std`` ellipse is
    out of support: a hallucination in lesson 01's sense. At 5 std a true sample is flagged with
    probability about 6e-7 in 1D and 4e-6 in 2D.
    """
    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}")
    if isinstance(x, torch.Tensor) and x.dim() == 2 and x.shape[0] == 0:
        return torch.zeros(0, dtype=torch.bool)
    device = x.device if isinstance(x, torch.Tensor) else torch.device("cpu")
    x = _check_cloud(x, "x", mixture.D)
    if isinstance(k_std, bool) or not isinstance(k_std, (int, float)) or not k_std > 0:
        raise ValueError(f"k_std must be a positive number, got {k_std!r}")
    diff = x[:, None, :] - mixture.means[None]                              # [B, K, D]
    z = torch.einsum("kde,bkd->bke", mixture._eigvecs, diff) / mixture._eigvals.sqrt()[None]  # whitened
    mahalanobis = z.norm(dim=-1).min(dim=1).values                          # [B]
    return (mahalanobis <= k_std).to(device)
