"""Plots for 1D/2D diffusion experiments. Each function draws on ``ax`` (a new figure when None)
and returns the Axes, so panels compose: ``fig, axes = plt.subplots(1, 3)``, then ``ax=axes[i]``.

Inputs may be torch tensors (any device, any float dtype) or numpy arrays.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .mixture import GaussianMixture

__all__ = ["plot_samples", "plot_log_histogram_1d", "plot_trajectories", "plot_vector_field", "plot_density_2d"]


def _numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    if isinstance(x, np.ndarray):
        return x.astype(np.float64)
    raise TypeError(f"{name} must be a torch.Tensor or a numpy array, got {type(x).__name__}")


def _axes(ax, figsize=(4.0, 4.0)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _check_lim(lim, name: str) -> tuple[float, float]:
    if not (isinstance(lim, Sequence) and len(lim) == 2 and float(lim[0]) < float(lim[1])):
        raise ValueError(f"{name} must be a pair (low, high) with low < high, got {lim!r}")
    return float(lim[0]), float(lim[1])


def plot_samples(x, ax=None, mixture: Optional[GaussianMixture] = None, *, s: float = 2.0, alpha: float = 0.5,
                 color=None, label: Optional[str] = None, title: Optional[str] = None, bins: int = 200, **kwargs):
    """Scatter of 2D points x [n, 2] (a density histogram for 1D points [n, 1]).

    With ``mixture``, its means are marked with black crosses. Extra kwargs go to ``scatter``/``hist``.
    """
    x = _numpy(x, "x")
    if x.ndim != 2 or x.shape[1] not in (1, 2):
        raise ValueError(f"x must have shape [n, 1] or [n, 2], got {x.shape}")
    ax = _axes(ax)
    if x.shape[1] == 2:
        ax.scatter(x[:, 0], x[:, 1], s=s, alpha=alpha, color=color, label=label, linewidths=0, **kwargs)
        ax.set_aspect("equal", adjustable="box")
    else:
        ax.hist(x[:, 0], bins=bins, density=True, alpha=alpha, color=color, label=label, **kwargs)
    if mixture is not None:
        means = mixture.means.numpy()
        if means.shape[1] == 2:
            ax.scatter(means[:, 0], means[:, 1], marker="x", color="black", s=25, linewidths=1, label="modes")
        else:
            for m in means[:, 0]:
                ax.axvline(m, color="black", lw=0.6, ls=":")
    if title:
        ax.set_title(title)
    return ax


def plot_log_histogram_1d(samples, pdf_fn: Optional[Callable] = None, ax=None, bins: int = 200,
                          range: Optional[tuple[float, float]] = None, label: str = "samples", color=None):
    """Density histogram of 1D samples [n] or [n, 1] on a log y-axis, as in Aithal et al.'s figures,
    with the true density ``pdf_fn`` on top. ``pdf_fn`` takes a float64 tensor [G, 1] of points and
    returns densities [G], e.g. ``lambda x: mixture.log_prob(x).exp()``. The log scale makes the
    rare samples between modes visible."""
    x = _numpy(samples, "samples")
    if not (x.ndim == 1 or (x.ndim == 2 and x.shape[1] == 1)) or x.size == 0:
        raise ValueError(f"samples must have shape [n] or [n, 1] with n >= 1, got {x.shape}")
    x = x.reshape(-1)
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    ax = _axes(ax, figsize=(6.0, 3.0))
    lo, hi = range if range is not None else (float(x.min()), float(x.max()))
    ax.hist(x, bins=bins, range=(lo, hi), density=True, alpha=0.6, color=color, label=label)
    if pdf_fn is not None:
        grid = torch.linspace(lo, hi, 2000, dtype=torch.float64)[:, None]
        density = _numpy(pdf_fn(grid), "pdf_fn(x)").reshape(-1)
        ax.plot(grid[:, 0].numpy(), density, color="black", lw=1, label="true density")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.legend(loc="upper right", fontsize="small")
    return ax


def plot_trajectories(traj, ax=None, max_paths: int = 50, color=None, alpha: float = 0.6, lw: float = 0.8,
                      times=None):
    """Sampling paths traj [T, B, D] (first axis: the steps, in the order taken).

    D = 2: curves in the plane, a dot at the start and a cross at the end. D = 1: value against the step
    index (or ``times`` [T]). At most ``max_paths`` paths are drawn.
    """
    traj = _numpy(traj, "traj")
    if traj.ndim != 3 or traj.shape[2] not in (1, 2):
        raise ValueError(f"traj must have shape [T, B, 1] or [T, B, 2], got {traj.shape}")
    traj = traj[:, :max_paths]
    ax = _axes(ax)
    if traj.shape[2] == 2:
        for b in np.arange(traj.shape[1]):
            ax.plot(traj[:, b, 0], traj[:, b, 1], color=color, alpha=alpha, lw=lw)
        ax.scatter(traj[0, :, 0], traj[0, :, 1], s=6, color="grey", zorder=3)
        ax.scatter(traj[-1, :, 0], traj[-1, :, 1], s=14, marker="x", color="black", zorder=3)
        ax.set_aspect("equal", adjustable="box")
    else:
        steps = np.arange(traj.shape[0]) if times is None else _numpy(torch.as_tensor(times), "times")
        ax.plot(steps, traj[:, :, 0], color=color, alpha=alpha, lw=lw)
        ax.set_xlabel("step" if times is None else "t")
    return ax


def _grid(xlim, ylim, n, dtype):
    """Checked limits, the n x n meshgrid (gx, gy), and its points as a tensor [n*n, 2] of ``dtype``."""
    xlim, ylim = _check_lim(xlim, "xlim"), _check_lim(ylim, "ylim")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    gx, gy = np.meshgrid(np.linspace(*xlim, n), np.linspace(*ylim, n))
    return xlim, ylim, gx, gy, torch.tensor(np.stack([gx.ravel(), gy.ravel()], axis=1), dtype=dtype)


def plot_vector_field(fn: Callable, xlim, ylim, ax=None, n: int = 20, color="tab:blue", normalize: bool = False):
    """Arrows of a 2D vector field: ``fn`` maps points [n*n, 2] (float32) to vectors [n*n, 2]
    (a score, a drift, a denoiser's displacement). ``normalize`` draws unit arrows (direction only)."""
    xlim, ylim, gx, gy, points = _grid(xlim, ylim, n, torch.float32)
    with torch.no_grad():
        v = _numpy(fn(points), "fn(points)")
    if v.shape != (n * n, 2):
        raise ValueError(f"fn must return vectors of shape [{n * n}, 2], got {v.shape}")
    if normalize:
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    ax = _axes(ax)
    ax.quiver(gx.ravel(), gy.ravel(), v[:, 0], v[:, 1], color=color, angles="xy")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal", adjustable="box")
    return ax


def plot_density_2d(log_prob_fn: Callable, xlim, ylim, ax=None, n: int = 200, log: bool = False, cmap="viridis"):
    """Image of a 2D density: ``log_prob_fn`` maps points [n*n, 2] (float64) to log-densities [n*n].
    Shows the density itself, or the log-density with ``log=True`` (to see the tails)."""
    xlim, ylim, gx, gy, points = _grid(xlim, ylim, n, torch.float64)
    with torch.no_grad():
        values = _numpy(log_prob_fn(points), "log_prob_fn(points)").reshape(-1)
    if values.shape[0] != n * n:
        raise ValueError(f"log_prob_fn must return [{n * n}] log-densities, got {values.shape}")
    image = values if log else np.exp(values)
    ax = _axes(ax)
    ax.imshow(image.reshape(n, n), origin="lower", extent=(*xlim, *ylim), cmap=cmap, aspect="equal")
    return ax
