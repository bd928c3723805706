r"""The ODE-SDE gap of a score-based diffusion model, and the Fokker-Planck residual that closes it.

Deveney, Stanczuk, Kreusser, Budd, Schoenlieb, "Closing the ODE-SDE gap in score-based diffusion
models through the Fokker-Planck equation" (arXiv 2311.15996, 2023), with the cheap residual of
Lai et al., "FP-Diffusion" (ICML 2023) for high-dimensional data.

Notation (fixed for the whole file)
-----------------------------------
Forward process on data x_0 ~ p_0 in R^D, for t in [0, T]:

    dX_t = f(X_t, t) dt + g(t) dW_t,          p(x, t) = density of X_t,   u = log p.

Both processes here are linear, f(x, t) = -k(t) x, so X_t | X_0 ~ N(a(t) X_0, s(t)^2 I):

    OU (the paper's):  f = -x,         g = 1,           a = e^{-t},  s^2 = (1 - e^{-2t}) / 2,  prior N(0, I/2)
    VP:                f = -beta x/2,  g = sqrt(beta),  a = e^{-B(t)/2}, s^2 = 1 - a^2,        prior N(0, I)
                       with beta(t) = beta_min + t (beta_max - beta_min) and B(t) = int_0^t beta.

A model gives a score s_theta(x, t) ~ grad_x log p(x, t). Deveney et al. learn a scalar potential
phi_theta(x, t) ~ log p(x, t) and set s_theta = grad_x phi_theta.

Two samplers, one score
-----------------------
Run time backwards from T to 0, starting from the prior. The reverse SDE and the probability-flow
ODE have the same marginals *when the score is exact*:

    reverse SDE:  dX = [f - g^2 s_theta] dt + g dW_bar                               (1)
    PF-ODE:       dX/dt = f - (1/2) g^2 s_theta                                       (2)

With a learned score they do not: (1) and (2) are different maps applied to the same error, and
the SDE's noise keeps pulling samples back towards where the data are while the ODE transports
its error all the way to t = 0. The distance W2(p_theta^ODE(., 0), p_theta^SDE(., 0)) is the
*ODE-SDE gap*.

The Fokker-Planck equations
---------------------------
The density of (forward) X_t solves

    d_t p = -div(f p) + (1/2) g^2 Lap p.                                              (3)

Divide by p and write u = log p (using Lap p / p = Lap u + |grad u|^2):

    d_t u = -div f - f . grad u + (1/2) g^2 (Lap u + |grad u|^2).                     (4)

Take grad_x of (4) with s = grad u (Lai et al.'s score Fokker-Planck equation):

    d_t s = grad_x [ (1/2) g^2 div s + (1/2) g^2 |s|^2 - f . s - div f ].             (5)

The residuals
-------------
Deveney et al. ask phi_theta itself to satisfy (4):

    R_theta(t, x) = d_t phi + div f + f . grad phi - (1/2) g^2 (Lap phi + |grad phi|^2)      (6)

(for the OU process, div f = -D and f . grad phi = -x . grad phi: with D = 2 this is the official
code's R = phi_t - 2 - x . grad phi - |grad phi|^2 / 2 - Lap phi / 2). If R_theta == 0 and
e^{phi(., T)} is the prior, then e^{phi} solves the density equation of the reverse SDE (1) and the
continuity equation of the ODE (2) alike, so both samplers end with the same law e^{phi(., 0)}:
the residual measures how far the model is from a score for which the gap is zero. The paper
proves an upper bound on W2(ODE, SDE) in terms of a norm of R_theta, accumulated over [0, T].
(We do not restate its constants here; the idea is a stability estimate: the ODE velocity
f - g^2 grad phi / 2 differs from the velocity that transports the SDE's law by g^2/2 times a
score mismatch, and the mismatch solves a PDE forced by R_theta.)

In D = 2 every derivative in (6) is exact autograd: one gradient, D second derivatives for the
Laplacian. On images Lai et al. use the vector residual of (5) instead,

    r_theta(t, x) = d_t s_theta - grad_x [ (1/2) g^2 div s_theta + (1/2) g^2 |s_theta|^2 - f . s_theta - div f ],   (7)

(for s = grad phi, r = grad_x R exactly). Two choices make it cheap and sound on images. The
divergence is div s ~ eps^T grad_x (s . eps) with one Gaussian probe eps (Skilling-Hutchinson:
unbiased, one vector-Jacobian product). The time derivative is exact autograd, by the double-backward
identity for a dummy u shaped like s (the sum runs over the coordinates of one sample):

    d_t s = grad_u [ d_t sum_k s_k u_k ],                                             (8)

Lai et al. use a finite difference on the stencil {t - h_s, t, t + h_d} (h_s = 1e-3, h_d = 5e-4)
instead. Near t_min that stencil leaves the training range: for VP (t_min = 1e-3) it calls the
model at t = 0, where s(t) = 0 and the score is singular, and the penalty of an *exact* score
explodes (on a sharp 2D mixture the residual is ~1e6 at t_min; on a U-Net ~1e7 against ~0.1 at
mid t). Even a one-sided stencil fails there, since s changes on the time scale t itself, so its
error is O((h/t)^2) relative. (8) calls the model only at t, is exact at every t in [t_min, T],
and costs two backward passes instead of two forward ones; it needs a model that is differentiable
in t (a continuous time embedding: a model that rounds t to an index would get d_t s = 0).

Training
--------
Denoising score matching, as in the official code (no lambda(t) weighting by default; t drawn as
t_min + (T - t_min) * Beta(1, 2), which favours small t; the official code draws 1e-5 + 10 Beta(1, 2)):

    L_DSM = E_{t, x_0, eps} mean_k ( s_theta(x_t, t) + eps / s(t) )_k^2,   x_t = a(t) x_0 + s(t) eps,   (9)

since grad log p(x_t | x_0) = -(x_t - a x_0) / s^2 = -eps / s. The regularised objective is

    L = L_DSM + w_R * mean_i R_theta(t_i, x_i)^2                                      (10)

with collocation points (t_i, x_i) uniform on [t_min, T] x [-L, L]^D, fresh each step (Deveney
et al.), or, for a score network, mean_i g(t_i)^2 |r_theta(t_i, x_i)|^2 / D^2 at the DSM batch's own
perturbed points (Lai et al.).

Shapes: B is the batch; x has shape [B, *S] (S = (D,) for points, (C, H, W) for images); t is a
python float or a tensor [B]; phi_fn(x, t) -> [B]; score_fn(x, t) -> [B, *S].
"""
from __future__ import annotations

import math
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
# Forward processes
# ----------------------------------------------------------------------------------------------

def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def _col(t: Tensor, x: Tensor) -> Tensor:
    """Reshape t [B] (or a scalar) so that it broadcasts against x [B, *S]."""
    return t.reshape(-1, *([1] * (x.dim() - 1))) if t.dim() > 0 else t


def _grad(out: Tensor, inputs):
    """d(out.sum())/d(inputs) with the graph kept (for training); zeros where out does not depend on them."""
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    if not out.requires_grad:                                      # e.g. the gradient of a linear function
        return tuple(torch.zeros_like(i) for i in inputs)
    return torch.autograd.grad(out.sum(), inputs, create_graph=True, materialize_grads=True)


class SDE:
    """A linear forward process dX = -k(t) X dt + g(t) dW on [0, T] (subclasses: OU, VP).

    ``t_min`` is the smallest time used in training (the score blows up as t -> 0).
    Subclasses define ``k(t)``, ``g(t)``, ``marginal(t)`` and ``prior_std``.
    """

    T: float
    t_min: float
    prior_std: float

    def k(self, t: Tensor) -> Tensor:  # drift rate, f(x, t) = -k(t) x
        raise NotImplementedError

    def g(self, t: Tensor) -> Tensor:  # diffusion coefficient
        raise NotImplementedError

    def marginal(self, t) -> tuple[Tensor, Tensor]:
        """(a(t), s(t)) with X_t | X_0 ~ N(a X_0, s^2 I); tensors shaped like t (differentiable in t)."""
        raise NotImplementedError

    def drift(self, x: Tensor, t) -> Tensor:
        """f(x, t) = -k(t) x, shape of x."""
        t = self._as_time(t, x)
        return -_col(self.k(t), x) * x

    def div_drift(self, x: Tensor, t) -> Tensor:
        """div_x f = -k(t) * (number of coordinates per sample), shape [B]."""
        t = self._as_time(t, x)
        n = x[0].numel()
        return (-self.k(t) * n).expand(x.shape[0]) if t.dim() == 0 else -self.k(t) * n

    def prior_sample(self, shape, *, generator: torch.Generator | None = None,
                     dtype=torch.float32, device=None) -> Tensor:
        """Samples of the prior N(0, prior_std^2 I) that both samplers start from; ``shape`` = (B, *S)."""
        _check_generator(generator)
        shape = tuple(shape) if isinstance(shape, (tuple, list, torch.Size)) else (shape,)
        if len(shape) < 2 or any((not isinstance(n, int)) or n < 1 for n in shape):
            raise ValueError(f"shape must be (B, *S) with positive ints and at least 2 entries, got {shape!r}")
        return self.prior_std * torch.randn(shape, generator=generator, dtype=dtype, device=device)

    def _as_time(self, t, x: Tensor) -> Tensor:
        if not isinstance(t, Tensor):
            t = torch.tensor(float(t), dtype=x.dtype, device=x.device)
        return t

    def check_time(self, t, name: str = "t") -> None:
        """Raise ValueError unless every time in t lies in [0, T]."""
        tt = t if isinstance(t, Tensor) else torch.tensor(float(t))
        if not torch.is_floating_point(tt) or not bool(torch.isfinite(tt).all()):
            raise ValueError(f"{name} must be finite floating-point times, got {t!r}")
        if tt.numel() and (float(tt.min()) < 0.0 or float(tt.max()) > self.T * (1 + 1e-9)):
            raise ValueError(f"{name} must lie in the process's time range [0, {self.T}], "
                             f"got values in [{float(tt.min()):.4g}, {float(tt.max()):.4g}]")


class OU(SDE):
    """The paper's Ornstein-Uhlenbeck process dX = -X dt + dW on [0, T] (T = 10, t_min = 1e-5).

    X_t | X_0 ~ N(e^{-t} X_0, (1 - e^{-2t})/2 I); stationary law (the prior) N(0, I/2).
    """

    def __init__(self, T: float = 10.0, t_min: float = 1e-5):
        if not (isinstance(T, (int, float)) and T > 0):
            raise ValueError(f"T must be a positive number, got {T!r}")
        if not (isinstance(t_min, (int, float)) and 0 < t_min < T):
            raise ValueError(f"t_min must be a number in (0, T={T}), got {t_min!r}")
        self.T, self.t_min, self.prior_std = float(T), float(t_min), math.sqrt(0.5)

    def k(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def g(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def marginal(self, t) -> tuple[Tensor, Tensor]:
        t = torch.as_tensor(t, dtype=t.dtype if isinstance(t, Tensor) else torch.float64)
        a = torch.exp(-t)                                   # a(t) = e^{-t}
        s = torch.sqrt(0.5 * -torch.expm1(-2 * t))          # s(t)^2 = (1 - e^{-2t}) / 2
        return a, s

    def __repr__(self) -> str:
        return f"OU(T={self.T}, t_min={self.t_min})"


class VP(SDE):
    """The variance-preserving process dX = -beta(t) X / 2 dt + sqrt(beta(t)) dW on [0, T] (T = 1).

    beta(t) = beta_min + t (beta_max - beta_min) / T; X_t | X_0 ~ N(a X_0, (1 - a^2) I) with
    a = exp(-B(t)/2), B(t) = int_0^t beta; prior N(0, I).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0, t_min: float = 1e-3):
        for name, v in (("beta_min", beta_min), ("beta_max", beta_max), ("T", T)):
            if not (isinstance(v, (int, float)) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        if beta_max < beta_min:
            raise ValueError(f"beta_max must be >= beta_min={beta_min}, got {beta_max!r}")
        if not (isinstance(t_min, (int, float)) and 0 < t_min < T):
            raise ValueError(f"t_min must be a number in (0, T={T}), got {t_min!r}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)
        self.T, self.t_min, self.prior_std = float(T), float(t_min), 1.0

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + (t / self.T) * (self.beta_max - self.beta_min)

    def k(self, t: Tensor) -> Tensor:
        return 0.5 * self.beta(t)

    def g(self, t: Tensor) -> Tensor:
        return torch.sqrt(self.beta(t))

    def marginal(self, t) -> tuple[Tensor, Tensor]:
        t = torch.as_tensor(t, dtype=t.dtype if isinstance(t, Tensor) else torch.float64)
        B = self.beta_min * t + 0.5 * t ** 2 / self.T * (self.beta_max - self.beta_min)  # int_0^t beta
        a = torch.exp(-0.5 * B)
        s = torch.sqrt(-torch.expm1(-B))                    # s^2 = 1 - a^2
        return a, s

    def __repr__(self) -> str:
        return f"VP(beta_min={self.beta_min}, beta_max={self.beta_max}, T={self.T}, t_min={self.t_min})"


# ----------------------------------------------------------------------------------------------
# Samplers
# ----------------------------------------------------------------------------------------------

def time_grid(sde: SDE, nfe: int = 800, refine_last: int = 10, refine_factor: int = 10,
              dtype=torch.float64) -> Tensor:
    """The official code's decreasing grid from T to 0: ``nfe - refine_last`` steps of T/nfe, then the
    last ``refine_last`` coarse steps cut into ``refine_factor`` fine ones each (nfe=800: 790 + 100 steps).

    Returns ts [n_steps + 1], ts[0] = T, ts[-1] = 0.
    """
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an SDE (OU or VP), got {type(sde).__name__}")
    for name, v in (("nfe", nfe), ("refine_factor", refine_factor)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if not isinstance(refine_last, int) or not 0 <= refine_last <= nfe:
        raise ValueError(f"refine_last must be an int in [0, nfe={nfe}], got {refine_last!r}")
    h = sde.T / nfe
    t_switch = refine_last * h
    coarse = torch.linspace(sde.T, t_switch, nfe - refine_last + 1, dtype=dtype)
    fine = torch.linspace(t_switch, 0.0, refine_last * refine_factor + 1, dtype=dtype)[1:]
    return torch.cat([coarse, fine])


def score_from_potential(phi_fn: PotentialFn, create_graph: bool = False) -> ScoreFn:
    """s(x, t) = grad_x phi(x, t) by autograd; ``create_graph=True`` when the score enters a loss."""
    if not callable(phi_fn):
        raise TypeError(f"phi_fn must be callable (x [B, *S], t [B]) -> [B], got {type(phi_fn).__name__}")

    def score_fn(x: Tensor, t: Tensor) -> Tensor:
        with torch.enable_grad():
            x_ = x if (x.requires_grad and create_graph) else x.detach().requires_grad_(True)
            phi = phi_fn(x_, t)
            if not isinstance(phi, Tensor) or phi.shape != x.shape[:1]:
                raise ValueError(f"phi_fn must return shape [B]={tuple(x.shape[:1])}, got {tuple(getattr(phi, 'shape', ()))}")
            (grad,) = torch.autograd.grad(phi.sum(), x_, create_graph=create_graph)
        return grad
    return score_fn


def _check_sampler_args(score_fn, sde, x_T, ts) -> Tensor:
    if not callable(score_fn):
        raise TypeError(f"score_fn must be callable (x [B, *S], t [B]) -> [B, *S], got {type(score_fn).__name__}")
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an SDE (OU or VP), got {type(sde).__name__}")
    if not isinstance(x_T, Tensor) or not torch.is_floating_point(x_T) or x_T.dim() < 2 or x_T.shape[0] < 1:
        raise ValueError(f"x_T must be a non-empty floating-point tensor [B, *S], got "
                         f"{type(x_T).__name__} of shape {tuple(getattr(x_T, 'shape', ()))}")
    if not isinstance(ts, Tensor):
        ts = torch.as_tensor(ts, dtype=torch.float64)
    if ts.dim() != 1 or ts.numel() < 2:
        raise ValueError(f"ts must be a 1-D time grid with at least 2 times, got shape {tuple(ts.shape)}")
    if not bool((ts[1:] < ts[:-1]).all()):
        raise ValueError("ts must be strictly decreasing (from T towards 0): the samplers run time backwards")
    sde.check_time(ts, "ts")
    return ts


def _checked_score(score_fn, x: Tensor, t: Tensor) -> Tensor:
    s = score_fn(x, t)
    if not isinstance(s, Tensor) or s.shape != x.shape:
        raise ValueError(f"score_fn must return a tensor of the shape of x, {tuple(x.shape)}, "
                         f"got {tuple(getattr(s, 'shape', ()))}")
    return s


@torch.no_grad()
def pf_ode_sample(score_fn: ScoreFn, sde: SDE, x_T: Tensor, ts) -> Tensor:
    """Euler steps of the probability-flow ODE (2) along the decreasing grid ts.

    x_{k+1} = x_k + [f(x_k, t_k) - g(t_k)^2 s(x_k, t_k) / 2] (t_{k+1} - t_k).

    score_fn(x [B, *S], t [B]) -> [B, *S]; x_T [B, *S]; ts [N + 1] from T down to ~0. Returns [B, *S].
    The score is evaluated at ts[:-1] only, so ts may end at 0.
    """
    ts = _check_sampler_args(score_fn, sde, x_T, ts)
    x = x_T.clone()
    for k in range(ts.numel() - 1):
        t = torch.full((x.shape[0],), float(ts[k]), dtype=x.dtype, device=x.device)
        dt = float(ts[k + 1] - ts[k])                              # < 0
        g2 = _col(sde.g(t) ** 2, x)
        x = x + (sde.drift(x, t) - 0.5 * g2 * _checked_score(score_fn, x, t)) * dt   # (2)
    return x


@torch.no_grad()
def reverse_sde_sample(score_fn: ScoreFn, sde: SDE, x_T: Tensor, ts, *,
                       generator: torch.Generator | None = None, noise_last: bool = False) -> Tensor:
    """Euler-Maruyama steps of the reverse SDE (1) along the decreasing grid ts.

    x_{k+1} = x_k + [f - g^2 s](x_k, t_k) (t_{k+1} - t_k) + g(t_k) sqrt(t_k - t_{k+1}) z_k,  z_k ~ N(0, I).

    As in the official code the last step adds no noise (it only denoises), unless ``noise_last``.
    Shapes as in :func:`pf_ode_sample`.
    """
    ts = _check_sampler_args(score_fn, sde, x_T, ts)
    _check_generator(generator)
    x = x_T.clone()
    n = ts.numel() - 1
    for k in range(n):
        t = torch.full((x.shape[0],), float(ts[k]), dtype=x.dtype, device=x.device)
        dt = float(ts[k + 1] - ts[k])                              # < 0
        g = _col(sde.g(t), x)
        x = x + (sde.drift(x, t) - g ** 2 * _checked_score(score_fn, x, t)) * dt    # (1), drift
        if k < n - 1 or noise_last:
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = x + g * math.sqrt(-dt) * z                        # (1), noise
    return x


# ----------------------------------------------------------------------------------------------
# Residuals
# ----------------------------------------------------------------------------------------------

def _check_points(sde, x, t, fn, fn_name) -> Tensor:
    if not callable(fn):
        raise TypeError(f"{fn_name} must be callable, got {type(fn).__name__}")
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an SDE (OU or VP), got {type(sde).__name__}")
    if not isinstance(x, Tensor) or not torch.is_floating_point(x) or x.dim() < 2 or x.shape[0] < 1:
        raise ValueError(f"x must be a non-empty floating-point tensor [B, *S], got shape {tuple(getattr(x, 'shape', ()))}")
    if not isinstance(t, Tensor):
        t = torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)
    if t.dim() == 0:
        t = t.expand(x.shape[0])
    if t.shape != x.shape[:1]:
        raise ValueError(f"t must be a float or a tensor [B]={tuple(x.shape[:1])}, got shape {tuple(t.shape)}")
    sde.check_time(t, "t")
    return t.to(dtype=x.dtype, device=x.device)


def log_fp_residual(phi_fn: PotentialFn, sde: SDE, x: Tensor, t) -> Tensor:
    """Deveney et al.'s log-density Fokker-Planck residual (6), every derivative exact autograd.

    phi_fn(x [B, *S], t [B]) -> [B] is a log-density model; x [B, *S]; t float or [B] in [0, T].
    Returns R [B], differentiable in the parameters of phi_fn (the graph is kept for training).
    The Laplacian costs one backward pass per coordinate: meant for low dimension.
    """
    t = _check_points(sde, x, t, phi_fn, "phi_fn")
    if not x.requires_grad:                                        # keep a caller's graph (grad_x R is eq. (7))
        x = x.detach().requires_grad_(True)
    if not t.requires_grad:
        t = t.detach().requires_grad_(True)
    phi = phi_fn(x, t)
    if not isinstance(phi, Tensor) or phi.shape != x.shape[:1]:
        raise ValueError(f"phi_fn must return shape [B]={tuple(x.shape[:1])}, got {tuple(getattr(phi, 'shape', ()))}")
    phi_x, phi_t = _grad(phi, (x, t))
    flat = phi_x.reshape(x.shape[0], -1)
    lap = torch.zeros_like(phi)
    for i in range(flat.shape[1]):                                 # Lap phi = sum_i d^2 phi / dx_i^2
        (h,) = _grad(flat[:, i], x)
        lap = lap + h.reshape(x.shape[0], -1)[:, i]
    g2 = sde.g(t) ** 2
    f_dot_grad = (sde.drift(x, t) * phi_x).reshape(x.shape[0], -1).sum(1)
    sq = flat.pow(2).sum(1)
    return phi_t + sde.div_drift(x, t) + f_dot_grad - 0.5 * g2 * (lap + sq)       # (6)


def score_fp_residual(score_fn: ScoreFn, sde: SDE, x: Tensor, t, *,
                      generator: torch.Generator | None = None, divergence: str = "hutchinson") -> Tensor:
    """Lai et al.'s score Fokker-Planck residual (7): one Hutchinson probe for div s, and d_t s exact
    by the double-backward identity (8), so the model is called at t only (never below t_min).

    score_fn(x [B, *S], t [B]) -> [B, *S], differentiable in x and t; x [B, *S]; t float or [B] in [0, T].
    ``divergence="exact"`` uses the full Jacobian trace instead (one backward per coordinate).
    Returns r [B, *S], differentiable in the model's parameters.
    """
    t = _check_points(sde, x, t, score_fn, "score_fn")
    _check_generator(generator)
    if divergence not in ("hutchinson", "exact"):
        raise ValueError(f"divergence must be 'hutchinson' or 'exact', got {divergence!r}")
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    t = t.detach().requires_grad_(True)
    s = score_fn(x, t)
    if not isinstance(s, Tensor) or s.shape != x.shape:
        raise ValueError(f"score_fn must return a tensor of the shape of x, {tuple(x.shape)}, "
                         f"got {tuple(getattr(s, 'shape', ()))}")
    B = x.shape[0]
    u = torch.zeros_like(s, requires_grad=True)
    (ds_dt,) = _grad(_grad(s * u, t)[0], u)                        # (8): d_t s, exact
    # div s: eps^T grad_x (s . eps) (one probe), or the exact Jacobian trace
    if divergence == "hutchinson":
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        (vjp,) = _grad(s * eps, x)
        div_s = (vjp * eps).reshape(B, -1).sum(1)
    else:
        flat = s.reshape(B, -1)
        div_s = torch.zeros(B, dtype=x.dtype, device=x.device)
        for i in range(flat.shape[1]):
            (h,) = _grad(flat[:, i], x)
            div_s = div_s + h.reshape(B, -1)[:, i]
    g2 = sde.g(t) ** 2
    f_dot_s = (sde.drift(x, t) * s).reshape(B, -1).sum(1)
    potential = 0.5 * g2 * (div_s + s.reshape(B, -1).pow(2).sum(1)) - f_dot_s - sde.div_drift(x, t)
    (rhs,) = _grad(potential, x)            # grad_x [...] in (5)
    return ds_dt - rhs                                                              # (7)


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------

def _check_loss_args(fn, fn_name, sde, x0, generator):
    if not callable(fn):
        raise TypeError(f"{fn_name} must be callable, got {type(fn).__name__}")
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an SDE (OU or VP), got {type(sde).__name__}")
    if not isinstance(x0, Tensor) or not torch.is_floating_point(x0) or x0.dim() < 2 or x0.shape[0] < 1:
        raise ValueError(f"x0 must be a non-empty floating-point tensor [B, *S], got shape {tuple(getattr(x0, 'shape', ()))}")
    _check_generator(generator)


def _dsm_times(sde: SDE, n: int, like: Tensor, generator) -> Tensor:
    # t = t_min + (T - t_min) Beta(1, 2): the inverse CDF of Beta(1, 2) is 1 - sqrt(1 - U)
    u = torch.rand(n, generator=generator, dtype=like.dtype, device=like.device)
    return sde.t_min + (sde.T - sde.t_min) * (1 - torch.sqrt(1 - u))


def _dsm(score_fn, sde, x0, generator, weighting):
    t = _dsm_times(sde, x0.shape[0], x0, generator)
    a, s = sde.marginal(t)
    a, s = _col(a, x0), _col(s, x0)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    x_t = a * x0 + s * eps                                       # x_t ~ p(x_t | x_0)
    pred = score_fn(x_t, t)
    if not isinstance(pred, Tensor) or pred.shape != x0.shape:
        raise ValueError(f"score_fn must return a tensor of the shape of x0, {tuple(x0.shape)}, "
                         f"got {tuple(getattr(pred, 'shape', ()))}")
    err = (pred + eps / s) ** 2                                  # (9): target grad log p(x_t|x_0) = -eps / s
    if weighting == "sigma2":
        err = err * s ** 2                                       # lambda(t) = s(t)^2: the eps-prediction loss
    return err.mean(), x_t, t


def dsm_loss(score_fn: ScoreFn, sde: SDE, x0: Tensor, *, generator: torch.Generator | None = None,
             weighting: str = "none") -> Tensor:
    """Denoising score matching (9) on a batch of data x0 [B, *S]; returns a scalar.

    t ~ t_min + (T - t_min) Beta(1, 2), as in the official code. ``weighting="none"`` (the official code's) or
    ``"sigma2"`` (lambda(t) = s(t)^2, i.e. the usual eps-prediction loss, far lower variance).
    For a potential model pass ``score_from_potential(phi_fn, create_graph=True)``.
    """
    _check_loss_args(score_fn, "score_fn", sde, x0, generator)
    if weighting not in ("none", "sigma2"):
        raise ValueError(f"weighting must be 'none' or 'sigma2', got {weighting!r}")
    return _dsm(score_fn, sde, x0, generator, weighting)[0]


def sample_collocation(sde: SDE, n: int, dim: int, box: float = 3.5, *,
                       generator: torch.Generator | None = None, dtype=torch.float32, device=None):
    """Deveney et al.'s collocation points: (x [n, dim] uniform on [-box, box]^dim, t [n] uniform on [t_min, T])."""
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an SDE (OU or VP), got {type(sde).__name__}")
    _check_generator(generator)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    if not (isinstance(box, (int, float)) and box > 0):
        raise ValueError(f"box must be a positive number, got {box!r}")
    x = (2 * torch.rand(n, dim, generator=generator, dtype=dtype, device=device) - 1) * box
    t = sde.t_min + (sde.T - sde.t_min) * torch.rand(n, generator=generator, dtype=dtype, device=device)
    return x, t


def regularised_loss(model_fn: Callable, sde: SDE, x0: Tensor, w_R: float, *, kind: str = "log",
                     generator: torch.Generator | None = None, n_collocation: int | None = None,
                     box: float = 3.5, weighting: str = "none", return_parts: bool = False):
    """L = L_DSM + w_R * residual penalty, eq. (10). Returns a scalar (or (L, L_DSM, penalty) with
    ``return_parts``, the last two detached).

    kind="log" (Deveney et al.): model_fn = phi(x [B, D], t [B]) -> [B], a log-density network;
      the score is grad_x phi; the penalty is mean R^2 of (6) at ``n_collocation`` (default B) fresh
      points uniform on [t_min, T] x [-box, box]^D.
    kind="score" (Lai et al.): model_fn = s(x [B, *S], t [B]) -> [B, *S]; the penalty is
      mean g(t)^2 |r|^2 / D^2 of (7) at the DSM batch's own perturbed points (one Hutchinson probe).
    w_R = 0 skips the residual entirely (a plain DSM step).
    """
    fn_name = "model_fn"
    _check_loss_args(model_fn, fn_name, sde, x0, generator)
    if kind not in ("log", "score"):
        raise ValueError(f"kind must be 'log' (potential model) or 'score' (score model), got {kind!r}")
    if isinstance(w_R, bool) or not isinstance(w_R, (int, float)) or not w_R >= 0 or math.isinf(w_R):
        raise ValueError(f"w_R must be a finite number >= 0, got {w_R!r}")
    if weighting not in ("none", "sigma2"):
        raise ValueError(f"weighting must be 'none' or 'sigma2', got {weighting!r}")
    if n_collocation is not None and (not isinstance(n_collocation, int) or n_collocation < 1):
        raise ValueError(f"n_collocation must be a positive int or None, got {n_collocation!r}")
    if kind == "log" and x0.dim() != 2:
        raise ValueError(f"x0 must be points [B, D] for kind='log' (the exact Laplacian is for low D), got shape {tuple(x0.shape)}")
    score_fn = score_from_potential(model_fn, create_graph=True) if kind == "log" else model_fn
    dsm, x_t, t = _dsm(score_fn, sde, x0, generator, weighting)
    penalty = torch.zeros((), dtype=x0.dtype, device=x0.device)
    if w_R > 0:
        if kind == "log":
            n = n_collocation or x0.shape[0]
            xc, tc = sample_collocation(sde, n, x0.shape[1], box, generator=generator, dtype=x0.dtype, device=x0.device)
            penalty = log_fp_residual(model_fn, sde, xc, tc).pow(2).mean()                    # mean R^2
        else:
            r = score_fp_residual(model_fn, sde, x_t.detach(), t, generator=generator)
            D = x0[0].numel()
            penalty = (sde.g(t) ** 2 * r.reshape(r.shape[0], -1).pow(2).sum(1)).mean() / D ** 2
    loss = dsm + w_R * penalty
    if return_parts:
        return loss, dsm.detach(), penalty.detach()
    return loss


# ----------------------------------------------------------------------------------------------
# Demo: python minimal/fpe_gap.py  (well under a minute on one CPU core)
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


def _demo() -> None:
    import time

    torch.manual_seed(0)
    torch.set_num_threads(1)                      # tiny networks: one thread is the fastest on a small CPU
    sde = OU()
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[1.3, 1.3], [-1.3, 1.3], [1.3, -1.3], [-1.3, -1.3]])   # 4 Gaussians, std 0.2

    def data(n):
        return centres[torch.randint(0, 4, (n,), generator=gen)] + 0.2 * torch.randn(n, 2, generator=gen)

    # 1. the exact log-density of the diffused mixture solves (4): its residual (6) is rounding error
    def exact_phi(x, t):
        a, s = sde.marginal(t)
        var = (a ** 2 * 0.04 + s ** 2)[:, None]                                  # [B, 1]
        d2 = ((x[:, None, :] - a[:, None, None] * centres.to(x)) ** 2).sum(-1)  # [B, 4]
        return torch.logsumexp(-0.5 * d2 / var - torch.log(2 * math.pi * var), 1) - math.log(4)

    xc, tc = sample_collocation(sde, 1000, 2, generator=gen, dtype=torch.float64)
    print(f"exact log-density: max |R| = {log_fp_residual(exact_phi, sde, xc, tc).abs().max().item():.1e}")

    # 2. potential networks trained with w_R = 0 and w_R = 10: the residual and the ODE-SDE gap shrink
    var_data = float(data(10000).var(0).mean())

    class Potential(torch.nn.Module):
        """phi = MLP(x, t/T) - |x|^2 / (2 (a^2 var_data + s^2)): the Gaussian tail keeps the score
        contracting far from the data (an MLP alone grows linearly, and the reverse ODE then escapes)."""

        def __init__(self):
            super().__init__()
            self.mlp = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.SiLU(), torch.nn.Linear(64, 64),
                                           torch.nn.SiLU(), torch.nn.Linear(64, 1))

        def forward(self, x, t):
            a, s = sde.marginal(t)
            return self.mlp(torch.cat([x, t[:, None] / sde.T], 1)).squeeze(1) - 0.5 * (x ** 2).sum(1) / (a ** 2 * var_data + s ** 2)

    ts = time_grid(sde, nfe=50)
    x_T = sde.prior_sample((4000, 2), generator=torch.Generator().manual_seed(1))
    truth = data(4000)
    for w_R in (0.0, 10.0):
        torch.manual_seed(0)
        phi = Potential()
        opt = torch.optim.Adam(phi.parameters(), lr=3e-3)
        steps = 1000
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        start = time.time()
        for _ in range(steps):
            loss = regularised_loss(phi, sde, data(512), w_R, generator=gen, n_collocation=256)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        score = score_from_potential(phi)
        x_ode = pf_ode_sample(score, sde, x_T, ts)
        x_sde = reverse_sde_sample(score, sde, x_T, ts, generator=torch.Generator().manual_seed(2))
        R2 = log_fp_residual(phi, sde, *sample_collocation(sde, 2000, 2, generator=gen)).pow(2).mean().item()
        print(f"w_R={w_R:>4}: {steps} steps in {time.time() - start:4.1f} s | mean R^2 {R2:8.2e} | sliced W2^2: "
              f"ODE-SDE {_sliced_w2_squared(x_ode, x_sde):.4f}, ODE-data {_sliced_w2_squared(x_ode, truth):.4f}, "
              f"SDE-data {_sliced_w2_squared(x_sde, truth):.4f}")


if __name__ == "__main__":
    _demo()
