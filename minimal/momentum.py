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
A noise schedule abar_t (the paper's alpha_t; ``alphas_cumprod``), t = 0..T-1, and

    (1) forward process   x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,
    (2) the paper's ODE   d xbar / d sigma = epsbar(xbar, sigma)                    (Eq. 2)
        with              sigma = sqrt(1 - abar_t) / sqrt(abar_t),   xbar = x_t / sqrt(abar_t),
                          epsbar(xbar, sigma) = eps_theta(x_t, t).

Sampling runs (2) from a large sigma down to sigma = 0 (the clean sample), so the steps
delta_n = sigma_{n+1} - sigma_n are negative. With classifier-free guidance of scale s,

    (3) eps_theta = eps(x_t, t, null) + s [eps(x_t, t, c) - eps(x_t, t, null)],

(s = 1 is the plain conditional model). Euler's method on (2) is exactly DDIM.

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
:func:`sample` start with lower orders -- step 0 uses order 1, step 1 order 2, ... -- and
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
"""
from __future__ import annotations

import math
import numbers
import re
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

__all__ = [
    "lmm_solve", "momentum_number", "sampler_spec", "sample", "uniform_timesteps", "linear_alphas_cumprod",
    "is_stable", "stability_boundary", "real_stability_interval", "lmm_polynomials",
]

METHODS = ("ab", "hb", "ghvb")                 # for lmm_solve and the stability functions
SAMPLE_METHODS = METHODS + ("dpm++",)          # sample() adds DPM-Solver++(2M)

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
# Argument checks (all done before any work)
# ----------------------------------------------------------------------------------------------

def _check_method(method, allowed=METHODS):
    if not isinstance(method, str) or method not in allowed:
        raise ValueError(f"method must be one of {allowed}, got {method!r}")


def _check_order(order, method):
    if isinstance(order, bool) or not isinstance(order, numbers.Integral):
        raise TypeError(f"order must be an int, got {type(order).__name__}")
    top = 2 if method == "dpm++" else 4
    if not 1 <= order <= top:
        raise ValueError(f"order must be in 1..{top} for method {method!r}, got {order}")


def _check_beta(beta, method):
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
        raise TypeError(f"beta must be a real number, got {type(beta).__name__}")
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"beta must be in (0, 1], got {beta}")
    if method == "ab" and beta != 1.0:
        raise ValueError(f"beta must be 1 for method 'ab' (use 'hb' or 'ghvb' for momentum), got {beta}")


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
        self.history.append(value)
        if len(self.history) > self.order:
            self.history.pop(0)

    def __call__(self, f):
        if self.method in ("ab", "hb"):
            self._remember(f)
            k = min(self.order, len(self.history))                 # lower-order warm-up
            p = sum(b * e for b, e in zip(AB_COEFFS[k], reversed(self.history)))   # (4)
            if self.method == "ab":
                return p
            self.v = p if self.v is None else (1 - self.beta) * self.v + self.beta * p  # (5)
            return self.v
        # GHVB: average first, then mix with beta-dependent coefficients.
        self.v = f if self.v is None else (1 - self.beta) * self.v + self.beta * f          # (6), left
        self._remember(self.v)
        r = min(self.order, len(self.history))
        c = ghvb_coeffs(r, self.beta)
        return sum(ci * v for ci, v in zip(c, reversed(self.history))) / self.beta         # (6), right


# ----------------------------------------------------------------------------------------------
# The characteristic polynomials (7), shared by the stability analysis and the exact start
# ----------------------------------------------------------------------------------------------

def lmm_polynomials(method: str, order: int, beta: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients of A(w) and B(w) in (7), lowest power of w first, padded to one length K + 1.

    The method reads  sum_j a_j x_{n+1-j} = delta sum_j b_j f_{n+1-j}  with a_0 = 1, b_0 = 0.
    """
    _check_method(method)
    _check_order(order, method)
    _check_beta(beta, method)
    if method == "ab":
        a = np.array([1.0, -1.0])
        b = np.array((0.0,) + AB_COEFFS[order])
    else:
        a = np.convolve([1.0, -1.0], [1.0, -(1.0 - beta)])          # (1 - w)(1 - (1 - beta) w)
        mix = beta * np.array(AB_COEFFS[order]) if method == "hb" else np.array(ghvb_coeffs(order, beta))
        b = np.concatenate([[0.0], mix])
    n = max(len(a), len(b))
    return np.pad(a, (0, n - len(a))), np.pad(b, (0, n - len(b)))


# ----------------------------------------------------------------------------------------------
# Solving dx/dt = f(x, t)
# ----------------------------------------------------------------------------------------------

def _check_grid(ts, name="ts"):
    if isinstance(ts, torch.Tensor):
        ts = ts.detach().cpu().double()
    else:
        try:
            ts = torch.as_tensor(ts, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name} must be a 1-D sequence of numbers, got {type(ts).__name__}") from None
    if ts.ndim != 1 or len(ts) < 2:
        raise ValueError(f"{name} must be a 1-D grid with at least 2 points, got shape {tuple(ts.shape)}")
    if not torch.isfinite(ts).all():
        raise ValueError(f"{name} must hold finite numbers")
    d = ts[1:] - ts[:-1]
    if not ((d > 0).all() or (d < 0).all()):
        raise ValueError(f"{name} must be strictly monotone (all increasing or all decreasing)")
    return ts


def lmm_solve(
    f: Callable[[torch.Tensor, float], torch.Tensor],
    x0: torch.Tensor,
    ts: Sequence[float],
    method: str,
    order: int = 1,
    beta: float = 1.0,
    *,
    start: Optional[Callable[[float], torch.Tensor]] = None,
    return_trajectory: bool = False,
) -> torch.Tensor:
    """Solve dx/dt = f(x, t) from x(ts[0]) = x0 on the grid ts with AB-k, AB-k + HB or GHVB r.

    Args:
        f: the right-hand side, ``f(x, t) -> dx/dt`` with x of shape [...] and t a float.
        x0: the initial value, any shape [...].
        ts: the grid t_0, ..., t_N, strictly increasing or strictly decreasing (N >= 1 steps;
            delta_n = t_{n+1} - t_n may vary; the coefficients stay those of a uniform grid,
            as in the official code).
        method: "ab" (4), "hb" (5) or "ghvb" (6).
        order: k or r, 1..4.
        beta: the damping in (0, 1]; must be 1 for "ab".
        start: ``None`` (default) starts with lower orders like the official code. Or a callable
            ``start(t) -> x(t)`` (e.g. the exact solution): the first K - 1 steps are then taken
            from it, and the method runs in its equivalent x-only form (7), which shows the
            method's true order of convergence. K = len(lmm_polynomials(...)[0]) - 1.
        return_trajectory: return all states [N + 1, ...] instead of the last one [...].

    Returns:
        x(ts[-1]) with the shape of x0, or the trajectory [N + 1, *x0.shape].
    """
    if not callable(f):
        raise TypeError(f"f must be callable as f(x, t), got {type(f).__name__}")
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a torch.Tensor, got {type(x0).__name__}")
    if start is not None and not callable(start):
        raise TypeError(f"start must be None or a callable start(t) -> x(t), got {type(start).__name__}")
    _check_method(method)
    _check_order(order, method)
    _check_beta(beta, method)
    ts = _check_grid(ts).tolist()

    xs = [x0]
    if start is None:
        direction = _Direction(method, order, beta)
        for n in range(len(ts) - 1):
            ehat = direction(f(xs[-1], ts[n]))
            xs.append(xs[-1] + (ts[n + 1] - ts[n]) * ehat)                 # x_{n+1} = x_n + delta ehat
    else:
        a, b = lmm_polynomials(method, order, beta)
        K = len(a) - 1
        for n in range(1, min(K, len(ts))):
            xs.append(torch.as_tensor(start(ts[n]), dtype=x0.dtype, device=x0.device).reshape(x0.shape))
        fs = [f(x, t) for x, t in zip(xs, ts)]
        for n in range(K - 1, len(ts) - 1):
            delta = ts[n + 1] - ts[n]
            # (7): x_{n+1} = -sum_{j>=1} a_j x_{n+1-j} + delta sum_{j>=1} b_j f_{n+1-j}
            x = -sum(a[j] * xs[n + 1 - j] for j in range(1, K + 1)) \
                + delta * sum(b[j] * fs[n + 1 - j] for j in range(1, K + 1))
            xs.append(x)
            if n + 1 < len(ts) - 1:
                fs.append(f(x, ts[n + 1]))
    return torch.stack(xs) if return_trajectory else xs[-1]


# ----------------------------------------------------------------------------------------------
# Names
# ----------------------------------------------------------------------------------------------

def momentum_number(m: Union[float, str]) -> tuple[int, float]:
    """The paper's momentum number -> (order, beta).

    ``m`` is a number (3.8 -> (4, 0.8); 4 -> (4, 1.0); 0.8 -> (1, 0.8)) or a name:
    "GHVB 3.8" -> (4, 0.8), "PLMS4 + HB 0.8" or "PLMS4 w/ HB 0.8" -> (4, 0.8), "PLMS2" -> (2, 1.0),
    "DDIM" -> (1, 1.0), "HB 0.8" -> (1, 0.8). A fractional m has order floor(m) + 1 and beta its
    fractional part; an integer m has order m and beta 1 (the official code's ``update_order``).
    """
    if isinstance(m, str):
        return sampler_spec(m)[1:]
    if isinstance(m, bool) or not isinstance(m, numbers.Real):
        raise TypeError(f"m must be a number or a sampler name, got {type(m).__name__}")
    if not 0 < m <= 4 or not math.isfinite(m):
        raise ValueError(f"m must be in (0, 4], got {m}")
    frac = round(m % 1.0, 10)
    if frac in (0.0, 1.0):
        return int(round(m)), 1.0
    return int(math.floor(m)) + 1, frac


def sampler_spec(name: str) -> tuple[str, int, float]:
    """A sampler's name as the paper writes it -> (method, order, beta) for :func:`sample`.

    "DDIM" -> ("ab", 1, 1.0); "PLMS4" -> ("ab", 4, 1.0); "PLMS4 + HB 0.8" / "PLMS4 w/ HB 0.8" ->
    ("hb", 4, 0.8); "HB 0.8" -> ("hb", 1, 0.8); "GHVB 3.8" -> ("ghvb", 4, 0.8);
    "DPM-Solver++" -> ("dpm++", 2, 1.0); "DPM-Solver++ w/ HB 0.8" -> ("dpm++", 2, 0.8).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    s = name.strip().upper().replace(" ", "")
    hb = re.search(r"(?:\+|W/|WITH)?HB(\d*\.?\d+)$", s)
    beta = float(hb.group(1)) if hb else 1.0
    base = s[: hb.start()] if hb else s
    if hb and not 0 < beta <= 1:
        raise ValueError(f"name {name!r}: the HB damping must be in (0, 1], got {beta}")
    if base.startswith("DPM"):
        return "dpm++", 2, beta
    if base in ("DDIM", "EULER", ""):
        return ("hb" if hb else "ab"), 1, beta
    plms = re.fullmatch(r"(?:PLMS|AB)([1-4])", base)
    if plms:
        return ("hb" if hb else "ab"), int(plms.group(1)), beta
    ghvb = re.fullmatch(r"GHVB(\d*\.?\d+)", base)
    if ghvb and not hb:
        order, beta = momentum_number(float(ghvb.group(1)))
        return ("ghvb" if beta < 1 else "ab"), order, beta
    raise ValueError(f"name must look like 'DDIM', 'PLMS4', 'PLMS4 + HB 0.8', 'GHVB 3.8' or "
                     f"'DPM-Solver++ w/ HB 0.8', got {name!r}")


# ----------------------------------------------------------------------------------------------
# Diffusion sampling on the ODE (2)
# ----------------------------------------------------------------------------------------------

def linear_alphas_cumprod(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """abar_t of DDPM's linear schedule, [T] float64."""
    if isinstance(T, bool) or not isinstance(T, numbers.Integral) or T < 2:
        raise ValueError(f"T must be an int >= 2, got {T!r}")
    return torch.cumprod(1 - torch.linspace(beta_start, beta_end, T, dtype=torch.float64), 0)


def uniform_timesteps(num_steps: int, T: int = 1000) -> torch.Tensor:
    """``num_steps`` evenly spaced timesteps from T - 1 down to 0, [num_steps] long.

    With :func:`sample`, the model is evaluated at each of them and the last step goes on to
    sigma = 0, so there are ``num_steps`` steps and as many model evaluations.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral) or not 1 <= num_steps <= T:
        raise ValueError(f"num_steps must be an int in 1..T={T}, got {num_steps!r}")
    if num_steps == 1:
        return torch.tensor([T - 1])
    return torch.linspace(T - 1, 0, num_steps, dtype=torch.float64).round().long()


def _guided_eps(eps_model, x, t, guidance, cond):
    """(3): classifier-free guidance; one model call when guidance == 1 (or no condition)."""
    if guidance == 1.0:
        return _checked(eps_model(x, t, cond), x)
    eps_uncond = _checked(eps_model(x, t, None), x)
    eps_cond = _checked(eps_model(x, t, cond), x)
    return eps_uncond + guidance * (eps_cond - eps_uncond)


def _checked(eps, x):
    """The model's output, if it has x_t's shape (a wrong shape would broadcast silently)."""
    if not isinstance(eps, torch.Tensor) or eps.shape != x.shape:
        shape = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(f"eps_model returned shape {shape}, expected {tuple(x.shape)} (the shape of x_t)")
    return eps


def sample(
    eps_model: Callable,
    x_T: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    timesteps: Sequence[int],
    method: str,
    order: int = 1,
    beta: float = 1.0,
    *,
    guidance: float = 1.0,
    cond=None,
    return_trajectory: bool = False,
) -> torch.Tensor:
    """Deterministic diffusion sampling on the ODE (2) with DDIM, PLMS-k, HB, GHVB or DPM-Solver++(2M).

    Args:
        eps_model: ``eps_model(x_t, t, cond) -> eps`` with x_t [B, ...], t a long tensor [B] of
            timesteps (indices into ``alphas_cumprod``) and cond the condition or ``None``
            (unconditional / null class). Returns eps [B, ...].
        x_T: the starting noise at timesteps[0], [B, ...] (usually standard normal).
        alphas_cumprod: abar_t, [T], decreasing, in (0, 1).
        timesteps: strictly decreasing ints in 0..T-1 (e.g. :func:`uniform_timesteps`); the model
            is evaluated at each and the last step goes to sigma = 0: len(timesteps) steps.
        method, order, beta: "ab" with order k (order 1 is DDIM, k > 1 is PLMS-k), "hb" (PLMS-k
            with Heavy Ball beta), "ghvb" (GHVB order r, beta), or "dpm++" (DPM-Solver++(2M) for
            order 2, its first-order form (= DDIM) for order 1; beta < 1 adds HB). See
            :func:`sampler_spec` for the paper's names.
        guidance: the classifier-free guidance scale s of (3); s != 1 needs ``cond``.
        cond: the condition passed to eps_model (e.g. class labels [B]), or None.
        return_trajectory: return the states x at every grid point, [len(timesteps) + 1, B, ...].

    Returns:
        The sample x_0 [B, ...] (or the trajectory), in x_T's dtype.
    """
    if not callable(eps_model):
        raise TypeError(f"eps_model must be callable as eps_model(x_t, t, cond), got {type(eps_model).__name__}")
    if not isinstance(x_T, torch.Tensor) or not x_T.is_floating_point() or x_T.ndim < 1:
        raise TypeError("x_T must be a floating-point torch.Tensor of shape [B, ...]")
    if not isinstance(alphas_cumprod, torch.Tensor) or alphas_cumprod.ndim != 1:
        raise TypeError("alphas_cumprod must be a 1-D torch.Tensor [T]")
    if not ((alphas_cumprod > 0) & (alphas_cumprod < 1)).all():
        raise ValueError("alphas_cumprod must lie in (0, 1)")
    _check_method(method, SAMPLE_METHODS)
    _check_order(order, method)
    _check_beta(beta, method)
    if isinstance(guidance, bool) or not isinstance(guidance, numbers.Real) or not guidance >= 0:
        raise ValueError(f"guidance must be a real number >= 0, got {guidance!r}")
    if guidance != 1.0 and cond is None:
        raise ValueError(f"cond must be given when guidance != 1 (got guidance={guidance}): "
                         "classifier-free guidance mixes conditional and unconditional predictions")
    steps = torch.as_tensor(timesteps)
    if steps.ndim != 1 or len(steps) < 1 or steps.is_floating_point():
        raise ValueError("timesteps must be a non-empty 1-D sequence of ints")
    if len(steps) > 1 and not (steps[1:] < steps[:-1]).all():
        raise ValueError("timesteps must be strictly decreasing")
    if steps.min() < 0 or steps.max() >= len(alphas_cumprod):
        raise ValueError(f"timesteps must lie in 0..{len(alphas_cumprod) - 1}")

    abar = alphas_cumprod.double().cpu()[steps].tolist() + [1.0]     # the last step ends at abar = 1
    B = x_T.shape[0]
    t_batch = [torch.full((B,), int(t), dtype=torch.long, device=x_T.device) for t in steps]
    x = x_T
    xs = [x]

    if method == "dpm++":
        alpha = [math.sqrt(a) for a in abar]
        sig = [math.sqrt(1 - a) for a in abar]
        lam = [math.log(al / s) if s > 0 else math.inf for al, s in zip(alpha, sig)]
        m_prev, h_prev, v = None, None, None
        for n in range(len(steps)):
            eps = _guided_eps(eps_model, x, t_batch[n], guidance, cond)
            m = (x - sig[n] * eps) / alpha[n]                               # x0-prediction
            if sig[n + 1] == 0.0:                                           # last step: x_0 = m_0
                x = m
            else:
                h = lam[n + 1] - lam[n]
                if order == 2 and m_prev is not None:
                    D = m + (m - m_prev) * (h / (2 * h_prev))               # (9), 1/(2 r_0) = h / (2 h_0)
                    v = D if v is None else (1 - beta) * v + beta * D       # (9), HB
                    D = v
                else:
                    D = m                                                   # first order
                x = (sig[n + 1] / sig[n]) * x - alpha[n + 1] * math.expm1(-h) * D   # (9)
                m_prev, h_prev = m, h
            xs.append(x)
    else:
        sigma = [math.sqrt((1 - a) / a) for a in abar]                      # (2)
        direction = _Direction(method, order, beta)
        xbar = x / math.sqrt(abar[0])
        for n in range(len(steps)):
            eps = _guided_eps(eps_model, x, t_batch[n], guidance, cond)     # epsbar_n
            xbar = xbar + (sigma[n + 1] - sigma[n]) * direction(eps)       # xbar_{n+1} = xbar_n + delta ehat
            x = xbar * math.sqrt(abar[n + 1])
            xs.append(x)
    return torch.stack(xs) if return_trajectory else x


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
    """The boundary locus (8): z = A(w) / B(w), w = exp(-i theta), n angles in [-pi, pi]; complex [n]."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 3:
        raise ValueError(f"n must be an int >= 3, got {n!r}")
    a, b = lmm_polynomials(method, order, beta)
    w = np.exp(-1j * np.linspace(-np.pi, np.pi, n))
    return np.polyval(a[::-1], w) / np.polyval(b[::-1], w)


def real_stability_interval(method: str, order: int, beta: float = 1.0, *, tol: float = 1e-10) -> float:
    """The left end of the stable interval [end, 0] on the negative real axis (a negative float).

    It walks left from 0 on a grid, doubling its reach, up to the first unstable z, then bisects
    to ``tol``. It returns the end of the piece that touches 0 (an unstable gap narrower than
    the grid spacing, reach / 4000, would be missed).
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
    torch.set_default_dtype(torch.float64)
    print("Left ends of the stable interval on the negative real axis (z = delta lambda):")
    for k in (1, 2, 3, 4):
        ab = real_stability_interval("ab", k)
        hb = real_stability_interval("hb", k, 0.8)
        gh = real_stability_interval("ghvb", k, 0.8)
        print(f"  AB{k}: {ab:8.4f}   AB{k} + HB 0.8: {hb:8.4f} (x{hb / ab:.3f})   GHVB {k - 1}.8: {gh:8.4f}")

    print("\nThe paper's App. C problem x' = [[0, 1], [-9, -10]] x, x(0) = (-1, 0), 26 steps on [0, 3]:")
    M = torch.tensor([[0.0, 1.0], [-9.0, -10.0]])
    f = lambda x, t: M @ x
    ts = torch.linspace(0, 3, 27)
    exact = torch.tensor([1.0, -9.0]) / 8 * math.exp(-27) + torch.tensor([-1.0, 1.0]) * 9 / 8 * math.exp(-3)
    print(f"  exact       x(3) = ({exact[0]:+.4f}, {exact[1]:+.4f})")
    for label, (method, order, beta) in {"Euler": ("ab", 1, 1.0), "AB2": ("ab", 2, 1.0),
                                         "AB2 + HB 0.8": ("hb", 2, 0.8), "GHVB 1.8": ("ghvb", 2, 0.8)}.items():
        x = lmm_solve(f, torch.tensor([-1.0, 0.0]), ts, method, order, beta)
        print(f"  {label:<11} x(3) = ({x[0]:+.4f}, {x[1]:+.4f})")

    print("\nGuided sampling of a 2-D Gaussian mixture with its exact score, guidance 8, 8 steps:")
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    std, labels = 0.1, torch.tensor([0, 1, 0, 1])

    def eps_model(x, t, y):                                       # exact eps of the (class) mixture
        a, s2 = alphas_cumprod[t].sqrt()[:, None], 1 - alphas_cumprod[t][:, None]
        var = a**2 * std**2 + s2
        logits = -((x[:, None, :] - a[:, None] * means) ** 2).sum(-1) / (2 * var)
        if y is not None:
            logits = logits.masked_fill(labels[None, :] != y[:, None], -math.inf)
        r = logits.softmax(-1)                                    # [B, K] responsibilities
        score = (r[:, :, None] * (a[:, None] * means - x[:, None, :])).sum(1) / var
        return -s2.sqrt() * score                                 # eps = -sqrt(1 - abar) score

    alphas_cumprod = linear_alphas_cumprod()
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(2000, 2, generator=g)
    y = torch.randint(0, 2, (2000,), generator=g)
    for name in ("DDIM", "PLMS4", "PLMS4 + HB 0.8", "GHVB 3.8", "DPM-Solver++", "DPM-Solver++ w/ HB 0.8"):
        method, order, beta = sampler_spec(name)
        x0 = sample(eps_model, x_T, alphas_cumprod, uniform_timesteps(8), method, order, beta,
                    guidance=8.0, cond=y)
        dist = torch.cdist(x0, means).min(1).values
        print(f"  {name:<24} max |x| = {x0.abs().max():10.3g}   off-mode (> 5 std) = {(dist > 5 * std).float().mean():.3f}")


if __name__ == "__main__":
    _demo()
