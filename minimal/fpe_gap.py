r"""The ODE-SDE gap of a score-based diffusion model, and the Fokker-Planck residual that closes it.

Deveney, Stanczuk, Kreusser, Budd, Schoenlieb, "Closing the ODE-SDE gap in score-based diffusion
models through the Fokker-Planck equation" (arXiv 2311.15996, 2023), with the cheap residual of
Lai et al., "FP-Diffusion" (ICML 2023) for high-dimensional data. It imports only torch and the
standard library; copy it into your project as it is.

The claim
---------
One learned score drives two samplers, the reverse SDE (1) and the probability-flow ODE (2). With
the exact score they have the same marginals; with a learned one they do not, and the ODE is
usually the worse. The distance W2(p_theta^ODE(., 0), p_theta^SDE(., 0)) is the *ODE-SDE gap*.
The paper bounds it by a Fokker-Planck residual of the model, (6), and adds that residual to the
training loss, (10): the gap closes and the ODE improves, at the cost of the SDE's sample quality.

Notation, fixed for this file
-----------------------------
Forward process on data x_0 ~ p_0 in R^D, for t in [0, T]: dX_t = f(X_t, t) dt + g(t) dW_t, with
p(x, t) the density of X_t and u = log p. Both processes here are linear, f(x, t) = -k(t) x, so
X_t | X_0 ~ N(a(t) X_0, s(t)^2 I):

    OU (the paper's):  f = -x,         g = 1,           a = e^{-t},       s^2 = (1 - e^{-2t}) / 2,  prior N(0, I/2), T = 10
    VP:                f = -beta x/2,  g = sqrt(beta),  a = e^{-B(t)/2},  s^2 = 1 - a^2,          prior N(0, I),   T = 1
                       with beta(t) = beta_min + t (beta_max - beta_min) / T and B(t) = int_0^t beta.

A model enters as a callable: a score ``score_fn(x, t)`` ~ grad_x log p(x, t), or (Deveney et al.)
a scalar potential ``phi_fn(x, t)`` ~ log p(x, t) with score grad_x phi. ``x`` is [B, *S] (S = (D,)
for points, (C, H, W) for images), ``t`` a float tensor [B] in [t_min, T] (VP: T = 1, so "time in
(0, 1]", the DDPM files' time input); phi_fn returns [B], score_fn [B, *S]. Time runs backwards
from T to 0 in both samplers, started from the prior:

    (1) reverse SDE    dX = [f - g^2 s_theta] dt + g dW_bar
    (2) PF-ODE         dX/dt = f - (1/2) g^2 s_theta
    (3) Fokker-Planck  d_t p = -div(f p) + (1/2) g^2 Lap p
    (4) log form       d_t u = -div f - f . grad u + (1/2) g^2 (Lap u + |grad u|^2)      (divide (3) by p)
    (5) score form     d_t s = grad_x [ (1/2) g^2 div s + (1/2) g^2 |s|^2 - f . s - div f ]   (grad_x of (4))
    (6) log residual   R_theta = d_t phi + div f + f . grad phi - (1/2) g^2 (Lap phi + |grad phi|^2)
    (7) score residual r_theta = d_t s_theta - grad_x [ (1/2) g^2 div s_theta + (1/2) g^2 |s_theta|^2 - f . s_theta - div f ]
    (8) exact d_t s    d_t s = grad_u [ d_t sum_k s_k u_k ]                              (u: a dummy shaped like s)
    (9) DSM            L_DSM = E mean_k ( s_theta(x_t, t) + eps / s(t) )_k^2,   x_t = a(t) x_0 + s(t) eps
    (10) regularised   L = L_DSM + w_R * mean_i R_theta(t_i, x_i)^2

Why the residual closes the gap. For the OU process div f = -D and f . grad phi = -x . grad phi;
with D = 2, (6) is the official code's R = phi_t - 2 - x . grad phi - |grad phi|^2 / 2 - Lap phi / 2.
If R_theta == 0 and e^{phi(., T)} is the prior, then e^{phi} solves the density equation of (1) and
the continuity equation of (2) alike, so both samplers end with the same law e^{phi(., 0)}. The
paper proves an upper bound on W2(ODE, SDE) in terms of a norm of R_theta accumulated over [0, T]
(we do not restate its constants: the ODE velocity differs from the one that transports the SDE's
law by g^2/2 times a score mismatch, and the mismatch solves a PDE forced by R_theta).

In D = 2 every derivative in (6) is exact autograd. On images Lai et al. use (7) (for s = grad phi,
r = grad_x R exactly) with div s ~ eps^T grad_x (s . eps), one Gaussian probe eps (Skilling-
Hutchinson: unbiased, one vector-Jacobian product). For d_t s they use a finite difference on the
stencil {t - h_s, t, t + h_d} (h_s = 1e-3, h_d = 5e-4); this file takes it exactly, by (8). Near
t_min the stencil leaves the training range: for VP (t_min = 1e-3) it calls the model at t = 0,
where s(t) = 0 and the score is singular, and the residual of an *exact* score explodes (RMS ~2e2
at t_min for a 2D mixture of std 0.02, ~3e4 for std 0.01; a small U-Net's penalty ~4e7 against ~0.1
at mid t). A one-sided stencil
fails there too, since the score changes on the time scale t itself (relative error O((h/t)^2)).
(8) calls the model at t only, is exact on all of [t_min, T], and costs two backward passes instead
of two forward ones; it needs a model differentiable in t (a continuous time embedding: a model
that rounds t to an index gets d_t s = 0).

Training is DSM (9) as in the official code: no lambda(t) weighting by default, t drawn as
t_min + (T - t_min) Beta(1, 2), which favours small t; grad log p(x_t | x_0) = -eps / s. In (10) the
collocation points (t_i, x_i) are uniform on [t_min, T] x [-L, L]^D, fresh each step (Deveney et
al.); for a score network the penalty is mean_i g(t_i)^2 |r_theta(t_i, x_i)|^2 / D^2 at the DSM
batch's own perturbed points (Lai et al.).

``python minimal/fpe_gap.py`` runs a demo (about 15 s on one CPU thread): the exact log-density's
residual, then two potential networks, w_R = 0 and 10, with their residual and ODE-SDE gap.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import torch

Tensor = torch.Tensor
ScoreFn = Callable[[Tensor, Tensor], Tensor]
PotentialFn = Callable[[Tensor, Tensor], Tensor]

__all__ = [
    "SDE", "OU", "VP", "time_grid", "score_from_potential",
    "pf_ode_sample", "reverse_sde_sample",
    "log_fp_residual", "score_fp_residual",
    "sample_collocation", "dsm_loss", "regularised_loss",
]


# ----------------------------------------------------------------------------------------------
# Input checks (one line per argument at the top of each public function)
# ----------------------------------------------------------------------------------------------

def _check_fn(name: str, fn) -> None:
    if not callable(fn):
        raise TypeError(f"{name} must be callable (x [B, *S], t [B]) -> tensor, got {type(fn).__name__}")


def _check_sde(sde) -> None:
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an SDE (OU or VP), got {type(sde).__name__}")


def _check_batch(name: str, x) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [B, *S], got {type(x).__name__}")
    if not torch.is_floating_point(x) or x.dim() < 2 or x.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty floating-point tensor [B, *S], got {x.dtype} of shape {tuple(x.shape)}")


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def _check_int(name: str, value, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be an int in [{low}, {high if high is not None else 'inf'}], got {value}")


def _check_number(name: str, value, low: float, high: float = math.inf, low_open: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (low < value < high if low_open else low <= value < high):
        raise ValueError(f"{name} must be a finite number in {'(' if low_open else '['}{low}, {high}), got {value!r}")


def _check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _checked(name: str, out, shape: tuple[int, ...], what: str) -> Tensor:
    """A model's output, refused (ValueError) unless it is a tensor of the expected shape."""
    if not isinstance(out, Tensor) or tuple(out.shape) != tuple(shape):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"{name} returned shape {got}, expected {tuple(shape)} ({what})")
    return out


def _times(sde: SDE, t, x: Tensor, name: str = "t") -> Tensor:
    """t (a number or a tensor [B] or []) as a tensor [B] in x's dtype, refused unless in [0, T]."""
    if not isinstance(t, Tensor) or t.dim() == 0:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0])
    if t.shape != x.shape[:1] or not torch.is_floating_point(t):
        raise ValueError(f"{name} must be a float or a float tensor [B]={tuple(x.shape[:1])}, got {t.dtype} {tuple(t.shape)}")
    if not bool(((t >= 0) & (t <= sde.T * (1 + 1e-9))).all()):
        raise ValueError(f"{name} must lie in the process's time range [0, {sde.T}], "
                         f"got values in [{float(t.min()):.4g}, {float(t.max()):.4g}]")
    return t.to(dtype=x.dtype, device=x.device)


def _grid(sde: SDE, ts) -> Tensor:
    """A time grid [N + 1], refused unless 1-D, strictly decreasing and inside [0, T]."""
    ts = torch.as_tensor(ts, dtype=torch.float64)
    if ts.dim() != 1 or ts.numel() < 2 or not bool((ts[1:] < ts[:-1]).all()):
        raise ValueError(f"ts must be a strictly decreasing 1-D time grid (T towards 0) of >= 2 times, got {ts.tolist()[:6]}")
    if float(ts[-1]) < 0 or float(ts[0]) > sde.T * (1 + 1e-9):
        raise ValueError(f"ts must lie in the process's time range [0, {sde.T}], got [{float(ts[-1]):.4g}, {float(ts[0]):.4g}]")
    return ts


# ----------------------------------------------------------------------------------------------
# Forward processes
# ----------------------------------------------------------------------------------------------

def _col(t: Tensor, x: Tensor) -> Tensor:
    """Reshape t [B] (or a scalar) so that it broadcasts against x [B, *S]."""
    return t.reshape(-1, *([1] * (x.dim() - 1))) if t.dim() > 0 else t


def _grad(out: Tensor, inputs: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """d(out.sum())/d(inputs) with the graph kept (for training); zeros where out does not depend on them."""
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    if not out.requires_grad:                                      # e.g. the gradient of a linear function
        return tuple(torch.zeros_like(i) for i in inputs)
    return torch.autograd.grad(out.sum(), inputs, create_graph=True, materialize_grads=True)


class SDE:
    """A linear forward process dX = -k(t) X dt + g(t) dW on [0, T] (subclasses: OU, VP).

    ``t_min`` is the smallest time used in training (the score blows up as t -> 0). Subclasses
    define ``k(t)``, ``g(t)``, ``marginal(t)`` and ``prior_std``.
    """

    T: float
    t_min: float
    prior_std: float

    def k(self, t: Tensor) -> Tensor:
        """The drift rate, f(x, t) = -k(t) x; shaped like t."""
        raise NotImplementedError

    def g(self, t: Tensor) -> Tensor:
        """The diffusion coefficient g(t); shaped like t."""
        raise NotImplementedError

    def marginal(self, t: Tensor | float) -> tuple[Tensor, Tensor]:
        """The forward marginal's coefficients, X_t | X_0 ~ N(a X_0, s^2 I).

        Args:
            t: times, a tensor of any shape (or a float, taken in float64).

        Returns:
            (a, s), both shaped like t and differentiable in t.
        """
        raise NotImplementedError

    def drift(self, x: Tensor, t: Tensor | float) -> Tensor:
        """f(x, t) = -k(t) x for x [B, *S] and t [B] (or a float); shaped like x."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        return -_col(self.k(t), x) * x

    def div_drift(self, x: Tensor, t: Tensor | float) -> Tensor:
        """div_x f = -k(t) * (coordinates per sample) for x [B, *S]; shape [B]."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        return (-self.k(t) * x[0].numel()).expand(x.shape[0])

    def prior_sample(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
        """Draws from the prior N(0, prior_std^2 I) that both samplers start from.

        Args:
            shape: (B, *S), positive ints, at least two entries.
            generator: an optional torch.Generator on ``device``.
            dtype, device: of the result.

        Returns:
            x_T [B, *S].
        """
        _check_generator(generator)
        shape = tuple(shape) if isinstance(shape, (tuple, list, torch.Size)) else (shape,)
        if len(shape) < 2 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape):
            raise ValueError(f"shape must be (B, *S) with positive ints and at least 2 entries, got {shape!r}")
        return self.prior_std * torch.randn(shape, generator=generator, dtype=dtype, device=device)


class OU(SDE):
    """The paper's Ornstein-Uhlenbeck process dX = -X dt + dW on [0, T] (T = 10, t_min = 1e-5).

    X_t | X_0 ~ N(e^{-t} X_0, (1 - e^{-2t})/2 I); stationary law (the prior) N(0, I/2).
    """

    def __init__(self, T: float = 10.0, t_min: float = 1e-5):
        _check_number("T", T, 0.0)
        _check_number("t_min", t_min, 0.0, T)
        self.T, self.t_min, self.prior_std = float(T), float(t_min), math.sqrt(0.5)

    def k(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def g(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def marginal(self, t: Tensor | float) -> tuple[Tensor, Tensor]:
        t = torch.as_tensor(t, dtype=t.dtype if isinstance(t, Tensor) else torch.float64)
        return torch.exp(-t), torch.sqrt(0.5 * -torch.expm1(-2 * t))   # a = e^{-t}, s^2 = (1 - e^{-2t}) / 2

    def __repr__(self) -> str:
        return f"OU(T={self.T}, t_min={self.t_min})"


class VP(SDE):
    """The variance-preserving process dX = -beta(t) X / 2 dt + sqrt(beta(t)) dW on [0, T] (T = 1).

    beta(t) = beta_min + t (beta_max - beta_min) / T; X_t | X_0 ~ N(a X_0, (1 - a^2) I) with
    a = exp(-B(t)/2), B(t) = int_0^t beta; prior N(0, I).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0, t_min: float = 1e-3):
        _check_number("beta_min", beta_min, 0.0)
        _check_number("beta_max", beta_max, beta_min, low_open=False)
        _check_number("T", T, 0.0)
        _check_number("t_min", t_min, 0.0, T)
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)
        self.T, self.t_min, self.prior_std = float(T), float(t_min), 1.0

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + (t / self.T) * (self.beta_max - self.beta_min)

    def k(self, t: Tensor) -> Tensor:
        return 0.5 * self.beta(t)

    def g(self, t: Tensor) -> Tensor:
        return torch.sqrt(self.beta(t))

    def marginal(self, t: Tensor | float) -> tuple[Tensor, Tensor]:
        t = torch.as_tensor(t, dtype=t.dtype if isinstance(t, Tensor) else torch.float64)
        B = self.beta_min * t + 0.5 * t ** 2 / self.T * (self.beta_max - self.beta_min)   # int_0^t beta
        return torch.exp(-0.5 * B), torch.sqrt(-torch.expm1(-B))                         # s^2 = 1 - a^2

    def __repr__(self) -> str:
        return f"VP(beta_min={self.beta_min}, beta_max={self.beta_max}, T={self.T}, t_min={self.t_min})"


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------

def time_grid(sde: SDE, nfe: int = 800, refine_last: int = 10, refine_factor: int = 10,
              dtype: torch.dtype = torch.float64) -> Tensor:
    """The official code's decreasing grid from T to 0: coarse steps of T / nfe, then finer ones near 0.

    Args:
        sde: the process (its T).
        nfe: the number of coarse steps of T / nfe over [0, T].
        refine_last: the last ``refine_last`` coarse steps are each cut into ``refine_factor`` fine ones
            (nfe = 800: 790 steps of 0.0125, then 100 of 0.00125, as in the official code).
        refine_factor: see ``refine_last``.
        dtype: of the grid.

    Returns:
        ts [nfe - refine_last + refine_last * refine_factor + 1], ts[0] = T, ts[-1] = 0.
    """
    _check_sde(sde)
    _check_int("nfe", nfe, 1)
    _check_int("refine_last", refine_last, 0, nfe)
    _check_int("refine_factor", refine_factor, 1)
    t_switch = refine_last * sde.T / nfe
    coarse = torch.linspace(sde.T, t_switch, nfe - refine_last + 1, dtype=dtype)
    fine = torch.linspace(t_switch, 0.0, refine_last * refine_factor + 1, dtype=dtype)[1:]
    return torch.cat([coarse, fine])


def score_from_potential(phi_fn: PotentialFn, create_graph: bool = False) -> ScoreFn:
    """The score s(x, t) = grad_x phi(x, t) of a potential model, by autograd.

    Args:
        phi_fn: (x [B, *S], t [B]) -> [B], a log-density model.
        create_graph: keep the graph (True when the score enters a loss).

    Returns:
        score_fn: (x [B, *S], t [B]) -> [B, *S].
    """
    _check_fn("phi_fn", phi_fn)

    def score_fn(x: Tensor, t: Tensor) -> Tensor:
        with torch.enable_grad():
            x_ = x if (x.requires_grad and create_graph) else x.detach().requires_grad_(True)
            phi = _checked("phi_fn", phi_fn(x_, t), x.shape[:1], "[B], one log-density per sample")
            (grad,) = torch.autograd.grad(phi.sum(), x_, create_graph=create_graph)
        return grad
    return score_fn


def _score(score_fn: ScoreFn, x: Tensor, t: Tensor) -> Tensor:
    return _checked("score_fn", score_fn(x, t), x.shape, "the shape of x")


@torch.no_grad()
def pf_ode_sample(score_fn: ScoreFn, sde: SDE, x_T: Tensor, ts: Tensor, *,
                  trajectory: list | None = None) -> Tensor:
    """Euler steps of the probability-flow ODE (2) along a decreasing time grid.

    x_{k+1} = x_k + [f(x_k, t_k) - g(t_k)^2 s(x_k, t_k) / 2] (t_{k+1} - t_k). The score is evaluated
    at ts[:-1] only, so ts may end at 0.

    Args:
        score_fn: (x [B, *S], t [B]) -> [B, *S].
        sde: the forward process.
        x_T: [B, *S], prior draws (``sde.prior_sample``).
        ts: [N + 1], strictly decreasing from <= T to >= 0 (``time_grid``).
        trajectory: if a list, the state after each step ([B, *S]) is appended to it, once per model
            evaluation (N in all); a ``collections.deque(maxlen=k)`` keeps only the last k.

    Returns:
        x_0 [B, *S], the final sample.
    """
    _check_fn("score_fn", score_fn)
    _check_sde(sde)
    _check_batch("x_T", x_T)
    ts = _grid(sde, ts)
    x = x_T.clone()
    for t_now, t_next in zip(ts[:-1].tolist(), ts[1:].tolist()):
        t = torch.full((x.shape[0],), t_now, dtype=x.dtype, device=x.device)
        g2 = _col(sde.g(t) ** 2, x)
        x = x + (sde.drift(x, t) - 0.5 * g2 * _score(score_fn, x, t)) * (t_next - t_now)  # (2), dt < 0
        if trajectory is not None:
            trajectory.append(x)
    return x


@torch.no_grad()
def reverse_sde_sample(score_fn: ScoreFn, sde: SDE, x_T: Tensor, ts: Tensor, *,
                       generator: torch.Generator | None = None, noise_last: bool = False,
                       trajectory: list | None = None) -> Tensor:
    """Euler-Maruyama steps of the reverse SDE (1) along a decreasing time grid.

    x_{k+1} = x_k + [f - g^2 s](x_k, t_k) (t_{k+1} - t_k) + g(t_k) sqrt(t_k - t_{k+1}) z_k, z_k ~ N(0, I).
    As in the official code the last step adds no noise (it only denoises), unless ``noise_last``.

    Args:
        score_fn: (x [B, *S], t [B]) -> [B, *S].
        sde: the forward process.
        x_T: [B, *S], prior draws.
        ts: [N + 1], strictly decreasing from <= T to >= 0.
        generator: an optional torch.Generator on x_T's device, for z_k.
        noise_last: add noise on the last step too.
        trajectory: if a list, the state after each step ([B, *S]) is appended to it, once per model
            evaluation (N in all); a ``collections.deque(maxlen=k)`` keeps only the last k.

    Returns:
        x_0 [B, *S], the final sample.
    """
    _check_fn("score_fn", score_fn)
    _check_sde(sde)
    _check_batch("x_T", x_T)
    ts = _grid(sde, ts)
    _check_generator(generator)
    x, n = x_T.clone(), ts.numel() - 1
    for k, (t_now, t_next) in enumerate(zip(ts[:-1].tolist(), ts[1:].tolist())):
        t = torch.full((x.shape[0],), t_now, dtype=x.dtype, device=x.device)
        g = _col(sde.g(t), x)
        x = x + (sde.drift(x, t) - g ** 2 * _score(score_fn, x, t)) * (t_next - t_now)     # (1), drift
        if k < n - 1 or noise_last:
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = x + g * math.sqrt(t_now - t_next) * z                                       # (1), noise
        if trajectory is not None:
            trajectory.append(x)
    return x


# ----------------------------------------------------------------------------------------------
# Residuals
# ----------------------------------------------------------------------------------------------

def log_fp_residual(phi_fn: PotentialFn, sde: SDE, x: Tensor, t: Tensor | float) -> Tensor:
    """Deveney et al.'s log-density Fokker-Planck residual (6), every derivative by exact autograd.

    The Laplacian costs one backward pass per coordinate: meant for low dimension.

    Args:
        phi_fn: (x [B, *S], t [B]) -> [B], a log-density model, differentiable in x and t.
        sde: the forward process.
        x: [B, *S], the points (a caller's graph through x is kept: grad_x R is (7)).
        t: a float or a tensor [B] in [0, T].

    Returns:
        R [B], differentiable in the parameters of phi_fn (the graph is kept for training).
    """
    _check_fn("phi_fn", phi_fn)
    _check_sde(sde)
    _check_batch("x", x)
    t = _times(sde, t, x).detach().requires_grad_(True)
    x = x if x.requires_grad else x.detach().requires_grad_(True)
    B = x.shape[0]
    phi = _checked("phi_fn", phi_fn(x, t), (B,), "[B], one log-density per sample")
    phi_x, phi_t = _grad(phi, (x, t))
    flat = phi_x.reshape(B, -1)
    lap = sum(_grad(flat[:, i], x)[0].reshape(B, -1)[:, i] for i in range(flat.shape[1]))   # sum_i d^2 phi / dx_i^2
    f_dot_grad = (sde.drift(x, t) * phi_x).reshape(B, -1).sum(1)
    return phi_t + sde.div_drift(x, t) + f_dot_grad - 0.5 * sde.g(t) ** 2 * (lap + flat.pow(2).sum(1))   # (6)


def score_fp_residual(score_fn: ScoreFn, sde: SDE, x: Tensor, t: Tensor | float, *,
                      generator: torch.Generator | None = None, divergence: str = "hutchinson") -> Tensor:
    """Lai et al.'s score Fokker-Planck residual (7), with d_t s exact by (8).

    The model is called at t only, never below t_min (Lai et al.'s finite difference in t called it
    at t - 1e-3, where the score is singular near t_min: see the module docstring). The divergence is
    one Hutchinson probe (Lai et al.) or the exact Jacobian trace (one backward pass per coordinate).

    Args:
        score_fn: (x [B, *S], t [B]) -> [B, *S], differentiable in x and t.
        sde: the forward process.
        x: [B, *S], the points.
        t: a float or a tensor [B] in [0, T].
        generator: an optional torch.Generator on x's device, for the Hutchinson probe.
        divergence: "hutchinson" or "exact".

    Returns:
        r [B, *S], differentiable in the model's parameters.
    """
    _check_fn("score_fn", score_fn)
    _check_sde(sde)
    _check_batch("x", x)
    t = _times(sde, t, x).detach().requires_grad_(True)
    _check_generator(generator)
    _check_choice("divergence", divergence, ("hutchinson", "exact"))
    x = x if x.requires_grad else x.detach().requires_grad_(True)
    B = x.shape[0]
    s = _score(score_fn, x, t)
    u = torch.zeros_like(s, requires_grad=True)
    (ds_dt,) = _grad(_grad(s * u, t)[0], u)                                         # (8)
    if divergence == "hutchinson":                                                  # eps^T grad_x (s . eps)
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        div_s = (_grad(s * eps, x)[0] * eps).reshape(B, -1).sum(1)
    else:
        flat = s.reshape(B, -1)
        div_s = sum(_grad(flat[:, i], x)[0].reshape(B, -1)[:, i] for i in range(flat.shape[1]))
    f_dot_s = (sde.drift(x, t) * s).reshape(B, -1).sum(1)
    potential = 0.5 * sde.g(t) ** 2 * (div_s + s.reshape(B, -1).pow(2).sum(1)) - f_dot_s - sde.div_drift(x, t)
    return ds_dt - _grad(potential, x)[0]                                           # (7)


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------

def _dsm(score_fn: ScoreFn, sde: SDE, x0: Tensor, generator: torch.Generator | None,
         weighting: str) -> tuple[Tensor, Tensor, Tensor]:
    """(L_DSM, x_t, t) of (9), without the input checks."""
    u = torch.rand(x0.shape[0], generator=generator, dtype=x0.dtype, device=x0.device)
    t = sde.t_min + (sde.T - sde.t_min) * (1 - torch.sqrt(1 - u))     # Beta(1, 2) by its inverse CDF
    a, s = (_col(v, x0) for v in sde.marginal(t))
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    x_t = a * x0 + s * eps                                            # x_t ~ p(x_t | x_0)
    err = (_score(score_fn, x_t, t) + eps / s) ** 2                   # (9): grad log p(x_t | x_0) = -eps / s
    if weighting == "sigma2":
        err = err * s ** 2                                            # lambda(t) = s(t)^2: the eps-prediction loss
    return err.mean(), x_t, t


def dsm_loss(score_fn: ScoreFn, sde: SDE, x0: Tensor, *, generator: torch.Generator | None = None,
             weighting: str = "none") -> Tensor:
    """Denoising score matching (9), with t ~ t_min + (T - t_min) Beta(1, 2) as in the official code.

    Args:
        score_fn: (x [B, *S], t [B]) -> [B, *S]; for a potential model pass
            ``score_from_potential(phi_fn, create_graph=True)``.
        sde: the forward process.
        x0: [B, *S], a batch of data.
        generator: an optional torch.Generator on x0's device, for t and the noise.
        weighting: "none" (the official code's) or "sigma2" (lambda(t) = s(t)^2, the usual
            eps-prediction loss, far lower variance).

    Returns:
        The loss, a scalar.
    """
    _check_fn("score_fn", score_fn)
    _check_sde(sde)
    _check_batch("x0", x0)
    _check_generator(generator)
    _check_choice("weighting", weighting, ("none", "sigma2"))
    return _dsm(score_fn, sde, x0, generator, weighting)[0]


def sample_collocation(sde: SDE, n: int, dim: int, box: float = 3.5, *,
                       generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
                       device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Deveney et al.'s collocation points, uniform on [t_min, T] x [-box, box]^dim.

    Args:
        sde: the forward process (its t_min and T).
        n: the number of points.
        dim: the dimension D.
        box: the half-width of the box.
        generator: an optional torch.Generator on ``device``.
        dtype, device: of the result.

    Returns:
        (x [n, dim], t [n]).
    """
    _check_sde(sde)
    _check_int("n", n, 1)
    _check_int("dim", dim, 1)
    _check_number("box", box, 0.0)
    _check_generator(generator)
    x = (2 * torch.rand(n, dim, generator=generator, dtype=dtype, device=device) - 1) * box
    t = sde.t_min + (sde.T - sde.t_min) * torch.rand(n, generator=generator, dtype=dtype, device=device)
    return x, t


def regularised_loss(model_fn: Callable, sde: SDE, x0: Tensor, w_R: float, *, kind: str = "log",
                     generator: torch.Generator | None = None, n_collocation: int | None = None,
                     box: float = 3.5, weighting: str = "none",
                     return_parts: bool = False) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    """The regularised objective (10): L = L_DSM + w_R * residual penalty.

    kind="log" (Deveney et al.): the model is a potential, its score grad_x phi, and the penalty is
    mean R^2 of (6) at ``n_collocation`` fresh points uniform on [t_min, T] x [-box, box]^D.
    kind="score" (Lai et al.): the model is a score, and the penalty is mean g(t)^2 |r|^2 / D^2 of (7)
    at the DSM batch's own perturbed points (one Hutchinson probe). w_R = 0 skips the residual.

    Args:
        model_fn: kind="log": phi (x [B, D], t [B]) -> [B]; kind="score": s (x [B, *S], t [B]) -> [B, *S].
        sde: the forward process.
        x0: [B, *S] data ([B, D] points for kind="log").
        w_R: the residual weight, a finite number >= 0.
        kind: "log" or "score".
        generator: an optional torch.Generator on x0's device.
        n_collocation: collocation points for kind="log" (default B).
        box: the collocation box's half-width.
        weighting: the DSM weighting, as in :func:`dsm_loss`.
        return_parts: also return the two terms.

    Returns:
        L, a scalar; with ``return_parts``, (L, L_DSM, penalty), the last two detached.
    """
    _check_fn("model_fn", model_fn)
    _check_sde(sde)
    _check_batch("x0", x0)
    _check_number("w_R", w_R, 0.0, low_open=False)
    _check_choice("kind", kind, ("log", "score"))
    _check_generator(generator)
    _check_int("n_collocation", x0.shape[0] if n_collocation is None else n_collocation, 1)
    _check_choice("weighting", weighting, ("none", "sigma2"))
    if kind == "log" and x0.dim() != 2:
        raise ValueError(f"x0 must be points [B, D] for kind='log' (the exact Laplacian is for low D), got {tuple(x0.shape)}")
    score_fn = score_from_potential(model_fn, create_graph=True) if kind == "log" else model_fn
    dsm, x_t, t = _dsm(score_fn, sde, x0, generator, weighting)
    penalty = torch.zeros((), dtype=x0.dtype, device=x0.device)
    if w_R > 0 and kind == "log":
        xc, tc = sample_collocation(sde, n_collocation or x0.shape[0], x0.shape[1], box,
                                    generator=generator, dtype=x0.dtype, device=x0.device)
        penalty = log_fp_residual(model_fn, sde, xc, tc).pow(2).mean()                          # (10)
    elif w_R > 0:
        r = score_fp_residual(model_fn, sde, x_t.detach(), t, generator=generator)
        penalty = (sde.g(t) ** 2 * r.reshape(r.shape[0], -1).pow(2).sum(1)).mean() / x0[0].numel() ** 2
    loss = dsm + w_R * penalty
    return (loss, dsm.detach(), penalty.detach()) if return_parts else loss


# ----------------------------------------------------------------------------------------------
# Demo: python minimal/fpe_gap.py
# ----------------------------------------------------------------------------------------------

def _sliced_w2_squared(x: Tensor, y: Tensor, n_proj: int = 128, seed: int = 0) -> float:
    """Sliced W2^2 between equal-size point clouds [n, D]: D times the mean over random directions of
    the 1-D W2^2 (sorted projections), a lower bound on W2^2 that is exact for translations on average."""
    gen = torch.Generator().manual_seed(seed)
    dirs = torch.randn(x.shape[1], n_proj, generator=gen, dtype=x.dtype)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    px, _ = torch.sort(x @ dirs, dim=0)
    py, _ = torch.sort(y @ dirs, dim=0)
    return float(x.shape[1] * ((px - py) ** 2).mean())


def _demo(steps: int = 800) -> None:
    """Exact log-density's residual, then potential networks trained with w_R = 0 and 10: a table."""
    torch.set_num_threads(1)                      # tiny networks: one thread is the fastest on a small CPU
    torch.manual_seed(0)
    start_all = time.time()
    sde, gen = OU(), torch.Generator().manual_seed(0)
    centres = torch.tensor([[1.3, 1.3], [-1.3, 1.3], [1.3, -1.3], [-1.3, -1.3]])   # 4 Gaussians, std 0.2

    def data(n: int) -> Tensor:
        return centres[torch.randint(0, 4, (n,), generator=gen)] + 0.2 * torch.randn(n, 2, generator=gen)

    def exact_phi(x: Tensor, t: Tensor) -> Tensor:                # log p of the diffused mixture: R == 0
        a, s = sde.marginal(t)
        var = (a ** 2 * 0.04 + s ** 2)[:, None]                                  # [B, 1]
        d2 = ((x[:, None, :] - a[:, None, None] * centres.to(x)) ** 2).sum(-1)  # [B, 4]
        return torch.logsumexp(-0.5 * d2 / var - torch.log(2 * math.pi * var), 1) - math.log(4)

    xc, tc = sample_collocation(sde, 1000, 2, generator=gen, dtype=torch.float64)
    print(f"exact log-density of the diffused mixture: max |R| = {log_fp_residual(exact_phi, sde, xc, tc).abs().max():.1e}")
    var_data = float(data(10000).var(0).mean())

    class Potential(torch.nn.Module):
        """phi = MLP(x, t/T) - |x|^2 / (2 (a^2 var_data + s^2)): the Gaussian tail keeps the score contracting."""

        def __init__(self):
            super().__init__()
            self.mlp = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.SiLU(), torch.nn.Linear(64, 64),
                                           torch.nn.SiLU(), torch.nn.Linear(64, 1))

        def forward(self, x: Tensor, t: Tensor) -> Tensor:
            a, s = sde.marginal(t)
            return self.mlp(torch.cat([x, t[:, None] / sde.T], 1)).squeeze(1) - 0.5 * (x ** 2).sum(1) / (a ** 2 * var_data + s ** 2)

    ts, truth = time_grid(sde, nfe=50), data(4000)
    x_T = sde.prior_sample((4000, 2), generator=torch.Generator().manual_seed(1))
    print(f"\n{'w_R':>5} | {'train s':>7} | {'mean R^2':>8} | {'W2^2 ODE-SDE':>12} | {'ODE-data':>8} | {'SDE-data':>8}")
    for w_R in (0.0, 10.0):
        torch.manual_seed(0)
        phi, start = Potential(), time.time()
        opt = torch.optim.Adam(phi.parameters(), lr=3e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        for _ in range(steps):
            loss = regularised_loss(phi, sde, data(512), w_R, generator=gen, n_collocation=256)   # (10)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        seconds, score = time.time() - start, score_from_potential(phi)
        x_ode = pf_ode_sample(score, sde, x_T, ts)
        x_sde = reverse_sde_sample(score, sde, x_T, ts, generator=torch.Generator().manual_seed(2))
        R2 = log_fp_residual(phi, sde, *sample_collocation(sde, 2000, 2, generator=gen)).pow(2).mean().item()
        print(f"{w_R:5g} | {seconds:7.1f} | {R2:8.1e} | {_sliced_w2_squared(x_ode, x_sde):12.4f} | "
              f"{_sliced_w2_squared(x_ode, truth):8.4f} | {_sliced_w2_squared(x_sde, truth):8.4f}")
    print(f"\n(sliced W2^2, 4000 samples, {len(ts) - 1} Euler steps; {steps} training steps per model; "
          f"{time.time() - start_all:.1f} s in all)")


if __name__ == "__main__":
    _demo()
