r"""Gaussian mixtures and their *exact* denoiser and score under the forward process.

A Gaussian mixture is the one data distribution for which everything a diffusion model tries to
learn has a closed form. That makes it the perfect model: every learned denoiser in the course is
compared with the one in this file.

Notation (fixed for the whole file)
-----------------------------------
Data :math:`x_0 \sim p_0 = \sum_k w_k\,\mathcal N(\mu_k, \Sigma_k)` with ``K`` components in
``D`` dimensions. The forward process at one noise level is

.. math::   x_t = a\,x_0 + s\,\epsilon, \qquad \epsilon \sim \mathcal N(0, I),

with ``a`` the signal scale and ``s > 0`` the noise scale (DDPM: :math:`a=\sqrt{\bar\alpha_t}`,
:math:`s=\sqrt{1-\bar\alpha_t}`; VE: :math:`a=1`, :math:`s=\sigma_t`).

1. **The marginal.** Given the component ``k``, :math:`x_t` is an affine map of a Gaussian plus
   independent Gaussian noise, so

   .. math::   p_t(x_t) = \sum_k w_k\,\mathcal N\big(x_t;\ a\mu_k,\ C_k\big),
               \qquad C_k = a^2\Sigma_k + s^2 I .

2. **Which component made this point?** By Bayes' rule the posterior responsibilities are

   .. math::   r_k(x_t) = p(k \mid x_t)
               = \frac{w_k\,\mathcal N(x_t; a\mu_k, C_k)}{\sum_j w_j\,\mathcal N(x_t; a\mu_j, C_j)} .

3. **The denoiser inside one component.** :math:`(x_0, x_t)` given ``k`` is jointly Gaussian with
   :math:`\mathrm{Cov}(x_0, x_t) = a\Sigma_k`, so the Gaussian conditioning formula gives

   .. math::   m_k(x_t) = \mathbb E[x_0 \mid x_t, k] = \mu_k + a\,\Sigma_k C_k^{-1}(x_t - a\mu_k).

4. **The exact denoiser** is the responsibility-weighted average (tower rule):

   .. math::   \mathbb E[x_0 \mid x_t] = \sum_k r_k(x_t)\, m_k(x_t).

   For small ``s`` the responsibilities switch abruptly at the boundaries between modes, so the
   denoiser is a staircase; that step is what a smooth network cannot fit (lesson 01).

5. **The exact score** is the gradient of the log of (1):

   .. math::   \nabla \log p_t(x_t) = -\sum_k r_k(x_t)\, C_k^{-1}(x_t - a\mu_k)
               = \frac{a\,\mathbb E[x_0\mid x_t] - x_t}{s^2}  \quad\text{(Tweedie)},

   and the optimal noise prediction is :math:`\mathbb E[\epsilon\mid x_t] = (x_t - a\,\mathbb E[x_0\mid x_t])/s
   = -s\,\nabla\log p_t(x_t)`.

Computation. Each covariance is diagonalised once, :math:`\Sigma_k = U_k\,\mathrm{diag}(\lambda_k)U_k^\top`.
Then :math:`C_k = U_k\,\mathrm{diag}(a^2\lambda_k + s^2)\,U_k^\top` for every ``(a, s)``, so with
:math:`z = U_k^\top(x_t - a\mu_k)` and :math:`v = a^2\lambda_k + s^2` all of the above is elementwise:
:math:`\log\mathcal N = -\tfrac12\sum_d (z_d^2/v_d + \log v_d + \log 2\pi)`,
:math:`m_k = \mu_k + U_k(a\lambda_k z / v)` and :math:`C_k^{-1}(x_t-a\mu_k) = U_k(z/v)`.
This also lets ``a`` and ``s`` differ per sample (shape ``[B]``) at no extra cost. Everything is
computed in float64 and returned in the input's dtype. The residual is standardised first,
:math:`u = z/\sqrt v` with :math:`\sqrt v` = ``hypot``, and the responsibilities are a softmax of
:math:`-\tfrac12|u|^2` taken relative to each row's smallest :math:`|u|^2`, so a huge :math:`|x_t|`
or ``s`` (where :math:`z^2` or :math:`s^2` overflow float64) still gives finite, exact-limit answers.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional, Union

import torch

Scalar = Union[float, int, torch.Tensor]

__all__ = ["GaussianMixture", "ClassConditionalMixture"]

# Rows per chunk in the exact computations: bounds the [B, K, D] float64 intermediates.
CHUNK = 1 << 15


# ----------------------------------------------------------------------------------------------
# input checks (each names the argument and what was expected, before any work)
# ----------------------------------------------------------------------------------------------


def _as_float64(value, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        out = value.detach().to(dtype=torch.float64, device="cpu")
    else:
        try:
            out = torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be a tensor or a sequence of numbers, got {type(value).__name__}") from err
    if not torch.isfinite(out).all():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return out


def _check_points(x, dim: int, name: str) -> torch.Tensor:
    """``x`` must be a floating tensor of shape [B, dim]."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [B, {dim}], got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] != dim:
        hint = " (use x[:, None] for 1D data)" if x.dim() == 1 and dim == 1 else ""
        raise ValueError(f"{name} must have shape [B, {dim}], got {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def _check_level(value: Scalar, batch: int, name: str, positive: bool) -> torch.Tensor:
    """A noise-level argument (``a`` or ``s``) as a float64 tensor of shape [1, 1] or [B, 1]."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a float or a tensor, got bool")
    if isinstance(value, (int, float)):
        out = torch.tensor([[float(value)]], dtype=torch.float64)
    elif isinstance(value, torch.Tensor):
        if value.numel() == 1:
            out = value.detach().reshape(1, 1)
        elif value.shape in ((batch,), (batch, 1)):
            out = value.detach().reshape(batch, 1)
        else:
            raise ValueError(f"{name} must be a float or a tensor of shape [B] or [B, 1] with B={batch}, "
                             f"got shape {tuple(value.shape)}")
        out = out.to(torch.float64)
    else:
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
    if not torch.isfinite(out).all():
        raise ValueError(f"{name} must be finite")
    if positive and not (out > 0).all():
        raise ValueError(f"{name} must be > 0 (the noise scale), got min {out.min().item():g}")
    return out


# ----------------------------------------------------------------------------------------------
# the mixture
# ----------------------------------------------------------------------------------------------


class GaussianMixture:
    r"""A mixture :math:`\sum_k w_k \mathcal N(\mu_k, \Sigma_k)` in ``D`` dimensions, with exact
    log-density, sampling, and exact denoiser/score under :math:`x_t = a x_0 + s\epsilon`.

    Args:
        weights: [K] non-negative, summing to > 0 (normalised here); ``None`` means equal weights.
        means: [K, D] (a [K] tensor is read as K one-dimensional means).
        covs: [K, D, D] symmetric positive definite covariances. Give either ``covs`` or ``stds``.
        stds: a float, or [K] per-component standard deviations: :math:`\Sigma_k = \mathrm{std}_k^2 I`.
            (A float or a 1-D tensor passed as the third positional argument is read as ``stds``.)

    Attributes: ``weights`` [K], ``means`` [K, D], ``covs`` [K, D, D] (all float64), ``K``, ``D``.

    Example::

        gm = GaussianMixture([1, 1, 1], [[1.0], [2.0], [3.0]], stds=0.05)
        x0 = gm.sample(1000)                       # [1000, 1]
        x_t = 0.9 * x0 + 0.4 * torch.randn_like(x0)
        x0_hat = gm.denoise(x_t, a=0.9, s=0.4)     # [1000, 1], the exact E[x0 | x_t]
        score = gm.score(x_t, a=0.9, s=0.4)        # [1000, 1], grad log p_t(x_t)
    """

    def __init__(self, weights, means, covs=None, *, stds=None):
        means = _as_float64(means, "means")
        if means.dim() == 1:
            means = means[:, None]
        if means.dim() != 2 or means.shape[0] == 0 or means.shape[1] == 0:
            raise ValueError(f"means must have shape [K, D] with K >= 1 and D >= 1, got {tuple(means.shape)}")
        K, D = means.shape
        if weights is None:
            weights = torch.ones(K, dtype=torch.float64)
        weights = _as_float64(weights, "weights").reshape(-1)
        if weights.shape[0] != K:
            raise ValueError(f"weights must have K={K} entries (one per mean), got {weights.shape[0]}")
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("weights must be non-negative and sum to > 0")
        if covs is not None and stds is None and _as_float64(covs, "covs").dim() <= 1:
            covs, stds = None, covs  # GaussianMixture(w, mu, 0.05): a float (or [K]) third argument is stds
        if (covs is None) == (stds is None):
            raise ValueError("covs or stds: give exactly one of covs [K, D, D] or stds (a float or [K])")
        if stds is not None:
            stds = _as_float64(stds, "stds").reshape(-1)
            if stds.numel() == 1:
                stds = stds.expand(K)
            if stds.shape[0] != K:
                raise ValueError(f"stds must be a float or have K={K} entries, got {stds.shape[0]}")
            if (stds <= 0).any():
                raise ValueError(f"stds must be > 0, got min {stds.min().item():g}")
            covs = stds[:, None, None] ** 2 * torch.eye(D, dtype=torch.float64)
        else:
            covs = _as_float64(covs, "covs")
            if covs.shape != (K, D, D):
                raise ValueError(f"covs must have shape [K, D, D] = [{K}, {D}, {D}], got {tuple(covs.shape)}")
            if not torch.allclose(covs, covs.transpose(1, 2), rtol=1e-10, atol=1e-12):
                raise ValueError("covs must be symmetric")
        eigvals, eigvecs = torch.linalg.eigh(covs)  # Sigma_k = U_k diag(lambda_k) U_k^T
        if (eigvals <= 0).any():
            raise ValueError("covs must be positive definite (all eigenvalues > 0)")

        self.weights = weights / weights.sum()
        self.means = means.clone()
        self.covs = covs.clone()
        self.K, self.D = K, D
        self._eigvals = eigvals  # [K, D]
        self._eigvecs = eigvecs  # [K, D, D]
        self._log_weights = torch.log(self.weights)  # -inf for zero-weight components

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.K}, D={self.D})"

    # -- helpers ------------------------------------------------------------------------------

    def _params(self, device: torch.device):
        return (self._log_weights.to(device), self.means.to(device),
                self._eigvals.to(device), self._eigvecs.to(device))

    def _components(self, x: torch.Tensor, a: torch.Tensor, s: torch.Tensor, need: str):
        """Per-component terms at x_t = x (float64 [B, D]); a, s float64 [1 or B, 1] on x's device.

        Returns ``(rel, offset, extra)``: log w_k + log N(x; a mu_k, C_k) = rel [B, K] + offset [B, 1],
        split so that ``rel`` has a finite maximum in every row even where |x_t| or s is so large that
        |x_t - a mu_k|^2 / v overflows (the responsibilities are softmax(rel); log p_t adds ``offset``,
        which may be -inf). By ``need``, ``extra`` is the per-component posterior means m_k [B, K, D]
        ("denoise"), the scores -C_k^{-1}(x - a mu_k) ("score"), s C_k^{-1}(x - a mu_k) ("eps"), or None.
        """
        log_w, mu, lam, U = self._params(x.device)
        a3, s3 = a[:, :, None], s[:, :, None]
        diff = x[:, None, :] - a3 * mu[None]                       # x - a mu_k          [B, K, D]
        z = torch.einsum("kde,bkd->bke", U, diff)                  # U_k^T (x - a mu_k)  [B, K, D]
        sd = torch.hypot(a3 * lam[None].sqrt(), s3)                # sqrt(eig C_k) = sqrt(a^2 lam + s^2), no overflow
        u = z / sd                                                 # standardised residual, |u|^2 = z^T C_k^-1 z
        # |u|^2 overflows for huge |x_t| / s: compute it as scale^2 * q with q = |u / scale|^2 in [0, D],
        # and keep scale^2 * (q - min_k q) (finite where it matters) apart from scale^2 * min_k q.
        scale = u.abs().amax(dim=(1, 2), keepdim=True)[:, :, 0].clamp(min=1.0)    # [B, 1]
        q = ((u / scale[:, :, None]) ** 2).sum(-1)                                 # [B, K]
        q_min = q.amin(dim=1, keepdim=True)
        rel = log_w[None] - 0.5 * ((q - q_min) * scale) * scale - torch.log(sd).sum(-1)
        offset = -0.5 * (q_min * scale) * scale - 0.5 * self.D * math.log(2 * math.pi)
        if need == "denoise":
            gain = a3 * lam[None] / sd                              # eig(a Sigma_k C_k^{-1}) * sd
            extra = mu[None] + torch.einsum("kde,bke->bkd", U, gain * u)  # m_k = mu_k + a Sigma_k C_k^-1 (x - a mu_k)
        elif need == "score":
            extra = -torch.einsum("kde,bke->bkd", U, u / sd)        # -C_k^{-1} (x - a mu_k)
        elif need == "eps":
            extra = torch.einsum("kde,bke->bkd", U, (s3 / sd) * u)  # s C_k^{-1} (x - a mu_k), s / sd <= 1
        else:
            extra = None
        return rel, offset, extra

    def _evaluate(self, x: torch.Tensor, a: torch.Tensor, s: torch.Tensor, what: str,
                  mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """One of "log_prob" [B], "posterior" [B, K], "denoise" / "score" / "eps" [B, D] at float64 x [B, D],
        in chunks of CHUNK rows (the [B, K, D] intermediates stay small for millions of points).
        ``mask`` [B, K] (True = allowed) restricts the responsibilities to some components."""
        a, s = a.to(x.device), s.to(x.device)
        mask = None if mask is None else mask.to(x.device)
        need = what if what in ("denoise", "score", "eps") else "log_prob"
        pieces = []
        for i in range(0, x.shape[0], CHUNK):
            rows = slice(i, i + CHUNK)
            a_i = a if a.shape[0] == 1 else a[rows]
            s_i = s if s.shape[0] == 1 else s[rows]
            rel, offset, extra = self._components(x[rows], a_i, s_i, need)
            if mask is not None:
                rel = rel.masked_fill(~mask[rows], float("-inf"))
            if what == "log_prob":
                pieces.append(torch.logsumexp(rel, dim=1) + offset[:, 0])
                continue
            r = torch.softmax(rel, dim=1)                            # r_k(x_t) = p(k | x_t)   [b, K]
            if what == "posterior":
                pieces.append(r)
                continue
            extra = torch.where(r[:, :, None] > 0, extra, 0.0)       # a component with r_k = 0 adds nothing (not 0 * inf)
            pieces.append(torch.einsum("bk,bkd->bd", r, extra))
        if not pieces:  # an empty batch
            shape = {"log_prob": (0,), "posterior": (0, self.K)}.get(what, (0, self.D))
            return torch.zeros(shape, dtype=torch.float64, device=x.device)
        return torch.cat(pieces)

    def _prepare(self, x_t, a, s, name: str = "x_t"):
        x_t = _check_points(x_t, self.D, name)
        a = _check_level(a, x_t.shape[0], "a", positive=False)
        s = _check_level(s, x_t.shape[0], "s", positive=True)
        return x_t, x_t.to(torch.float64), a, s

    # -- the data distribution ----------------------------------------------------------------

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p_0(x) for x [B, D] -> [B] (exact; float64 inside, x's dtype out)."""
        x = _check_points(x, self.D, "x")
        one = torch.ones(1, 1, dtype=torch.float64)
        return self._evaluate(x.to(torch.float64), one, 0 * one, "log_prob").to(x.dtype)  # a = 1, s = 0

    def sample(self, n: int, generator: Optional[torch.Generator] = None, return_labels: bool = False,
               dtype: Optional[torch.dtype] = None):
        """n samples [n, D] (default dtype float32), and their component labels [n] if ``return_labels``.

        Randomness comes only from ``generator`` (a CPU generator), so a seeded generator reproduces.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        _check_generator(generator)
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator) if n else \
            torch.zeros(0, dtype=torch.long)
        x = self._sample_given_labels(labels, generator)
        x = x.to(dtype or torch.get_default_dtype())
        return (x, labels) if return_labels else x

    def _sample_given_labels(self, labels: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        """x_0 = mu_k + U_k diag(sqrt(lambda_k)) eps for the given component labels [n] -> float64 [n, D]."""
        eps = torch.randn(labels.shape[0], self.D, generator=generator, dtype=torch.float64)
        root = self._eigvecs * self._eigvals.sqrt()[:, None, :]  # U diag(sqrt lam): root root^T = Sigma
        return self.means[labels] + torch.einsum("nde,ne->nd", root[labels], eps)

    def nearest_mode_distance(self, x: torch.Tensor) -> torch.Tensor:
        """Euclidean distance from each point x [B, D] to its closest mean -> [B] (x's dtype)."""
        x = _check_points(x, self.D, "x")
        dist = torch.cdist(x.to(torch.float64), self.means.to(x.device))  # [B, K]
        return dist.min(dim=1).values.to(x.dtype)

    # -- the forward process x_t = a x_0 + s eps ----------------------------------------------

    def marginal(self, a: Scalar, s: Scalar) -> "GaussianMixture":
        """The mixture of x_t = a x_0 + s eps: weights w_k, means a mu_k, covs a^2 Sigma_k + s^2 I.

        ``a`` and ``s`` must be scalars here (one noise level); ``s`` > 0.
        """
        a_ = _check_level(a, 1, "a", positive=False)
        s_ = _check_level(s, 1, "s", positive=True)
        a_, s_ = a_.item(), s_.item()
        eye = torch.eye(self.D, dtype=torch.float64)
        return GaussianMixture(self.weights, a_ * self.means, a_ ** 2 * self.covs + s_ ** 2 * eye)

    def log_prob_t(self, x_t: torch.Tensor, a: Scalar, s: Scalar) -> torch.Tensor:
        """log p_t(x_t) [B] for x_t [B, D]; a, s floats or [B] / [B, 1] tensors."""
        return self._forward_quantity(x_t, a, s, "log_prob")

    def posterior(self, x_t: torch.Tensor, a: Scalar, s: Scalar) -> torch.Tensor:
        """Responsibilities r_k(x_t) = p(k | x_t) [B, K] (rows sum to 1)."""
        return self._forward_quantity(x_t, a, s, "posterior")

    def denoise(self, x_t: torch.Tensor, a: Scalar, s: Scalar) -> torch.Tensor:
        """The exact denoiser E[x_0 | x_t] = sum_k r_k m_k  [B, D]."""
        return self._forward_quantity(x_t, a, s, "denoise")

    def score(self, x_t: torch.Tensor, a: Scalar, s: Scalar) -> torch.Tensor:
        """The exact score grad log p_t(x_t) = -sum_k r_k C_k^{-1}(x_t - a mu_k)  [B, D]."""
        return self._forward_quantity(x_t, a, s, "score")

    def eps(self, x_t: torch.Tensor, a: Scalar, s: Scalar) -> torch.Tensor:
        """The optimal noise prediction E[eps | x_t] = (x_t - a E[x_0 | x_t]) / s = -s * score  [B, D]."""
        return self._forward_quantity(x_t, a, s, "eps")

    def ddpm_eps_model(self, betas: torch.Tensor):
        """The exact noise prediction as a DDPM model: ``eps_model(x_t [B, D], t / T [B]) -> [B, D]``.

        ``betas`` [T] is the schedule (``minimal/hallucination.py``'s ``linear_beta_schedule``): the model
        reads the step t from t / T and returns :meth:`eps` at a = sqrt(abar_t), s = sqrt(1 - abar_t).
        """
        if not isinstance(betas, torch.Tensor) or betas.dim() != 1 or betas.numel() == 0:
            raise ValueError(f"betas must be a 1-D tensor [T], got {betas!r:.60}")
        alphas_cumprod = torch.cumprod(1 - betas.detach().to(torch.float64), 0)
        T = betas.numel()

        def eps_model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            abar = alphas_cumprod.to(x_t.device)[torch.round(t * T).long() - 1]  # t / T -> step t -> row t - 1
            return self.eps(x_t, abar.sqrt(), (1 - abar).sqrt())

        return eps_model

    def _forward_quantity(self, x_t, a, s, what: str, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        x_t, x, a, s = self._prepare(x_t, a, s)
        return self._evaluate(x, a, s, what, mask).to(x_t.dtype)

    # -- classes ------------------------------------------------------------------------------

    def class_conditional(self, labels: Sequence[int]) -> "ClassConditionalMixture":
        """Group the components into classes: ``labels[k]`` is the class id (0..C-1) of component k."""
        return ClassConditionalMixture(self, labels)


class ClassConditionalMixture:
    r"""A mixture whose components are grouped into ``num_classes`` classes.

    Class ``c`` has density :math:`p(x \mid c) \propto \sum_{k:\,\mathrm{label}_k = c} w_k \mathcal N(\mu_k, \Sigma_k)`,
    so its exact denoiser is the full one with the responsibilities restricted to class ``c``'s
    components and renormalised. The class id ``num_classes`` (the *null class*) and ``y=None``
    mean unconditional: the full mixture. This is the exact reference for classifier-free guidance.
    """

    def __init__(self, mixture: GaussianMixture, labels: Sequence[int]):
        if not isinstance(mixture, GaussianMixture):
            raise TypeError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}")
        try:
            labels_t = torch.as_tensor(list(labels))
        except (TypeError, ValueError) as err:
            raise TypeError("labels must be a sequence of ints, one per component") from err
        if labels_t.dim() != 1 or labels_t.shape[0] != mixture.K:
            raise ValueError(f"labels must have one class id per component (K={mixture.K}), got shape "
                             f"{tuple(labels_t.shape)}")
        if labels_t.is_floating_point() or labels_t.dtype == torch.bool:
            raise TypeError(f"labels must be ints, got dtype {labels_t.dtype}")
        labels_t = labels_t.long()
        if (labels_t < 0).any():
            raise ValueError("labels must be class ids >= 0")
        num_classes = int(labels_t.max()) + 1
        present = torch.zeros(num_classes, dtype=torch.bool)
        present[labels_t] = True
        if not present.all():
            missing = torch.nonzero(~present).flatten().tolist()
            raise ValueError(f"labels must use every class id 0..{num_classes - 1}; missing {missing}")
        for c in range(num_classes):
            if mixture.weights[labels_t == c].sum() <= 0:
                raise ValueError(f"class {c} has zero total weight")
        self.base = mixture
        self.labels = labels_t
        self.num_classes = num_classes
        # class_of_component[c, k]: may component k explain class c? Row C (the null class) allows all.
        allowed = labels_t[None, :] == torch.arange(num_classes)[:, None]
        self._allowed = torch.cat([allowed, torch.ones(1, mixture.K, dtype=torch.bool)])  # [C + 1, K]
        self.class_weights = torch.stack([mixture.weights[labels_t == c].sum() for c in range(num_classes)])

    def __repr__(self) -> str:
        return f"ClassConditionalMixture(K={self.base.K}, D={self.base.D}, num_classes={self.num_classes})"

    def mixture(self, c: int) -> GaussianMixture:
        """The sub-mixture of class ``c`` (weights renormalised); ``c = num_classes`` gives the full mixture."""
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= self.num_classes:
            raise ValueError(f"c must be an int in 0..{self.num_classes}, got {c!r}")
        keep = self._allowed[c]
        return GaussianMixture(self.base.weights[keep], self.base.means[keep], self.base.covs[keep])

    def _mask(self, y, batch: int) -> Optional[torch.Tensor]:
        if y is None:
            return None
        if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.dtype == torch.bool:
            raise TypeError(f"y must be a LongTensor of class ids [B] or None, got {type(y).__name__}"
                            f"{'' if not isinstance(y, torch.Tensor) else ' of dtype ' + str(y.dtype)}")
        if y.shape != (batch,):
            raise ValueError(f"y must have shape [B] = [{batch}], got {tuple(y.shape)}")
        if ((y < 0) | (y > self.num_classes)).any():
            raise ValueError(f"y must hold class ids in 0..{self.num_classes} ({self.num_classes} = unconditional)")
        return self._allowed.to(y.device)[y.long()]

    def _batch(self, x_t) -> int:
        return _check_points(x_t, self.base.D, "x_t").shape[0]

    def denoise(self, x_t: torch.Tensor, a: Scalar, s: Scalar, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """E[x_0 | x_t, y] [B, D]; y [B] long (``num_classes`` or None = unconditional)."""
        return self.base._forward_quantity(x_t, a, s, "denoise", self._mask(y, self._batch(x_t)))

    def score(self, x_t: torch.Tensor, a: Scalar, s: Scalar, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """grad log p_t(x_t | y) [B, D]; y [B] long (``num_classes`` or None = unconditional)."""
        return self.base._forward_quantity(x_t, a, s, "score", self._mask(y, self._batch(x_t)))

    def posterior(self, x_t: torch.Tensor, a: Scalar, s: Scalar, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """p(k | x_t, y) [B, K]."""
        return self.base._forward_quantity(x_t, a, s, "posterior", self._mask(y, self._batch(x_t)))

    def sample(self, n: int, y: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None,
               dtype: Optional[torch.dtype] = None):
        """(x [n, D], y [n]): samples with their class ids; if ``y`` [n] is given, samples of those classes."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        _check_generator(generator)
        if y is None:
            x, comps = self.base.sample(n, generator=generator, return_labels=True, dtype=dtype)
            return x, self.labels[comps]
        mask = self._mask(y, n).to("cpu")
        probs = self.base.weights[None, :] * mask  # [n, K]: class-restricted component weights
        comps = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        x = self.base._sample_given_labels(comps, generator).to(dtype or torch.get_default_dtype())
        return x, y
