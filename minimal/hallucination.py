"""Hallucination by mode interpolation, and the trajectory-variance filter that removes it.

A single-file reading of Aithal, Maini, Lipton and Kolter, *Understanding Hallucinations in
Diffusion Models through Mode Interpolation* (NeurIPS 2024). It imports only torch and the
standard library; copy it into your project as it is.

The claim
---------
A diffusion model trained on well-separated modes (say a mixture of narrow Gaussians) also draws
samples *between* the modes, where the data has no support at all: a **hallucination**. The
paper traces them to **mode interpolation**: the network is a smooth function, but the ideal
denoiser it tries to fit is, near the end of sampling, a staircase with a jump halfway between
two modes. The smooth fit of a jump is a ramp, and a sample that lands on the ramp is carried to
an in-between value. The same picture gives a detector: on the ramp the predicted clean sample
keeps changing from step to step, so the **variance of the predicted x_0 over the last few
reverse steps** is high for hallucinations and near zero for samples that settled on a mode.

Notation (DDPM, Ho et al. 2020), fixed for this file
-----------------------------------------------------
Steps t = 1..T, a noise schedule beta_t, alpha_t = 1 - beta_t, abar_t = prod_{s<=t} alpha_s.

    (1) forward process      x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,       eps ~ N(0, I)
    (2) training loss        L = E_{t, x_0, eps} || eps - eps_theta(x_t, t) ||^2
    (3) predicted x_0        x0hat_t = (x_t - sqrt(1 - abar_t) eps_theta(x_t, t)) / sqrt(abar_t)
    (4) ancestral step       x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps_theta) / sqrt(alpha_t)
                                       + sigma_t z,   z ~ N(0, I),  sigma_t^2 = beta_t ("fixed large"),
                                       and no noise at the last step t = 1.

The model is any callable ``eps_model(x_t, t)`` with ``x_t`` of shape [B, ...] and ``t`` a float
tensor [B] holding t / T in (0, 1]; it returns eps_theta with the shape of ``x_t``.

Why the ideal denoiser is a staircase
-------------------------------------
Take data from a mixture sum_k w_k N(mu_k, s^2 I). Then x_t given component k is
N(sqrt(abar) mu_k, (abar s^2 + 1 - abar) I), and the minimiser of (2) is
eps* = (x_t - sqrt(abar) E[x_0 | x_t]) / sqrt(1 - abar) with

    (5) E[x_0 | x_t] = sum_k r_k(x_t) [ mu_k + c (x_t - sqrt(abar) mu_k) ],
        c = sqrt(abar) s^2 / (abar s^2 + 1 - abar),
        r_k(x_t) = softmax_k( log w_k - |x_t - sqrt(abar) mu_k|^2 / (2 (abar s^2 + 1 - abar)) ).

At small t the variance v = abar s^2 + 1 - abar is far below the squared spacing between modes,
and the responsibilities r_k switch from 0 to 1 over a width of about v / spacing around the
midpoint between two modes: E[x_0 | x_t] is nearly flat at mu_k inside each basin and jumps
between basins (a staircase, sharper as t -> 0). A neural network fitted by (2) with finite data and steps is smooth; it replaces
each jump by a ramp, and every x_t on the ramp is denoised to a value between the modes. The
closer the modes and the fewer the samples, the wider the ramp, and the more hallucinations.

The detector and the filter
---------------------------
Record x0hat_t (3) at every reverse step. For a sample that has settled in a basin, the last
steps all predict the same mode; for a sample on a ramp the prediction drifts as x_t moves. The
paper's score (the official code's ``np.var(predx0[:, -10:])``, averaged over dimensions) is

    (6) Hal(x) = mean_over_dims Var_{t = 1..k} [ x0hat_t ],   k = 10 of T = 1000 in the official code.

The window should cover the last noise levels, where a good sample has chosen its mode: the
official window spans noise sqrt(1 - abar_t) from 0.03 to 0.14; with T = 100 and the same beta
range, k = 5 spans 0.03 to 0.16. The filter is sensitive to the window: on lesson 01's 1D mixture at
T = 1000 the last 10 steps separate the two groups far better than the last 5 or the last 20.

Hallucinations have a large Hal. The official code draws N + 2,500 samples and keeps the N with
the lowest Hal (a rank rule); a fixed threshold works as well:

    (7) keep x  iff  Hal(x) is among the ``keep`` lowest,   or   Hal(x) < threshold.

Public API: :func:`linear_beta_schedule`, :func:`ddpm_loss`, :func:`ddpm_sample`,
:func:`trajectory_variance`, :func:`filter_by_variance`. ``python hallucination.py`` runs a demo
on a 1D mixture of three Gaussians (about 10 s of CPU time) and prints the hallucination rate
before and after filtering.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple, Union

import torch

__all__ = ["linear_beta_schedule", "ddpm_loss", "ddpm_sample", "trajectory_variance", "filter_by_variance"]

EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- input checks
def _check_tensor(name: str, value, min_ndim: int = 1) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {tuple(value.shape)}")


def _check_int(name: str, value, low: int, high: Optional[int] = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value}")


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def _check_schedule(name: str, values, low_open: float, high_closed: float) -> None:
    _check_tensor(name, values)
    if values.ndim != 1 or values.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor [T], got shape {tuple(values.shape)}")
    if not bool(((values > low_open) & (values <= high_closed)).all()):
        raise ValueError(f"{name} must lie in ({low_open}, {high_closed}]")


def _check_output(out: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or out.shape != x_t.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"eps_model returned shape {got}, expected {tuple(x_t.shape)} (the shape of x_t)")
    return out


def _broadcast(per_sample: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B] -> [B, 1, ..., 1] so that it multiplies a tensor shaped like ``like`` [B, ...]."""
    return per_sample.reshape(-1, *([1] * (like.ndim - 1)))


# --------------------------------------------------------------------------- the schedule
def linear_beta_schedule(T: int, beta_1: float, beta_T: float) -> torch.Tensor:
    """beta_t for t = 1..T, linearly spaced from ``beta_1`` to ``beta_T``: a float64 tensor [T].

    The official code uses T = 1000 with beta from 1e-3 to 0.2 (ten times DDPM's usual 0.02,
    so abar_t is essentially 0 beyond t = 250). Where a CPU must train many models, this course
    uses T = 100 with the same range: DDPM's standard schedule (1e-4 to 0.02 over 1000 steps)
    compressed to ten times fewer steps, ending, like it, in pure noise (abar_T = 2e-5; DDPM's: 4e-5).
    """
    _check_int("T", T, 1)
    for name, value in (("beta_1", beta_1), ("beta_T", beta_T)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a float, got {type(value).__name__}")
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {value}")
    if beta_T < beta_1:
        raise ValueError(f"beta_T must be >= beta_1, got beta_1={beta_1}, beta_T={beta_T}")
    return torch.linspace(beta_1, beta_T, T, dtype=torch.float64)


# --------------------------------------------------------------------------- training
def ddpm_loss(eps_model: EpsModel, x0: torch.Tensor, alphas_cumprod: torch.Tensor,
              generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The DDPM loss (2) on one batch: a scalar tensor.

    x0: clean data [B, ...]; alphas_cumprod: abar_t for t = 1..T, a tensor [T]
    (``torch.cumprod(1 - betas, 0)``). A step t is drawn uniformly from 1..T for every sample,
    and eps_model sees t / T.
    """
    if not callable(eps_model):
        raise TypeError(f"eps_model must be callable, got {type(eps_model).__name__}")
    _check_tensor("x0", x0, min_ndim=2)
    if x0.shape[0] == 0:
        raise ValueError("x0 must hold at least one sample, got batch size 0")
    _check_schedule("alphas_cumprod", alphas_cumprod, 0.0, 1.0)
    _check_generator(generator)
    T = alphas_cumprod.numel()
    t = torch.randint(1, T + 1, (x0.shape[0],), generator=generator, device=x0.device)
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    abar = _broadcast(alphas_cumprod.to(x0.device, x0.dtype)[t - 1], x0)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps                  # (1)
    eps_pred = _check_output(eps_model(x_t, t.to(x0.dtype) / T), x_t)
    return ((eps_pred - eps) ** 2).mean()                              # (2)


# --------------------------------------------------------------------------- sampling
@torch.no_grad()
def ddpm_sample(eps_model: EpsModel, shape: Sequence[int], betas: torch.Tensor, *,
                generator: Optional[torch.Generator] = None,
                record_x0: Union[bool, int] = True,
                dtype: torch.dtype = torch.float32) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Ancestral DDPM sampling (4) with the fixed-large variance sigma_t^2 = beta_t.

    shape: (B, ...) of the samples; betas: [T] (from :func:`linear_beta_schedule`); everything
    runs on ``betas.device`` in ``dtype``. Returns ``(samples [B, ...], x0_traj)`` where
    ``x0_traj`` is [T, B, ...], the predicted x_0 (3) at every step in reverse-time order
    (``x0_traj[0]`` at t = T, ``x0_traj[-1]`` at t = 1). ``record_x0=False`` returns None
    instead; an int k keeps only the last k steps ([k, B, ...]), which is all
    :func:`trajectory_variance` needs and saves memory on large batches.
    """
    if not callable(eps_model):
        raise TypeError(f"eps_model must be callable, got {type(eps_model).__name__}")
    if not isinstance(shape, (tuple, list, torch.Size)) or len(shape) < 2:
        raise ValueError(f"shape must be a sequence (B, ...) of at least 2 ints, got {shape!r}")
    for i, size in enumerate(shape):
        _check_int(f"shape[{i}]", size, 1)
    _check_schedule("betas", betas, 0.0, 1.0)
    if bool((betas >= 1).any()):
        raise ValueError("betas must lie in (0, 1)")
    _check_generator(generator)
    T = betas.numel()
    if isinstance(record_x0, bool):
        last = T if record_x0 else 0
    else:
        _check_int("record_x0", record_x0, 1, T)
        last = record_x0

    device = betas.device
    betas64 = betas.to(torch.float64)
    alphas_cumprod = torch.cumprod(1 - betas64, 0)
    x = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)   # x_T ~ N(0, I)
    traj = torch.empty((last, *shape), device=device, dtype=dtype) if last else None
    for t in range(T, 0, -1):
        beta, abar = betas64[t - 1].item(), alphas_cumprod[t - 1].item()
        # t / T for every row [B], as a view of one value: a model may compute its time embedding once
        t_batch = torch.full((1,), t / T, device=device, dtype=dtype).expand(shape[0])
        eps = eps_model(x, t_batch)
        if t == T:
            _check_output(eps, x)
        if traj is not None and t <= last:
            traj[last - t] = (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)        # (3)
        mean = (x - beta / math.sqrt(1 - abar) * eps) / math.sqrt(1 - beta)            # (4), mean
        if t > 1:
            z = torch.randn(x.shape, generator=generator, device=device, dtype=dtype)
            x = mean + math.sqrt(beta) * z                                             # (4), sigma_t^2 = beta_t
        else:
            x = mean
    return x, traj


# --------------------------------------------------------------------------- detection and filtering
def trajectory_variance(x0_traj: torch.Tensor, last_k: int = 10) -> torch.Tensor:
    """Hal (6): the variance of x0hat over the last ``last_k`` reverse steps, averaged over dims.

    x0_traj: [T, B, ...] in reverse-time order (as :func:`ddpm_sample` returns it). Returns [B].
    The variance is the population variance (numpy's default, as in the official code).
    """
    _check_tensor("x0_traj", x0_traj, min_ndim=2)
    _check_int("last_k", last_k, 2)
    if last_k > x0_traj.shape[0]:
        raise ValueError(f"last_k must be <= the trajectory length {x0_traj.shape[0]}, got {last_k}")
    window = x0_traj[-last_k:]                                         # [k, B, ...], t = k..1
    per_dim = window.var(dim=0, unbiased=False)                        # [B, ...]
    return per_dim.flatten(start_dim=1).mean(dim=1)                    # (6), [B]


def filter_by_variance(samples: torch.Tensor, scores: torch.Tensor, *, keep: Optional[int] = None,
                       threshold: Optional[float] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The filter (7): keep the ``keep`` lowest-score samples, or those with score < ``threshold``.

    samples: [B, ...]; scores: [B] (from :func:`trajectory_variance`). Give exactly one of
    ``keep`` (the official code's rank rule) and ``threshold``. Returns ``(kept [B', ...], mask [B])``
    with ``mask`` a bool tensor marking the kept samples (order preserved).
    """
    _check_tensor("samples", samples)
    _check_tensor("scores", scores)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D [B], got shape {tuple(scores.shape)}")
    if scores.shape[0] != samples.shape[0]:
        raise ValueError(f"scores must have one entry per sample: {scores.shape[0]} scores "
                         f"for {samples.shape[0]} samples")
    if (keep is None) == (threshold is None):
        raise ValueError("give exactly one of keep and threshold")
    if keep is not None:
        _check_int("keep", keep, 0, samples.shape[0])
        mask = torch.zeros(samples.shape[0], dtype=torch.bool, device=samples.device)
        mask[torch.argsort(scores, stable=True)[:keep].to(samples.device)] = True   # (7), rank rule
    else:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise TypeError(f"threshold must be a finite float, got {threshold!r}")
        mask = (scores < threshold).to(samples.device)                              # (7), threshold rule
    return samples[mask], mask


# --------------------------------------------------------------------------- demo
class _TinyEpsMLP(torch.nn.Module):
    """eps_theta(x_t, t/T) for the demo ([B, D], [B] -> [B, D]): a SiLU MLP whose every hidden layer
    also receives an embedding c of sinusoidal time features, h_{l+1} = SiLU(W_l h_l + V_l c)."""

    def __init__(self, dim: int, hidden: int = 64, depth: int = 3, time_features: int = 16):
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(0, math.log(1000), time_features // 2)))
        self.time = torch.nn.Sequential(torch.nn.Linear(time_features, hidden), torch.nn.SiLU(),
                                        torch.nn.Linear(hidden, hidden))
        self.input = torch.nn.Linear(dim, hidden)
        self.layers = torch.nn.ModuleList(torch.nn.Linear(hidden, hidden) for _ in range(depth))
        self.conditions = torch.nn.ModuleList(torch.nn.Linear(hidden, hidden) for _ in range(depth))
        self.out = torch.nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        angle = t[:, None] * self.freqs[None, :]
        c = self.time(torch.cat([angle.sin(), angle.cos()], dim=1))
        h = self.input(x)
        for layer, condition in zip(self.layers, self.conditions):
            h = torch.nn.functional.silu(layer(h) + condition(c))
        return self.out(h)


def _demo(seed: int = 0) -> None:
    """Train a small DDPM on three narrow 1D Gaussians, count and filter its hallucinations."""
    import time

    start = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    means, std = torch.tensor([1.0, 2.0, 3.0]), 0.05            # the official 1D experiment
    n_train, steps, batch = 2_000, 3_000, 256
    x_train = (means[torch.randint(0, 3, (n_train,), generator=gen)]
               + std * torch.randn(n_train, generator=gen))[:, None]

    # T = 100 steps, so the last 5 steps span the noise levels of the official last 10 of 1000
    betas = linear_beta_schedule(100, 1e-3, 0.2)
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    model = _TinyEpsMLP(dim=1)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    for _ in range(steps):
        batch_x = x_train[torch.randint(0, n_train, (batch,), generator=gen)]
        loss = ddpm_loss(model, batch_x, alphas_cumprod, generator=gen)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()

    n, drop, last_k = 20_000, 0.05, 5
    samples, x0_traj = ddpm_sample(model, (n, 1), betas, generator=gen, record_x0=last_k)
    distance = (samples - means[None, :]).abs().min(dim=1).values   # to the nearest mode
    hallucinated = distance > 4 * std                                # out of support: > 4 std from every mode
    scores = trajectory_variance(x0_traj, last_k=last_k)
    kept, mask = filter_by_variance(samples, scores, keep=int(n * (1 - drop)))
    print(f"1D mixture of N({means.tolist()}, {std}^2); {n_train} training points, {steps} steps")
    print(f"hallucination rate before filtering: {hallucinated.float().mean().item():.2%} of {n} samples "
          f"(farther than 4 std from every mode)")
    print(f"hallucination rate after filtering:  {hallucinated[mask].float().mean().item():.2%} of "
          f"{mask.sum().item()} kept (the {drop:.0%} highest trajectory variances dropped)")
    print(f"hallucinations removed: {(~mask[hallucinated]).float().mean().item():.1%}; "
          f"in-support samples kept: {mask[~hallucinated].float().mean().item():.1%}  "
          f"[{time.perf_counter() - start:.1f} s]")


if __name__ == "__main__":
    _demo()
