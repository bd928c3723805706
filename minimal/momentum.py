"""Divergence artifacts of fast diffusion samplers, and the momentum that mitigates them.

A single-file reading of Wizadwongsa, Chinchuthakun, Khungurn, Raj and Suwajanakorn,
*Diffusion Sampling with Momentum for Mitigating Divergence Artifacts* (ICLR 2024).
It imports only torch, numpy and the standard library; copy it into your project as it is.

The claim
---------
A deterministic diffusion sampler is an ODE solver. High-order multistep solvers (PLMS, i.e.
Adams-Bashforth) are accurate with few steps, but their *stability region* is small: when a
step times a local rate of the ODE falls outside it, the numerical solution grows without bound.
With a large guidance scale the rates grow, so at few steps the sample's values explode into
saturated blotches -- "divergence artifacts". Polyak's Heavy Ball momentum (HB) widens the
stability region at the price of dropping to first order; the paper's Generalized Heavy Ball
(GHVB) keeps order r and widens the region a little, trading accuracy for stability with beta.

Notation, fixed for this file
-----------------------------
DDPM steps t = 1..T, a schedule beta_t (:func:`linear_beta_schedule`; ``betas[t - 1]`` is beta_t),
abar_t = prod_{s <= t} (1 - beta_s) (the paper's alpha_t; ``torch.cumprod(1 - betas, 0)``), and
abar_0 = 1 for the clean data:

    (1) forward process   x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,
    (2) the paper's ODE   d xbar / d sigma = epsbar(xbar, sigma)                    (Eq. 2)
        with              sigma = sqrt(1 - abar_t) / sqrt(abar_t),   xbar = x_t / sqrt(abar_t),
                          epsbar(xbar, sigma) = eps_theta(x_t, t).

The model is ``eps_model(x_t, t, cond)`` with x_t [B, ...], ``t`` a float tensor [B] holding t / T
in (0, 1], and ``cond`` the condition or ``None`` (the null class); it returns eps [B, ...], the
shape of x_t. With classifier-free guidance of scale s (s = 1 is the plain conditional model)

    (3) eps_theta = eps(x_t, t, null) + s [eps(x_t, t, c) - eps(x_t, t, null)].

The samplers take ``timesteps``: integer DDPM steps in 1..T, strictly decreasing. The model is
evaluated at each of them in turn and the last step goes on to the clean sample (abar = 1,
sigma = 0), so N timesteps are N steps and N model evaluations (2N with guidance). Sampling runs
(2) from a large sigma down to 0, so the steps delta_n = sigma_{n+1} - sigma_n are negative.
Euler's method on (2) is exactly DDIM.

Below, ``f_n`` is the ODE's right-hand side at step n (for sampling, f_n = epsbar_n), and every
method takes the form  x_{n+1} = x_n + delta_n ehat_n  for a "direction" ehat_n built from past f's.

Adams-Bashforth (AB-k; PLMS-k in diffusion)
-------------------------------------------
    (4) ehat_n = sum_{i=0}^{k-1} b_i f_{n-i}
        b = (1),  (3, -1)/2,  (23, -16, 5)/12,  (55, -59, 37, -9)/24      for k = 1, 2, 3, 4.

Heavy Ball on AB-k ("PLMS4 w/ HB 0.8" is k = 4, beta = 0.8; Eq. 14). The moving average is
taken *after* the AB mixing:

    (5) v_{n+1} = (1 - beta) v_n + beta sum_i b_i f_{n-i},     ehat_n = v_{n+1}.

beta in (0, 1] is the damping: beta = 1 is plain AB-k, smaller beta is stronger momentum.
Eliminating v gives  (x_{n+1} - x_n) - (1 - beta)(x_n - x_{n-1}) = delta beta sum_i b_i f_{n-i}:
Polyak's method with step delta beta and momentum 1 - beta. Its order is 1 for every beta < 1
(Theorem 1), whatever k is.

Generalized Heavy Ball (GHVB r, Eq. 16-19, Alg. 2). Write AB in backward differences,
Delta x_{n+1} = delta (1 + Delta/2 + 5 Delta^2/12 + 3 Delta^3/8 + ...) f_n, multiply both sides
by the HB operator (beta + (1 - beta) Delta), truncate to r terms and feed the moving average v
in place of f. The moving average is taken *before* the (beta-dependent) mixing:

    (6) v_{n+1} = (1 - beta) v_n + beta f_n,      ehat_n = (1 / beta) sum_{i=0}^{r-1} c_i(beta) v_{n+1-i}
        c(beta) = (beta)                                                              r = 1
                  ((2 + beta), -(2 - beta)) / 2                                       r = 2
                  ((18 + 5 beta), -(24 - 8 beta), (6 - beta)) / 12                    r = 3
                  ((46 + 9 beta), -(78 - 19 beta), (42 - 5 beta), -(10 - beta)) / 24  r = 4

At beta = 1, GHVB r is AB-r; as beta -> 0 it tends to AB-(r-1) (r = 1 is Euler + HB). GHVB r
has order r (Theorem 2). The paper's "momentum number" m names both at once: order ceil(m) and
beta = the fractional part, so GHVB 3.8 is r = 4, beta = 0.8 and GHVB 0.8 is Euler + HB 0.8.
(The transcribed paper has sign and index typos in Eq. 19 and Alg. 1-2; (6) follows the
official code, which is right.)

Start-up. A k-step method needs k past values. Like the official code, :func:`lmm_solve` and
:func:`lmm_sample` start with lower orders -- step 0 uses order 1, step 1 order 2, ... -- and
initialise v with the first value it would average. This warm-up caps the *observed* order of
every method at 2 (the Euler first step leaves an O(delta^2) error), which is where the
paper's "fractional orders" of GHVB come from. :func:`lmm_solve` can instead start from exact
values (``start=``), which shows the true orders.

Stability (Sec. 3.2, App. A-B)
------------------------------
Near a converged point the ODE behaves like the test equation y' = lambda y, with lambda an
eigenvalue of the Jacobian of epsbar. Put z = delta lambda. Every method above is a linear
multistep method  A(E) x_{n+1} = delta B(E) f_{n+1}  with the backward shift E x_n = x_{n-1}:

    (7) AB-k       A(w) = 1 - w,                          B(w) = sum_i b_i w^{i+1}
        AB-k + HB  A(w) = (1 - w)(1 - (1 - beta) w),      B(w) = beta sum_i b_i w^{i+1}
        GHVB r     A(w) = (1 - w)(1 - (1 - beta) w),      B(w) = sum_i c_i(beta) w^{i+1}

Trying x_n = zeta^n turns the test equation into the characteristic polynomial
zeta^K A(1/zeta) - z zeta^K B(1/zeta) = 0. The method is stable at z when every root has
|zeta| <= 1 and those on the unit circle are simple (the root condition); the set of such z is
the stability region. Its boundary is traced by the "boundary locus"

    (8) z = A(w) / B(w),   w = exp(-i theta),  theta in [-pi, pi].

On the negative real axis the stable intervals end at -2, -1, -6/11, -3/10 for AB-1..4, and
HB stretches each by exactly (2 - beta) / beta; GHVB's grow by much less. A step outside the
region makes the component along that eigenvector grow like |zeta|^n: divergence.

DPM-Solver++(2M), with and without HB
-------------------------------------
In the data-prediction form with alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t),
lambda_t = log(alpha_t / sigma_t), x0-predictions m = (x_t - sigma_t eps_theta) / alpha_t and
h = lambda_t - lambda_s for a step from s to t:

    (9) D = m_0 + (1 / (2 r_0)) (m_0 - m_1),   r_0 = h_0 / h   (h_0: the previous step's h)
        HB:  v <- (1 - beta) v + beta D   (v starts at the first D)
        x_t = (sigma_t / sigma_s) x_s - alpha_t (exp(-h) - 1) v           (v = D without HB)

The first step and the last (to sigma = 0, where h is infinite) are first order (D = m_0), as in
DPM-Solver++ and the official code, which applies momentum only inside second-order steps.

Time grids
----------
At 10-20 steps the answer depends on *where* the steps are, so each solver runs on the grid its
official code uses (:func:`official_timesteps`):

    (10) DDIM / PLMS / HB / GHVB: DDIM's "leading" spacing with offset 1 (the Stable Diffusion
         configuration the paper's samplers wrap): t_k = k (T // N) + 2 for k = N-1, ..., 0
         (diffusers' index k (T // N) + 1 is DDPM step t = index + 1);
         DPM-Solver++: DPM-Solver's grid for a discrete-time model, uniform in lambda between
         t = T and t = 1 ("logSNR", the paper's ADM experiments), N + 1 points of which the
         model sees the first N, rounded to integer steps.

The naive grid, N steps evenly from T down to 1 (:func:`uniform_timesteps`), evaluates the model
at t = 1, where sigma is 0.01: with N = 10 the step from t = 112 to t = 1 covers 0.2% of the range
of sigma but 38% of the range of lambda, and multistep methods extrapolate wildly across it.

``python momentum.py`` runs a demo (about 3 s on one CPU thread): the stable intervals, and guided
sampling of a 2-D mixture with its exact eps at 8 steps.
"""
from __future__ import annotations

import math
import numbers
import time
from typing import Callable, Sequence

import numpy as np
import torch

__all__ = [
    "linear_beta_schedule", "official_timesteps", "uniform_timesteps", "lmm_sample", "dpm_solver_pp_sample",
    "sample_by_name", "PAPER_NAMES", "momentum_number", "lmm_solve", "lmm_polynomials", "is_stable",
    "stability_boundary", "real_stability_interval",
]

METHODS = ("ab", "hb", "ghvb")                 # the linear multistep methods (4), (5), (6)

# (4): Adams-Bashforth coefficients b_i, newest first.
AB_COEFFS = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}


def ghvb_coeffs(order: int, beta: float) -> tuple[float, ...]:
    """c_i(beta) of (6), newest first; they sum to beta, and equal beta * b_i at beta = 1."""
    b = beta
    return {
        1: (b,),
        2: ((2 + b) / 2, -(2 - b) / 2),
        3: ((18 + 5 * b) / 12, -(24 - 8 * b) / 12, (6 - b) / 12),
        4: ((46 + 9 * b) / 24, -(78 - 19 * b) / 24, (42 - 5 * b) / 24, -(10 - b) / 24),
    }[order]


# ----------------------------------------------------------------------------------------------
# Input checks (all done before any work)
# ----------------------------------------------------------------------------------------------

def _check_int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")


def _check_real(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not low < value <= high:
        raise ValueError(f"{name} must be in ({low}, {high}], got {value}")


def _check_method(method, order, beta):
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    _check_int("order", order, 1, 4)
    _check_real("beta", beta, 0.0, 1.0)
    if method == "ab" and beta != 1.0:
        raise ValueError(f"beta must be 1 for method 'ab' (use 'hb' or 'ghvb' for momentum), got {beta}")


def _check_callable(name, fn):
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {type(fn).__name__}")


def _check_betas(betas):
    if not isinstance(betas, torch.Tensor):
        raise TypeError(f"betas must be a torch.Tensor [T], got {type(betas).__name__}")
    if betas.ndim != 1 or len(betas) < 2 or not ((betas > 0) & (betas < 1)).all():
        raise ValueError(f"betas must be a 1-D tensor [T], T >= 2, with values in (0, 1), got shape {tuple(betas.shape)}")


def _check_timesteps(timesteps, T):
    steps = torch.as_tensor(timesteps)
    if steps.ndim != 1 or len(steps) < 1 or steps.is_floating_point() or steps.dtype == torch.bool:
        raise ValueError("timesteps must be a non-empty 1-D sequence of ints")
    if not (steps[1:] < steps[:-1]).all() or steps.min() < 1 or steps.max() > T:
        raise ValueError(f"timesteps must be strictly decreasing DDPM steps in 1..{T}, got {steps.tolist()}")
    return steps.tolist()


def _checked(eps, x):
    """The model's output, if it has x_t's shape (a wrong shape would broadcast silently)."""
    if not isinstance(eps, torch.Tensor) or eps.shape != x.shape:
        shape = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(f"eps_model returned shape {shape}, expected {tuple(x.shape)} (the shape of x_t)")
    return eps


# ----------------------------------------------------------------------------------------------
# The multistep update, in the "velocity" form of the official code: (4), (5), (6)
# ----------------------------------------------------------------------------------------------

class _Direction:
    """Turns each new f_n into the direction ehat_n, keeping the history a k-step method needs."""

    def __init__(self, method: str, order: int, beta: float):
        self.method, self.order, self.beta = method, order, beta
        self.history: list = []      # past f's (AB, HB) or past v's (GHVB), newest last
        self.v = None                # the velocity of HB / GHVB

    def _remember(self, value):
        self.history = (self.history + [value])[-self.order:]

    def __call__(self, f):
        if self.method in ("ab", "hb"):
            self._remember(f)
            k = len(self.history)                                              # lower-order warm-up
            p = sum(b * e for b, e in zip(AB_COEFFS[k], reversed(self.history)))   # (4)
            if self.method == "ab":
                return p
            self.v = p if self.v is None else (1 - self.beta) * self.v + self.beta * p  # (5)
            return self.v
        self.v = f if self.v is None else (1 - self.beta) * self.v + self.beta * f     # (6), left
        self._remember(self.v)
        c = ghvb_coeffs(len(self.history), self.beta)
        return sum(ci * v for ci, v in zip(c, reversed(self.history))) / self.beta    # (6), right


def lmm_polynomials(method: str, order: int, beta: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients of A(w) and B(w) in (7), lowest power of w first, padded to one length K + 1.

    The method reads  sum_j a_j x_{n+1-j} = delta sum_j b_j f_{n+1-j}  with a_0 = 1, b_0 = 0.

    Args:
        method: "ab" (4), "hb" (5) or "ghvb" (6).
        order: k or r, 1..4.
        beta: the damping in (0, 1]; must be 1 for "ab".

    Returns:
        (a, b), two float arrays [K + 1].
    """
    _check_method(method, order, beta)
    if method == "ab":
        a, b = np.array([1.0, -1.0]), np.array((0.0,) + AB_COEFFS[order])
    else:
        a = np.convolve([1.0, -1.0], [1.0, -(1.0 - beta)])          # (1 - w)(1 - (1 - beta) w)
        mix = beta * np.array(AB_COEFFS[order]) if method == "hb" else np.array(ghvb_coeffs(order, beta))
        b = np.concatenate([[0.0], mix])
    n = max(len(a), len(b))
    return np.pad(a, (0, n - len(a))), np.pad(b, (0, n - len(b)))


# ----------------------------------------------------------------------------------------------
# Solving dx/dt = f(x, t)
# ----------------------------------------------------------------------------------------------

def _check_grid(ts):
    try:
        ts = torch.as_tensor(ts, dtype=torch.float64).cpu()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"ts must be a 1-D sequence of numbers, got {type(ts).__name__}") from None
    d = ts[1:] - ts[:-1] if ts.ndim == 1 else ts
    if ts.ndim != 1 or len(ts) < 2 or not torch.isfinite(ts).all() or not ((d > 0).all() or (d < 0).all()):
        raise ValueError("ts must be a finite, strictly monotone 1-D grid of at least 2 points")
    return ts.tolist()


def lmm_solve(
    f: Callable[[torch.Tensor, float], torch.Tensor],
    x0: torch.Tensor,
    ts: Sequence[float],
    method: str,
    order: int = 1,
    beta: float = 1.0,
    *,
    start: Callable[[float], torch.Tensor] | None = None,
    trajectory: list | None = None,
) -> torch.Tensor:
    """Solve dx/dt = f(x, t) from x(ts[0]) = x0 on the grid ts with AB-k, AB-k + HB or GHVB r.

    The steps delta_n = t_{n+1} - t_n may vary; the coefficients stay those of a uniform grid, as
    in the official code. By default the method starts with lower orders like the official code.

    Args:
        f: the right-hand side, ``f(x, t) -> dx/dt`` with x of shape [...] and t a float.
        x0: the initial value, any shape [...].
        ts: the grid t_0, ..., t_N [N + 1], strictly increasing or strictly decreasing, N >= 1.
        method: "ab" (4), "hb" (5) or "ghvb" (6).
        order: k or r, 1..4.
        beta: the damping in (0, 1]; must be 1 for "ab".
        start: ``None``, or ``start(t) -> x(t)`` (e.g. the exact solution): the first K - 1 steps
            are then taken from it and the method runs in its x-only form (7), which shows its
            true order of convergence (K = len(lmm_polynomials(...)[0]) - 1).
        trajectory: a list (or ``collections.deque(maxlen=k)``, which keeps only the last k)
            that receives the state x_{n+1} [...] after each step n = 0..N-1.

    Returns:
        x(ts[-1]), with the shape of x0.
    """
    _check_callable("f", f)
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a torch.Tensor, got {type(x0).__name__}")
    if start is not None:
        _check_callable("start", start)
    _check_method(method, order, beta)
    ts = _check_grid(ts)
    record = trajectory.append if trajectory is not None else lambda x: None

    if start is None:
        x, direction = x0, _Direction(method, order, beta)
        for n in range(len(ts) - 1):
            x = x + (ts[n + 1] - ts[n]) * direction(f(x, ts[n]))            # x_{n+1} = x_n + delta ehat
            record(x)
        return x
    a, b = lmm_polynomials(method, order, beta)
    K = len(a) - 1
    xs = [x0]
    for n in range(1, min(K, len(ts))):
        xs.append(torch.as_tensor(start(ts[n]), dtype=x0.dtype, device=x0.device).reshape(x0.shape))
        record(xs[-1])
    fs = [f(x, t) for x, t in zip(xs, ts)]
    for n in range(K - 1, len(ts) - 1):
        # (7): x_{n+1} = -sum_{j>=1} a_j x_{n+1-j} + delta sum_{j>=1} b_j f_{n+1-j}
        xs.append(-sum(a[j] * xs[n + 1 - j] for j in range(1, K + 1))
                  + (ts[n + 1] - ts[n]) * sum(b[j] * fs[n + 1 - j] for j in range(1, K + 1)))
        record(xs[-1])
        if n + 1 < len(ts) - 1:
            fs.append(f(xs[-1], ts[n + 1]))
    return xs[-1]


# ----------------------------------------------------------------------------------------------
# The schedule and the time grids (10)
# ----------------------------------------------------------------------------------------------

def linear_beta_schedule(T: int = 1000, beta_1: float = 1e-4, beta_T: float = 0.02) -> torch.Tensor:
    """DDPM's linear schedule: beta_t for t = 1..T, evenly from beta_1 to beta_T.

    Args:
        T: the number of steps, >= 2.
        beta_1, beta_T: the first and last beta, 0 < beta_1 <= beta_T < 1.

    Returns:
        betas, float64 [T] (betas[t - 1] = beta_t).
    """
    _check_int("T", T, 2, 10**7)
    _check_real("beta_1", beta_1, 0.0, 1.0)
    _check_real("beta_T", beta_T, 0.0, 1.0)
    if not beta_1 <= beta_T < 1:
        raise ValueError(f"need beta_1 <= beta_T < 1, got beta_1={beta_1}, beta_T={beta_T}")
    return torch.linspace(beta_1, beta_T, T, dtype=torch.float64)


def uniform_timesteps(num_steps: int, T: int = 1000) -> list[int]:
    """The naive grid: ``num_steps`` DDPM steps evenly from T down to 1 (the model then sees t = 1).

    Returns:
        a list [num_steps] of strictly decreasing ints in 1..T.
    """
    _check_int("T", T, 2, 10**7)
    _check_int("num_steps", num_steps, 1, T)
    return torch.linspace(T, 1, num_steps, dtype=torch.float64).round().long().tolist()


def official_timesteps(betas: torch.Tensor, num_steps: int, solver: str) -> list[int]:
    """The grid (10) that the official code of ``solver`` samples on.

    Args:
        betas: the schedule [T].
        num_steps: N, the number of steps (and of model evaluations), 1..T - 1.
        solver: "ddim" (DDIM, PLMS, HB and GHVB: DDIM's leading spacing, offset 1) or
            "dpm-solver" (DPM-Solver++ with or without HB: uniform in lambda from t = T to t = 1).

    Returns:
        a list [N] of strictly decreasing DDPM steps in 1..T.
    """
    _check_betas(betas)
    T = len(betas)
    _check_int("num_steps", num_steps, 1, T - 1)
    if solver == "ddim":
        return [k * (T // num_steps) + 2 for k in range(num_steps - 1, -1, -1)]      # (10)
    if solver != "dpm-solver":
        raise ValueError(f"solver must be 'ddim' or 'dpm-solver', got {solver!r}")
    abar = torch.cumprod(1 - betas.double().cpu(), 0)
    lam = (0.5 * torch.log(abar / (1 - abar))).numpy()                # lambda_t for t = 1..T, decreasing
    targets = np.linspace(lam[-1], lam[0], num_steps + 1)[:-1]        # (10): uniform in lambda
    steps = np.interp(targets, lam[::-1], np.arange(T, 0, -1)).round().astype(int)
    steps = np.maximum(steps, np.arange(num_steps, 0, -1))             # keep them distinct after rounding
    for i in range(1, num_steps):
        steps[i] = min(steps[i], steps[i - 1] - 1)
    return _check_timesteps(steps.tolist(), T)


# ----------------------------------------------------------------------------------------------
# Diffusion sampling on the ODE (2)
# ----------------------------------------------------------------------------------------------

def _check_sampling(eps_model, x_T, betas, timesteps, guidance, cond):
    """The checks shared by the samplers; returns abar at the timesteps and at the end (1.0)."""
    _check_callable("eps_model", eps_model)
    if not isinstance(x_T, torch.Tensor) or not x_T.is_floating_point():
        raise TypeError(f"x_T must be a floating-point torch.Tensor [B, ...], got {getattr(x_T, 'dtype', type(x_T))}")
    if x_T.ndim < 1 or len(x_T) == 0:
        raise ValueError(f"x_T must have shape [B, ...] with B >= 1, got {tuple(x_T.shape)}")
    _check_betas(betas)
    steps = _check_timesteps(timesteps, len(betas))
    _check_real("guidance", guidance, -math.inf, math.inf)
    if not 0 <= guidance < math.inf:
        raise ValueError(f"guidance must be a finite number >= 0, got {guidance}")
    if guidance != 1.0 and cond is None:
        raise ValueError(f"cond must be given when guidance != 1 (got guidance={guidance}): "
                         "classifier-free guidance mixes conditional and unconditional predictions")
    abar = torch.cumprod(1 - betas.double().cpu(), 0)
    return steps, [abar[t - 1].item() for t in steps] + [1.0]         # the last step ends at abar = 1


def _guided_eps(eps_model, x, t, T, guidance, cond):
    """(3) at DDPM step t; the model sees t / T as a float [B]. One call when guidance == 1."""
    t_in = torch.full((x.shape[0],), t / T, dtype=torch.promote_types(x.dtype, torch.float32), device=x.device)
    if guidance == 1.0:
        return _checked(eps_model(x, t_in, cond), x)
    eps_uncond = _checked(eps_model(x, t_in, None), x)
    return eps_uncond + guidance * (_checked(eps_model(x, t_in, cond), x) - eps_uncond)


def lmm_sample(
    eps_model: Callable,
    x_T: torch.Tensor,
    betas: torch.Tensor,
    timesteps: Sequence[int],
    method: str = "ab",
    order: int = 1,
    beta: float = 1.0,
    *,
    guidance: float = 1.0,
    cond=None,
    trajectory: list | None = None,
) -> torch.Tensor:
    """Sample the ODE (2) with DDIM, PLMS-k, PLMS-k + HB or GHVB r: x_T -> x_0.

    Args:
        eps_model: ``eps_model(x_t, t, cond) -> eps`` [B, ...], t a float tensor [B] of t / T.
        x_T: the starting noise at timesteps[0], [B, ...] (usually standard normal).
        betas: the schedule [T] (:func:`linear_beta_schedule`).
        timesteps: strictly decreasing DDPM steps in 1..T, e.g. ``official_timesteps(betas, N, "ddim")``.
        method: "ab" (4; order 1 is DDIM, order k > 1 PLMS-k), "hb" (5) or "ghvb" (6).
        order: k or r, 1..4.
        beta: the damping in (0, 1]; must be 1 for "ab".
        guidance: the classifier-free guidance scale s of (3); s != 1 needs ``cond``.
        cond: the condition passed to eps_model (e.g. class labels [B]), or None.
        trajectory: a list (or ``collections.deque(maxlen=k)``, which keeps only the last k)
            that receives the state x [B, ...] after each step.

    Returns:
        The sample x_0 [B, ...], in x_T's dtype.
    """
    steps, abar = _check_sampling(eps_model, x_T, betas, timesteps, guidance, cond)
    _check_method(method, order, beta)
    sigma = [math.sqrt((1 - a) / a) for a in abar]                          # (2)
    direction = _Direction(method, order, beta)
    xbar = x_T / math.sqrt(abar[0])
    for n, t in enumerate(steps):
        eps = _guided_eps(eps_model, xbar * math.sqrt(abar[n]), t, len(betas), guidance, cond)   # epsbar_n
        xbar = xbar + (sigma[n + 1] - sigma[n]) * direction(eps)           # xbar_{n+1} = xbar_n + delta ehat
        if trajectory is not None:
            trajectory.append(xbar * math.sqrt(abar[n + 1]))
    return xbar * math.sqrt(abar[-1])


def dpm_solver_pp_sample(
    eps_model: Callable,
    x_T: torch.Tensor,
    betas: torch.Tensor,
    timesteps: Sequence[int],
    beta: float = 1.0,
    *,
    guidance: float = 1.0,
    cond=None,
    trajectory: list | None = None,
) -> torch.Tensor:
    """Sample with DPM-Solver++(2M) (9), with Heavy Ball momentum when beta < 1: x_T -> x_0.

    Args:
        eps_model, x_T, betas, guidance, cond, trajectory: as in :func:`lmm_sample`.
        timesteps: strictly decreasing DDPM steps in 1..T, e.g. ``official_timesteps(betas, N, "dpm-solver")``.
        beta: the HB damping in (0, 1]; 1 is plain DPM-Solver++(2M).

    Returns:
        The sample x_0 [B, ...], in x_T's dtype.
    """
    steps, abar = _check_sampling(eps_model, x_T, betas, timesteps, guidance, cond)
    _check_real("beta", beta, 0.0, 1.0)
    alpha, sig = [math.sqrt(a) for a in abar], [math.sqrt(1 - a) for a in abar]
    lam = [math.log(a / s) if s > 0 else math.inf for a, s in zip(alpha, sig)]
    x, m_prev, h_prev, v = x_T, None, None, None
    for n, t in enumerate(steps):
        m = (x - sig[n] * _guided_eps(eps_model, x, t, len(betas), guidance, cond)) / alpha[n]   # x0-prediction
        if sig[n + 1] == 0.0:                                               # the last step: x_0 = m_0
            x = m
        else:
            h = lam[n + 1] - lam[n]
            D = m
            if m_prev is not None:                                          # second order
                D = m + (m - m_prev) * (h / (2 * h_prev))                   # (9), 1 / (2 r_0) = h / (2 h_0)
                v = D if v is None else (1 - beta) * v + beta * D           # (9), HB
                D = v
            x = (sig[n + 1] / sig[n]) * x - alpha[n + 1] * math.expm1(-h) * D   # (9)
            m_prev, h_prev = m, h
        if trajectory is not None:
            trajectory.append(x)
    return x


# ----------------------------------------------------------------------------------------------
# The paper's names
# ----------------------------------------------------------------------------------------------

# name -> (method, order, beta); "dpm++" is :func:`dpm_solver_pp_sample`, the rest :func:`lmm_sample`.
PAPER_NAMES = {
    "DDIM": ("ab", 1, 1.0),
    "PLMS2": ("ab", 2, 1.0),
    "PLMS4": ("ab", 4, 1.0),
    "PLMS4 + HB 0.9": ("hb", 4, 0.9),
    "PLMS4 + HB 0.8": ("hb", 4, 0.8),
    "GHVB 1.5": ("ghvb", 2, 0.5),
    "GHVB 3.8": ("ghvb", 4, 0.8),
    "GHVB 3.2": ("ghvb", 4, 0.2),
    "DPM-Solver++": ("dpm++", 2, 1.0),
    "DPM-Solver++ w/ HB 0.8": ("dpm++", 2, 0.8),
}


def momentum_number(m: float) -> tuple[int, float]:
    """The paper's momentum number m -> (order, beta), as the official code's ``update_order``.

    Args:
        m: a number in (0, 4]. A fractional m has order floor(m) + 1 and beta its fractional part
            (3.8 -> (4, 0.8), 0.8 -> (1, 0.8)); an integer m has order m and beta 1 (4 -> (4, 1.0)).

    Returns:
        (order, beta), an int in 1..4 and a float in (0, 1].
    """
    _check_real("m", m, 0.0, 4.0)
    frac = round(m % 1.0, 10)
    return (int(round(m)), 1.0) if frac in (0.0, 1.0) else (int(math.floor(m)) + 1, frac)


def sample_by_name(
    name: str,
    eps_model: Callable,
    x_T: torch.Tensor,
    betas: torch.Tensor,
    num_steps: int,
    *,
    guidance: float = 1.0,
    cond=None,
    trajectory: list | None = None,
) -> torch.Tensor:
    """Sample with one of :data:`PAPER_NAMES`, on the grid its official code uses (10).

    Args:
        name: a key of :data:`PAPER_NAMES`, e.g. "PLMS4 + HB 0.8".
        num_steps: N, the number of steps.
        eps_model, x_T, betas, guidance, cond, trajectory: as in :func:`lmm_sample`.

    Returns:
        The sample x_0 [B, ...].
    """
    if name not in PAPER_NAMES:
        raise ValueError(f"name must be one of {list(PAPER_NAMES)}, got {name!r}")
    method, order, beta = PAPER_NAMES[name]
    kwargs = dict(guidance=guidance, cond=cond, trajectory=trajectory)
    if method == "dpm++":
        steps = official_timesteps(betas, num_steps, "dpm-solver")
        return dpm_solver_pp_sample(eps_model, x_T, betas, steps, beta, **kwargs)
    return lmm_sample(eps_model, x_T, betas, official_timesteps(betas, num_steps, "ddim"), method, order, beta,
                      **kwargs)


# ----------------------------------------------------------------------------------------------
# Stability regions: (7), (8)
# ----------------------------------------------------------------------------------------------

def _char_roots(z: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Roots zeta of sum_j (a_j - z b_j) zeta^{K-j} = 0 for each z: [..., K], by companion matrices."""
    K = len(a) - 1
    coeffs = a[None, :] - z.reshape(-1, 1) * b[None, :]          # [M, K + 1], monic since a_0 = 1, b_0 = 0
    companion = np.zeros((coeffs.shape[0], K, K), dtype=complex)
    companion[:, 0, :] = -coeffs[:, 1:]
    if K > 1:
        companion[:, 1:, :-1] = np.eye(K - 1)
    return np.linalg.eigvals(companion).reshape(z.shape + (K,))


def _as_complex_array(z):
    if isinstance(z, torch.Tensor):
        z = z.detach().cpu().numpy()
    try:
        return np.asarray(z, dtype=complex)
    except (TypeError, ValueError):
        raise TypeError(f"z must be a complex number or an array of them, got {type(z).__name__}") from None


def is_stable(z, method: str, order: int, beta: float = 1.0, *, tol: float = 1e-9):
    """The root condition at z = delta lambda for y' = lambda y: all |zeta| <= 1, those on the circle simple.

    Args:
        z: a complex number or an array [...] of them (numpy, torch or nested lists).
        method, order, beta: as in :func:`lmm_solve`.
        tol: slack on |zeta| <= 1.

    Returns:
        a bool, or a numpy bool array [...] for an array z.
    """
    zz = _as_complex_array(z)
    a, b = lmm_polynomials(method, order, beta)
    roots = _char_roots(zz, a, b)                                # [..., K]
    mod = np.abs(roots)
    ok = (mod <= 1 + tol).all(-1)
    # A root on the unit circle must be simple.
    on_circle = mod > 1 - 1e-6
    if on_circle.any():
        close = np.abs(roots[..., :, None] - roots[..., None, :]) < 1e-6
        both = on_circle[..., :, None] & on_circle[..., None, :] & ~np.eye(roots.shape[-1], dtype=bool)
        ok &= ~(close & both).any((-1, -2))
    return bool(ok) if zz.ndim == 0 else ok


def stability_boundary(method: str, order: int, beta: float = 1.0, n: int = 1000) -> np.ndarray:
    """The boundary locus (8): z = A(w) / B(w), w = exp(-i theta), for n angles theta in [-pi, pi].

    Args:
        method, order, beta: as in :func:`lmm_solve`.
        n: the number of angles, >= 3.

    Returns:
        z, a complex numpy array [n].
    """
    _check_int("n", n, 3, 10**8)
    a, b = lmm_polynomials(method, order, beta)
    w = np.exp(-1j * np.linspace(-np.pi, np.pi, n))
    return np.polyval(a[::-1], w) / np.polyval(b[::-1], w)


def real_stability_interval(method: str, order: int, beta: float = 1.0, *, tol: float = 1e-10) -> float:
    """The left end of the stable interval [end, 0] on the negative real axis.

    It walks left from 0 on a grid, doubling its reach, up to the first unstable z, then bisects
    to ``tol``: the end of the piece that touches 0 (an unstable gap narrower than the grid
    spacing, reach / 4000, would be missed).

    Args:
        method, order, beta: as in :func:`lmm_solve`.
        tol: the width of the final bisection bracket.

    Returns:
        the end, a negative float (-inf if none is found within 1e5).
    """
    lmm_polynomials(method, order, beta)                         # validates the arguments
    reach, last_stable = 1.0, 0.0
    while reach < 1e5:
        zs = -np.linspace(reach / 4000, reach, 4000)
        ok = is_stable(zs, method, order, beta)
        bad = np.flatnonzero(~ok)
        if len(bad):
            hi = zs[bad[0]]                                      # unstable
            lo = zs[bad[0] - 1] if bad[0] > 0 else last_stable   # stable
            while lo - hi > tol:
                mid = 0.5 * (lo + hi)
                if is_stable(mid, method, order, beta):
                    lo = mid
                else:
                    hi = mid
            return float(lo)
        last_stable, reach = zs[-1], reach * 2
    return -math.inf


# ----------------------------------------------------------------------------------------------
# Demo: python minimal/momentum.py
# ----------------------------------------------------------------------------------------------

def _demo():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    started = time.time()
    print("Left end of the stable interval on the negative real axis (z = delta lambda):")
    print(f"  {'k':>2} {'AB-k':>8} {'AB-k + HB 0.8':>14} {'GHVB (k-1).8':>13}")
    for k in (1, 2, 3, 4):
        ends = [real_stability_interval(m, k, b) for m, b in (("ab", 1.0), ("hb", 0.8), ("ghvb", 0.8))]
        print(f"  {k:>2} {ends[0]:8.4f} {ends[1]:14.4f} {ends[2]:13.4f}")

    # Guided sampling of four narrow modes in two classes with the exact eps (3), 8 steps.
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, -2.0]], dtype=torch.float64)
    std, labels, betas = 0.1, torch.tensor([0, 1, 0, 1]), linear_beta_schedule()
    abar = torch.cumprod(1 - betas, 0)

    def eps_model(x, t, y):                                       # exact eps of the (class) mixture
        a2 = abar[(t * len(betas)).round().long() - 1][:, None]
        var = a2 * std**2 + 1 - a2
        logits = -((x[:, None, :] - a2.sqrt()[:, None] * means) ** 2).sum(-1) / (2 * var)
        if y is not None:
            logits = logits.masked_fill(labels[None, :] != y[:, None], -math.inf)
        score = (logits.softmax(-1)[:, :, None] * (a2.sqrt()[:, None] * means - x[:, None, :])).sum(1) / var
        return -(1 - a2).sqrt() * score                           # eps = -sqrt(1 - abar) score

    x_T = torch.randn(2000, 2, dtype=torch.float64)
    y = torch.randint(0, 2, (2000,))
    print("\nGuidance 8, 8 steps on each solver's official grid (exact eps of a 2-D mixture):")
    print(f"  {'sampler':<24} {'max |x_0|':>10} {'off-mode share':>15}")
    for name in ("DDIM", "PLMS4", "PLMS4 + HB 0.8", "GHVB 3.8", "DPM-Solver++", "DPM-Solver++ w/ HB 0.8"):
        x0 = sample_by_name(name, eps_model, x_T, betas, 8, guidance=8.0, cond=y)
        off = (torch.cdist(x0, means).min(1).values > 5 * std).double().mean()
        print(f"  {name:<24} {x0.abs().max():10.3g} {off:15.3f}")
    print(f"\n(ran in {time.time() - started:.1f} s)")


if __name__ == "__main__":
    _demo()
