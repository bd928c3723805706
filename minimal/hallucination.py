"""Hallucination by mode interpolation, and the trajectory-variance filter that removes it.

A single-file reading of Aithal, Maini, Lipton and Kolter, *Understanding Hallucinations in
Diffusion Models through Mode Interpolation* (NeurIPS 2024, arXiv 2406.09358). It imports only
torch and the standard library; copy it into your project as it is.

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

Notation, fixed for this file
-----------------------------
DDPM (Ho et al. 2020). Steps t = 1..T; ``betas`` [T] holds beta_t (``betas[t - 1]``, from
:func:`linear_beta_schedule`), alpha_t = 1 - beta_t, abar_t = prod_{s<=t} alpha_s
(``torch.cumprod(1 - betas, 0)``), abar_0 = 1. The model is any callable ``eps_model(x_t, t)``:
``x_t`` [B, ...] and ``t`` a float tensor [B] holding t / T in (0, 1]; it returns eps_theta with
the shape of ``x_t``.

    (1) forward process      x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,       eps ~ N(0, I)
    (2) training loss        L = E_{t ~ U{1..T}, x_0, eps} || eps - eps_theta(x_t, t) ||^2
    (3) predicted x_0        x0hat_t = (x_t - sqrt(1 - abar_t) eps_theta(x_t, t)) / sqrt(abar_t)
    (4) ancestral step s -> t  (s > t >= 0 consecutive visited steps; t = s - 1 without skipping)
                             beta' = 1 - abar_s / abar_t      (= beta_s when t = s - 1)
                             x_t = (x_s - beta' / sqrt(1 - abar_s) eps_theta(x_s, s)) / sqrt(1 - beta')
                                   + sqrt(beta') z,   z ~ N(0, I),   no noise on the last step (t = 0).

(4) uses the "fixed large" variance sigma^2 = beta'. Visiting every step T, T - 1, ..., 1 is DDPM;
visiting a subsequence (``timesteps``) is the respacing of improved DDPM (Nichol and Dhariwal 2021):
the visited steps' abar define their own betas, and the model still sees the true t / T.

Why the ideal denoiser is a staircase
-------------------------------------
Take data from a mixture sum_k w_k N(mu_k, s^2 I). Then x_t given component k is
N(sqrt(abar) mu_k, v I) with v = abar s^2 + 1 - abar, and the minimiser of (2) is
eps* = (x_t - sqrt(abar) E[x_0 | x_t]) / sqrt(1 - abar) with

    (5) E[x_0 | x_t] = sum_k r_k(x_t) [ mu_k + c (x_t - sqrt(abar) mu_k) ],   c = sqrt(abar) s^2 / v,
        r_k(x_t) = softmax_k( log w_k - |x_t - sqrt(abar) mu_k|^2 / (2 v) ).

At small t, v is far below the squared spacing between modes, and r_k switches from 0 to 1 over a
width of about v / spacing around the midpoint between two modes: E[x_0 | x_t] is flat at mu_k inside
each basin and jumps between basins (a staircase, sharper as t -> 0). A network fitted by (2) with
finite data and steps is smooth: it replaces each jump by a ramp, and every x_t on the ramp is
denoised to a value between the modes. The closer the modes and the fewer the samples, the wider
the ramp, and the more hallucinations.

The detector and the filter
---------------------------
Record x0hat (3) at every visited step. For a sample that has settled in a basin the last steps all
predict the same mode; for a sample on a ramp the prediction drifts as x_t moves. The paper's score
(the official code's ``np.var(predx0[:, -10:])``, averaged over dimensions) is

    (6) Hal(x) = mean_over_dims Var_{last k visited steps} [ x0hat ],   k = 10 of T = 1000 officially.

Hallucinations have a large Hal. The official code draws N + 2,500 samples and keeps the N with
the lowest Hal (a rank rule); a fixed threshold works as well:

    (7) keep x  iff  Hal(x) is among the ``keep`` lowest   (or, with a fixed cut, Hal(x) < threshold).

The window is a number of *steps*, and it matters twice: through the noise levels it spans and
through how the sampler moves inside it. The official schedule (T = 1000, beta from 1e-3 to 0.2)
spends its last 10 steps between noise sqrt(1 - abar_t) = 0.03 and 0.14. The same beta range
compressed to T = 100 preserves those noise levels (its last 5 steps span 0.03 to 0.16), the
schedule's end in pure noise and the staircase (5) at each noise level. It does not preserve the
sampler's path: every step is ten times larger, so a sample crosses the window in 5 large moves
instead of 10 small ones, more samples stay on a ramp, and Hal is a variance of 5 points instead
of 10. Lesson 01's toy notebook samples one and the same 1D model on both: T = 100 leaves about
three times as many samples out of support (0.96% against 0.29%), and its filter removes 87% of
them instead of 97.5% at 96% kept. Results on the compressed schedule are not the official setting's.

Public API: :func:`linear_beta_schedule`, :func:`ddpm_loss` (2), :func:`ddpm_sample` (4),
:func:`trajectory_variance` (6), :func:`filter_by_variance` (7), :func:`filter_tradeoff`.
``python hallucination.py`` runs a demo (about 15 s on one CPU thread): it trains a small DDPM on
three narrow 1D Gaussians and prints the hallucination rate before and after filtering.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence

import torch

__all__ = ["linear_beta_schedule", "ddpm_loss", "ddpm_sample", "trajectory_variance", "filter_by_variance",
           "filter_tradeoff"]

EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------------------------
# Input checks: each names the argument and what was expected, before any work
# ----------------------------------------------------------------------------------------------
def _check(ok: bool, name: str, expected: str, got) -> None:
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {got!r}")


def _check_type(name: str, value, *types: type) -> None:
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise TypeError(f"{name} must be {' or '.join(t.__name__ for t in types)}, got {type(value).__name__}")


def _check_int(name: str, value, low: int, high: float = math.inf) -> None:
    _check_type(name, value, int)
    _check(low <= value <= high, name, f"in [{low}, {high}]", value)


def _check_tensor(name: str, value, ndim: int = 1, rows: int = 0) -> None:
    _check_type(name, value, torch.Tensor)
    _check(value.ndim >= ndim and len(value) >= rows, name, f"a tensor of {ndim}+ dims and {rows}+ rows", value.shape)


def _check_betas(betas) -> None:
    _check_tensor("betas", betas)
    _check(betas.ndim == 1 and bool(((betas > 0) & (betas < 1)).all()), "betas", "[T] in (0, 1)", betas)


def _timesteps(timesteps, T: int) -> list[int]:
    """``timesteps`` as a list of ints, checked: strictly decreasing steps in 1..T."""
    steps = torch.as_tensor(timesteps).tolist()
    _check_type("timesteps", steps[0] if steps else 1, int)
    decreasing = len(steps) > 0 and steps == sorted(set(steps), reverse=True)
    _check(decreasing and 1 <= steps[-1] <= steps[0] <= T, "timesteps", f"strictly decreasing steps in 1..{T}", steps)
    return steps


def _check_output(out, x_t: torch.Tensor) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or out.shape != x_t.shape:        # never broadcast
        raise ValueError(f"eps_model returned shape {tuple(getattr(out, 'shape', ()))}, expected {tuple(x_t.shape)} "
                         "(the shape of x_t)")
    return out


# ----------------------------------------------------------------------------------------------
# The schedule
# ----------------------------------------------------------------------------------------------
def linear_beta_schedule(T: int = 1000, beta_1: float = 1e-4, beta_T: float = 0.02) -> torch.Tensor:
    """beta_t for t = 1..T, linearly spaced from ``beta_1`` to ``beta_T`` (DDPM's by default).

    The official code of the paper uses T = 1000 with beta from 1e-3 to 0.2 (ten times DDPM's 0.02,
    so abar_t is essentially 0 beyond t = 250).

    Args:
        T: the number of steps, >= 1.
        beta_1: beta at t = 1, in (0, 1).
        beta_T: beta at t = T, in [beta_1, 1).

    Returns:
        betas [T], float64 (``betas[t - 1]`` = beta_t).
    """
    _check_int("T", T, 1)
    _check_type("beta_1", beta_1, float, int)
    _check_type("beta_T", beta_T, float, int)
    _check(0 < beta_1 <= beta_T < 1, "beta_1, beta_T", "0 < beta_1 <= beta_T < 1", (beta_1, beta_T))
    return torch.linspace(beta_1, beta_T, T, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def ddpm_loss(eps_model: EpsModel, x0: torch.Tensor, betas: torch.Tensor,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """The DDPM loss (2) on one batch, with t drawn uniformly from 1..T for every sample.

    Args:
        eps_model: ``eps_model(x_t [B, ...], t / T [B]) -> [B, ...]``.
        x0: clean data [B, ...], B >= 1.
        betas: the schedule [T] (from :func:`linear_beta_schedule`).
        generator: optional ``torch.Generator`` for t and eps (on x0's device).

    Returns:
        The loss, a scalar tensor.
    """
    _check_type("eps_model", eps_model, Callable)
    _check_tensor("x0", x0, ndim=2, rows=1)
    _check_betas(betas)
    _check_type("generator", generator, torch.Generator, type(None))
    T = betas.numel()
    abar = torch.cumprod(1 - betas.to(x0.device, torch.float64), 0).to(x0.dtype)
    t = torch.randint(1, T + 1, (x0.shape[0],), generator=generator, device=x0.device)
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    abar_t = abar[t - 1].reshape(-1, *[1] * (x0.ndim - 1))                  # [B, 1, ..., 1]
    x_t = abar_t.sqrt() * x0 + (1 - abar_t).sqrt() * eps                     # (1)
    eps_pred = _check_output(eps_model(x_t, t.to(x0.dtype) / T), x_t)
    return ((eps_pred - eps) ** 2).mean()                                    # (2)


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def ddpm_sample(eps_model: EpsModel, shape: Sequence[int], betas: torch.Tensor, *,
                timesteps: Sequence[int] | torch.Tensor | None = None, generator: torch.Generator | None = None,
                trajectory: list | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Ancestral DDPM sampling (4) with the fixed-large variance, over all steps or a subsequence.

    Args:
        eps_model: ``eps_model(x_t [B, ...], t / T [B]) -> [B, ...]``.
        shape: ``(B, ...)`` of the samples.
        betas: the training schedule [T]; sampling runs on ``betas.device`` in ``dtype``.
        timesteps: the steps to visit, strictly decreasing in 1..T (default T, T - 1, ..., 1);
            between visited steps the respaced beta' of (4) is used.
        generator: optional ``torch.Generator`` (on ``betas.device``).
        trajectory: if a list, receives x0hat (3) [B, ...] once per visited step, in the order
            visited; a ``collections.deque(maxlen=k)`` keeps only the last k (all that
            :func:`trajectory_variance` needs: memory).
        dtype: the samples' floating dtype.

    Returns:
        The samples x_0 [B, ...].
    """
    _check_type("eps_model", eps_model, Callable)
    _check(len(shape) >= 2 and all(isinstance(n, int) and n >= 1 for n in shape), "shape", "(B, ...), ints >= 1", shape)
    _check_betas(betas)
    steps = list(range(len(betas), 0, -1)) if timesteps is None else _timesteps(timesteps, len(betas))
    _check_type("generator", generator, torch.Generator, type(None))
    _check_type("trajectory", trajectory, list, deque, type(None))
    T, B, device = betas.numel(), shape[0], betas.device
    abar = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas.double().cpu(), 0)]).tolist()
    x = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)       # x_T ~ N(0, I)
    for s, t in zip(steps, steps[1:] + [0]):
        eps = _check_output(eps_model(x, torch.full((B,), s / T, device=device, dtype=dtype)), x)
        if trajectory is not None:
            trajectory.append((x - math.sqrt(1 - abar[s]) * eps) / math.sqrt(abar[s]))  # (3)
        beta = 1 - abar[s] / abar[t]                                                    # (4), respaced beta'
        x = (x - beta / math.sqrt(1 - abar[s]) * eps) / math.sqrt(1 - beta)            # (4), the mean
        if t > 0:
            x = x + math.sqrt(beta) * torch.randn(x.shape, generator=generator, device=device, dtype=dtype)
    return x


# ----------------------------------------------------------------------------------------------
# Detection and filtering
# ----------------------------------------------------------------------------------------------
def trajectory_variance(x0_traj: torch.Tensor | Sequence[torch.Tensor], last_k: int = 10) -> torch.Tensor:
    """Hal (6): the population variance of x0hat over the last ``last_k`` steps, averaged over dims.

    Args:
        x0_traj: the ``trajectory`` that :func:`ddpm_sample` filled (x0hat [B, ...] per visited step,
            in the order visited), or the same stacked, [n, B, ...].
        last_k: the window, 2 <= last_k <= n (numpy's default variance, as in the official code).

    Returns:
        Hal [B].
    """
    _check_int("last_k", last_k, 2)
    if isinstance(x0_traj, (list, tuple, deque)) and x0_traj:
        x0_traj = torch.stack(tuple(x0_traj)[-last_k:])                 # a trajectory: its last k entries
    _check_tensor("x0_traj", x0_traj, ndim=2, rows=last_k)
    window = x0_traj[-last_k:]                                         # [k, B, ...]
    variance = ((window - window.mean(dim=0)) ** 2).mean(dim=0)      # population variance [B, ...]
    return variance.flatten(start_dim=1).mean(dim=1)                 # (6), [B]


def filter_by_variance(samples: torch.Tensor, scores: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The filter (7) of the official code: keep the ``keep`` samples with the lowest scores.

    A fixed threshold is ``scores < threshold``; :func:`filter_tradeoff` shows every choice of ``keep``.

    Args:
        samples: [B, ...].
        scores: Hal [B] (from :func:`trajectory_variance`).
        keep: how many to keep, 0 <= keep <= B.

    Returns:
        ``(kept [keep, ...], mask [B])``: the kept samples in their order, and a bool mask of them.
    """
    _check_tensor("samples", samples)
    _check(isinstance(scores, torch.Tensor) and scores.shape == samples.shape[:1], "scores", "a tensor [B]", scores)
    _check_int("keep", keep, 0, len(samples))
    mask = torch.zeros(len(samples), dtype=torch.bool, device=samples.device)
    mask[torch.argsort(scores, stable=True)[:keep].to(samples.device)] = True   # (7), the rank rule
    return samples[mask], mask


def filter_tradeoff(scores: torch.Tensor, hallucinated: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The paper's measure of (7): for every ``keep`` = 1..B, the share of hallucinations removed and of
    in-support samples kept ("removes > 95% of hallucinations while retaining 96% of in-support samples").

    Args:
        scores: Hal [B].
        hallucinated: bool [B], True for out-of-support samples (both groups non-empty).

    Returns:
        ``(removed [B], kept [B], thresholds [B])``: entry i keeps the i + 1 lowest scores, which is
        the threshold rule just above ``thresholds[i]``.
    """
    _check_tensor("scores", scores)
    _check_type("hallucinated", hallucinated, torch.Tensor)
    _check(hallucinated.shape == scores.shape and 0 < hallucinated.sum() < len(scores), "hallucinated",
           "shaped like scores, with some but not all True", hallucinated)
    order = torch.argsort(scores, stable=True)
    h = hallucinated[order.to(hallucinated.device)].double()
    removed = 1 - torch.cumsum(h, 0) / h.sum()                          # hallucinations not among the kept
    kept = torch.cumsum(1 - h, 0) / (1 - h).sum()                       # in-support samples among the kept
    return removed, kept, scores[order]


# ----------------------------------------------------------------------------------------------
# Demo
# ----------------------------------------------------------------------------------------------
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

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    means, std = torch.tensor([1.0, 2.0, 3.0]), 0.05            # the official 1D experiment
    n_train, steps, batch, n, last_k = 2_000, 3_000, 512, 10_000, 10
    x_train = (means[torch.randint(0, 3, (n_train,), generator=gen)]
               + std * torch.randn(n_train, generator=gen))[:, None]
    betas = linear_beta_schedule(1000, 1e-3, 0.2)               # the official schedule
    model = _TinyEpsMLP(dim=1)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    for _ in range(steps):
        loss = ddpm_loss(model, x_train[torch.randint(0, n_train, (batch,), generator=gen)], betas, generator=gen)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()

    # abar_t < 0.02 above t = 200: cross that pure-noise stretch in strides of 40, then visit every step
    timesteps = list(range(1000, 200, -40)) + list(range(200, 0, -1))
    window = deque(maxlen=last_k)                               # only the last k x0hat are kept
    samples = ddpm_sample(model, (n, 1), betas, timesteps=timesteps, generator=gen, trajectory=window)
    hallucinated = (samples - means).abs().min(dim=1).values > 4 * std      # > 4 std from every mode
    scores = trajectory_variance(window, last_k=last_k)
    rows = [("no filter", torch.ones(n, dtype=torch.bool)), ("random 95%", torch.rand(n, generator=gen) < 0.95),
            ("variance filter 95%", filter_by_variance(samples, scores, keep=int(0.95 * n))[1])]
    print(f"1D mixture N({means.tolist()}, {std}^2), {n_train:,} points, {steps:,} training steps; {n:,} samples, "
          f"{len(timesteps)} of T = 1000 steps (beta 1e-3..0.2), Hal over the last {last_k}")
    print(f"{'':<20} {'kept':>7} {'hallucinated':>13} {'hallucinations removed':>22}")
    for name, mask in rows:
        print(f"{name:<20} {mask.sum().item():>7,} {hallucinated[mask].float().mean().item():>13.2%} "
              f"{(~mask[hallucinated]).float().mean().item():>22.1%}")
    print(f"[{time.perf_counter() - start:.1f} s on one thread]")


if __name__ == "__main__":
    _demo()
