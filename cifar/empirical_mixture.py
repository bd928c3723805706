r"""The exact denoiser and score of a training set: a perfect model at 32x32 that needs no training.

Treat the training set as what it is to a model that has memorised it: a mixture of ``N``
equal-weight narrow Gaussians, one per image. Every quantity a diffusion model learns then has a
closed form, a softmax over training images, and this module evaluates it at image scale
(``D = 3 * 32 * 32 = 3072``) in chunks, on a CPU in seconds. Its samples are copies of training
images: it never hallucinates, so lesson 01 uses it as the exact control beside a learned U-Net;
lesson 03 runs its sampler grid on it (with classes, for guidance); lesson 02 gets an exact score.

Notation, fixed for this file
-----------------------------
Training images :math:`x^{(1)}, \dots, x^{(N)} \in \mathbb R^D`, in model space [-1, 1] (uint8
pixels ``u`` enter as ``u / 127.5 - 1``, as :func:`cifar.data.to_model_space` does). The data
distribution is the equal-weight mixture

    (1)  p_0(x_0) = (1/N) sum_i N(x_0; x^(i), sigma^2 I),      sigma = ``sigma_data`` >= 0

(``sigma = 0``: Dirac components, the empirical distribution itself). The forward process at one
noise level is

    (2)  x_t = a x_0 + s eps,   eps ~ N(0, I),   s > 0

(DDPM: a = sqrt(abar_t), s = sqrt(1 - abar_t); VP-SDE: a = exp(-B(t)/2), s^2 = 1 - a^2). Given the
component ``i``, x_t ~ N(a x^(i), v I) with

    (3)  v = a^2 sigma^2 + s^2.

Bayes' rule gives the posterior weight of image ``i`` (the factors common to all ``i`` cancel:
equal weights, equal variances, and |x_t|^2):

    (4)  r_i(x_t) = softmax_i( -|x_t - a x^(i)|^2 / (2 v) ) = softmax_i( (a <x_t, x^(i)> - a^2 |x^(i)|^2 / 2) / v ).

Inside component ``i``, (x_0, x_t) is jointly Gaussian, and conditioning gives

    (5)  E[x_0 | x_t, i] = x^(i) + (a sigma^2 / v) (x_t - a x^(i)) = (s^2 / v) x^(i) + (a sigma^2 / v) x_t.

With xbar(x_t) = sum_i r_i x^(i), the tower rule gives the exact denoiser,

    (6)  E[x_0 | x_t] = (s^2 / v) xbar + (a sigma^2 / v) x_t         (= xbar when sigma = 0),

and the score of p_t = sum_i (1/N) N(a x^(i), v I) is, equivalently by Tweedie's formula,

    (7)  grad log p_t(x_t) = (a xbar - x_t) / v = (a E[x_0 | x_t] - x_t) / s^2,

    (8)  E[eps | x_t] = -s grad log p_t(x_t) = s (x_t - a xbar) / v.

With classes, the class-``c`` density is (1) over the images of class ``c`` only, so its denoiser
and score are (4)-(8) with the softmax restricted to them; ``y = num_classes`` (the null class, as
in :mod:`cifar.unet`) or ``y = None`` means the whole set. This is the exact reference for
classifier-free guidance: eps(x, t, y) and eps(x, t, None).

Computation. The logits (4) are a matrix product, [B, D] x [D, chunk], and (6) needs only
xbar = (sum_i e^{l_i} x^(i)) / (sum_i e^{l_i}), so the training set is visited in chunks of
``chunk_size`` images with a running maximum, a running sum and a running weighted sum (online
softmax, one pass). Memory is O(B * chunk + chunk * D + B * D); nothing of size B * N * D or
B * N is ever built. The logits are formed from their differences to the running maximum *before*
dividing by v, so a tiny ``s`` gives exact zeros, never ``inf - inf``; v is kept >= the smallest
positive float. Everything runs in float64 by default (``dtype=torch.float32`` halves the time at
the cost of logit errors of about 1e-7 * |x|^2 / v) and is returned in the input's dtype.

    images, labels = load_dataset({"name": "shapes", "n": 5000})  # uint8 [N, 3, 32, 32], int64 [N]
    mix = EmpiricalMixture(images, labels)
    model = DDPMExact(mix, betas)            # eps_model(x_t, t) or eps_model(x_t, t, y), t = step / T
    x0 = some_sampler(model, ...)            # [B, 3, 32, 32]
    index, distance = mix.nearest_image(x0)  # distance ~ 0: copies of training images
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["EmpiricalMixture", "DDPMExact", "VPExact"]

Level = float | torch.Tensor


# ----------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------

def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def _check_float(name: str, value, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not (math.isfinite(value) and value >= low):
        raise ValueError(f"{name} must be a finite number >= {low}, got {value}")
    return float(value)


def _check_level(name: str, value: Level, batch: int, positive: bool) -> torch.Tensor:
    """``a`` or ``s``: a float or a tensor with 1 or B entries -> float64 [1, 1] or [B, 1] (CPU)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"{name} must be a float or a tensor [B], got {type(value).__name__}")
    out = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    if out.numel() not in (1, batch) or out.dim() > 2 or (out.dim() == 2 and out.shape[1] != 1):
        raise ValueError(f"{name} must be a float or a tensor of shape [B] or [B, 1] with B={batch}, "
                         f"got shape {tuple(out.shape)}")
    out = out.reshape(-1, 1)
    if not torch.isfinite(out).all():
        raise ValueError(f"{name} must be finite")
    if positive and not (out > 0).all():
        raise ValueError(f"{name} must be > 0 (the noise scale), got min {out.min().item():g}")
    return out


# ----------------------------------------------------------------------------------------------
# The mixture
# ----------------------------------------------------------------------------------------------

class EmpiricalMixture:
    """The training set as the mixture (1): exact denoiser, score and noise prediction, chunked.

    Args:
        images: the training set, [N, C, H, W] or [N, D]; uint8 pixels 0..255 (mapped to
            ``u / 127.5 - 1``) or a floating tensor already in model space [-1, 1]. Kept as given
            (uint8 stays uint8: 150 MB for CIFAR-10) and converted chunk by chunk.
        labels: optional class ids [N] (int), for the class-conditional versions.
        sigma_data: the std of each component (1); 0 (default) means Dirac components.
        num_classes: the number of classes (default ``labels.max() + 1``); ``num_classes`` is the
            null class (unconditional). Every class must have at least one image.
        chunk_size: training images per chunk; memory is O(B * chunk_size + chunk_size * D).
        dtype: the compute dtype, ``torch.float64`` (default) or ``torch.float32``.

    Attributes: ``N``, ``D``, ``shape`` (one image's shape), ``sigma_data``, ``labels`` [N] or None,
    ``num_classes`` (0 without labels), ``chunk_size``, ``dtype``, ``device`` (where it computes).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None, *, sigma_data: float = 0.0,
                 num_classes: int | None = None, chunk_size: int = 256, dtype: torch.dtype = torch.float64):
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor [N, C, H, W] or [N, D], got {type(images).__name__}")
        if images.dim() not in (2, 4) or images.shape[0] < 1 or images[0].numel() < 1:
            raise ValueError(f"images must have shape [N, C, H, W] or [N, D] with N >= 1, got {tuple(images.shape)}")
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise TypeError(f"images must be uint8 (0..255) or floating (model space [-1, 1]), got {images.dtype}")
        if images.is_floating_point():
            if not torch.isfinite(images).all():
                raise ValueError("images must be finite")
            lo, hi = images.min().item(), images.max().item()
            if lo < -1 - 1e-6 or hi > 1 + 1e-6:
                raise ValueError(f"floating images must be in model space [-1, 1], got values in [{lo:.4g}, {hi:.4g}] "
                                 "(pass uint8 pixels 0..255 to have them converted)")
        if labels is not None:
            if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
                raise TypeError(f"labels must be an integer tensor [N] or None, got "
                                f"{labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__}")
            if labels.shape != (images.shape[0],):
                raise ValueError(f"labels must have shape [N] = [{images.shape[0]}], got {tuple(labels.shape)}")
            if (labels < 0).any():
                raise ValueError("labels must be class ids >= 0")
        if num_classes is not None:
            _check_int("num_classes", num_classes, 1)
            if labels is None:
                raise ValueError("num_classes needs labels")
        self.sigma_data = _check_float("sigma_data", sigma_data, 0.0)
        self.chunk_size = _check_int("chunk_size", chunk_size, 1)
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float64 or torch.float32, got {dtype!r}")

        self.N, self.shape = images.shape[0], tuple(images.shape[1:])
        self.D = images[0].numel()
        self.dtype = dtype
        self._data = images.detach().reshape(self.N, self.D).clone()
        self.device = self._data.device
        self.labels = None if labels is None else labels.detach().long().to(self.device).clone()
        self.num_classes = 0
        if self.labels is not None:
            inferred = int(self.labels.max()) + 1
            self.num_classes = inferred if num_classes is None else num_classes
            if inferred > self.num_classes:
                raise ValueError(f"labels must be < num_classes={self.num_classes}, got max {inferred - 1}")
            counts = torch.bincount(self.labels, minlength=self.num_classes)
            if (counts == 0).any():
                raise ValueError(f"every class needs an image; classes without any: "
                                 f"{torch.nonzero(counts == 0).flatten().tolist()}")
        self._sq = torch.cat([(self._chunk(i, i + self.chunk_size) ** 2).sum(1)    # |x^(i)|^2 [N]
                              for i in range(0, self.N, self.chunk_size)])

    def __repr__(self) -> str:
        return (f"EmpiricalMixture(N={self.N}, shape={self.shape}, sigma_data={self.sigma_data}, "
                f"num_classes={self.num_classes}, chunk_size={self.chunk_size}, dtype={self.dtype})")

    def _chunk(self, start: int, stop: int) -> torch.Tensor:
        """Training images start..stop-1 in model space, [n, D] in the compute dtype."""
        block = self._data[start:stop].to(self.dtype)
        return block / 127.5 - 1 if self._data.dtype == torch.uint8 else block

    def images(self, index: torch.Tensor) -> torch.Tensor:
        """Training images by index [K] (long) -> [K, *shape] in model space, in the compute dtype."""
        if not isinstance(index, torch.Tensor) or index.is_floating_point() or index.dtype == torch.bool:
            raise TypeError("index must be an integer tensor [K]")
        block = self._data[index.to(self.device).long()].to(self.dtype)
        block = block / 127.5 - 1 if self._data.dtype == torch.uint8 else block
        return block.reshape(-1, *self.shape)

    # -- input checks shared by the public methods ----------------------------------------------

    def _flat(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """[B, *shape] or [B, D] -> [B, D] in the compute dtype on the mixture's device."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"{name} must be a floating torch.Tensor [B, *{self.shape}] or [B, {self.D}], "
                            f"got {x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
        if tuple(x.shape[1:]) not in (self.shape, (self.D,)) or x.dim() < 2:
            raise ValueError(f"{name} must have shape [B, *{self.shape}] or [B, {self.D}], got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} must be finite")
        return x.detach().reshape(x.shape[0], self.D).to(self.device, self.dtype)

    def _allowed(self, y, batch: int) -> torch.Tensor | None:
        """y [B] class ids (``num_classes`` = unconditional) or None -> y on the device, or None."""
        if y is None:
            return None
        if self.labels is None:
            raise ValueError("y was given but this mixture has no labels")
        if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.dtype == torch.bool:
            raise TypeError(f"y must be an integer tensor of class ids [B] or None, got "
                            f"{y.dtype if isinstance(y, torch.Tensor) else type(y).__name__}")
        if y.shape != (batch,):
            raise ValueError(f"y must have shape [B] = [{batch}], got {tuple(y.shape)}")
        if ((y < 0) | (y > self.num_classes)).any():
            raise ValueError(f"y must hold class ids in 0..{self.num_classes} ({self.num_classes} = unconditional)")
        return y.to(self.device).long()

    def _prepare(self, x_t, a, s, y):
        x = self._flat(x_t, "x_t")
        a_ = _check_level("a", a, x.shape[0], positive=False).to(self.device, self.dtype)
        s_ = _check_level("s", s, x.shape[0], positive=True).to(self.device, self.dtype)
        return x, a_, s_, self._allowed(y, x.shape[0])

    # -- the one pass over the training set -----------------------------------------------------

    def _pass(self, x: torch.Tensor, a: torch.Tensor, v: torch.Tensor, y: torch.Tensor | None,
              weighted_sum: bool = True):
        """Online softmax (4) over the training set in chunks.

        Args:
            x: [B, D] points; a, v: [1 or B, 1] (v > 0); y: [B] class ids or None.
            weighted_sum: also accumulate xbar (skipped for the nearest-image search).

        Returns:
            ``(xbar [B, D] or None, top [B] long, total [B])``: xbar = sum_i r_i x^(i), the index of the
            largest r_i, and sum_i exp((l_i - l_max) / v), so the largest r_i is 1 / total.
        """
        B = x.shape[0]
        m = torch.full((B,), -math.inf, dtype=self.dtype, device=self.device)   # running max of the raw logit
        total = torch.zeros(B, dtype=self.dtype, device=self.device)             # running sum of exp
        acc = torch.zeros(B, self.D, dtype=self.dtype, device=self.device) if weighted_sum else None
        top = torch.zeros(B, dtype=torch.long, device=self.device)
        restrict = None if y is None else (y < self.num_classes)[:, None]        # rows with a class
        vv = v.reshape(-1)
        for start in range(0, self.N, self.chunk_size):
            stop = min(start + self.chunk_size, self.N)
            X = self._chunk(start, stop)                                           # [c, D]
            raw = a * (x @ X.T) - 0.5 * a ** 2 * self._sq[start:stop][None, :]         # (4) times v   [B, c]
            if y is not None:
                other = (self.labels[start:stop][None, :] != y[:, None]) & restrict
                raw = raw.masked_fill(other, -math.inf)
            m_chunk, arg = raw.max(dim=1)
            new_m = torch.maximum(m, m_chunk)
            top = torch.where(m_chunk > m, arg + start, top)
            ref = torch.where(torch.isfinite(new_m), new_m, torch.zeros_like(new_m))  # all -inf so far: no shift
            decay = torch.exp((m - ref) / vv)                                          # rescale the old sums
            p = torch.exp((raw - ref[:, None]) / v)                                    # differences first, then / v
            total = total * decay + p.sum(1)
            if acc is not None:
                acc = acc * decay[:, None] + p @ X
            m = new_m
        xbar = None if acc is None else acc / total[:, None]
        return xbar, top, total

    def _variance(self, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        v = a ** 2 * self.sigma_data ** 2 + s ** 2                                     # (3)
        return v.clamp_min(torch.finfo(self.dtype).tiny)

    def _s_over_v(self, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """s / v = 1 / (s + a^2 sigma^2 / s): no underflow of s^2 for tiny s (then it is 1 / s)."""
        return 1.0 / (s + a ** 2 * self.sigma_data ** 2 / s)

    def _out(self, value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return value.reshape(like.shape).to(like.device, like.dtype)

    # -- the exact quantities -----------------------------------------------------------------

    def denoise(self, x_t: torch.Tensor, a: Level, s: Level, y: torch.Tensor | None = None) -> torch.Tensor:
        """The exact denoiser E[x_0 | x_t] (6) (class ``y`` if given).

        Args:
            x_t: [B, *shape] or [B, D] noisy points.
            a, s: the signal and noise scales of (2): floats or tensors [B]; s > 0.
            y: optional class ids [B] (``num_classes`` = unconditional).

        Returns:
            [B, ...] like ``x_t`` (its shape, dtype and device).
        """
        x, a_, s_, y_ = self._prepare(x_t, a, s, y)
        v = self._variance(a_, s_)
        xbar, _, _ = self._pass(x, a_, v, y_)
        if self.sigma_data == 0:
            return self._out(xbar, x_t)                                                   # (6), sigma = 0
        c = a_ * self.sigma_data ** 2 / v                                                 # a sigma^2 / v
        return self._out((1 - a_ * c) * xbar + c * x, x_t)                                # (6): s^2/v = 1 - a c

    def score(self, x_t: torch.Tensor, a: Level, s: Level, y: torch.Tensor | None = None) -> torch.Tensor:
        """The exact score grad log p_t(x_t) (7), [B, ...] like ``x_t``; arguments as :meth:`denoise`."""
        x, a_, s_, y_ = self._prepare(x_t, a, s, y)
        v = self._variance(a_, s_)
        xbar, _, _ = self._pass(x, a_, v, y_)
        return self._out((a_ * xbar - x) * self._s_over_v(a_, s_) / s_, x_t)              # (7) = -(8) / s

    def eps(self, x_t: torch.Tensor, a: Level, s: Level, y: torch.Tensor | None = None) -> torch.Tensor:
        """The optimal noise prediction E[eps | x_t] (8), [B, ...] like ``x_t``; arguments as :meth:`denoise`."""
        x, a_, s_, y_ = self._prepare(x_t, a, s, y)
        v = self._variance(a_, s_)
        xbar, _, _ = self._pass(x, a_, v, y_)
        return self._out((x - a_ * xbar) * self._s_over_v(a_, s_), x_t)                   # (8)

    def responsibility(self, x_t: torch.Tensor, a: Level, s: Level,
                       y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The training image the posterior (4) favours, and its weight.

        The argmax of (4) is the training image nearest to x_t / a. A weight near 1 means the denoiser
        has committed to one training image (late in sampling it always does: the exact model's samples
        are copies). Identical images share the weight: an image present k times tops out at 1 / k
        (Simple Shapes at 32x32 has such repeats), so test copies with :meth:`nearest_image`.

        Args:
            x_t, a, s, y: as :meth:`denoise`.

        Returns:
            ``(index, weight)``: [B] long, the argmax of r_i(x_t); [B] float64, max_i r_i(x_t) in (0, 1].
        """
        x, a_, s_, y_ = self._prepare(x_t, a, s, y)
        _, top, total = self._pass(x, a_, self._variance(a_, s_), y_, weighted_sum=False)
        return top.to(x_t.device), (1.0 / total).to(x_t.device, torch.float64)

    def nearest_image(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The nearest training image in Euclidean distance (within class ``y`` if given).

        Args:
            x: [B, *shape] or [B, D] points in model space (samples, for instance).
            y: optional class ids [B] (``num_classes`` = search all).

        Returns:
            ``(index, distance)``: [B] long, [B] float64 (the distance recomputed exactly from the difference).
        """
        flat = self._flat(x, "x")
        y_ = self._allowed(y, flat.shape[0])
        one = torch.ones(1, 1, dtype=self.dtype, device=self.device)
        _, top, _ = self._pass(flat, one, one, y_, weighted_sum=False)   # a = 1: argmax = argmin |x - x^(i)|
        nearest = self.images(top).reshape(-1, self.D).double()
        distance = (flat.double() - nearest).norm(dim=1)
        return top.to(x.device), distance.to(x.device)

    def sample(self, n: int, y: torch.Tensor | None = None, *,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact samples of (1): a uniformly drawn training image (of class ``y``) plus sigma_data noise.

        Args:
            n: number of samples.
            y: optional class ids [n] (``num_classes`` = any image).
            generator: optional CPU ``torch.Generator``.

        Returns:
            ``(x, index)``: [n, *shape] in model space (plus noise) in the compute dtype, [n] long indices.
        """
        _check_int("n", n, 0)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        y_ = self._allowed(y, n)
        if y_ is None:
            index = torch.randint(0, self.N, (n,), generator=generator)
        else:
            allowed = (self.labels.cpu()[None, :] == y_.cpu()[:, None]) | (y_.cpu() == self.num_classes)[:, None]
            index = torch.multinomial(allowed.double(), 1, generator=generator).squeeze(1) if n else \
                torch.zeros(0, dtype=torch.long)
        x = self.images(index).cpu()
        if self.sigma_data > 0:
            x = x + self.sigma_data * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return x, index


# ----------------------------------------------------------------------------------------------
# Drop-in models: the DDPM and the VP-SDE conventions
# ----------------------------------------------------------------------------------------------

def _check_mixture(mixture) -> None:
    if not isinstance(mixture, EmpiricalMixture):
        raise TypeError(f"mixture must be an EmpiricalMixture, got {type(mixture).__name__}")


def _check_time(t, batch: int) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
        raise TypeError(f"t must be a floating tensor [B], got {got}")
    if t.numel() not in (1, batch) or t.dim() > 1:
        raise ValueError(f"t must have shape [B] = [{batch}] (or one element), got {tuple(t.shape)}")
    return t.detach().reshape(-1).to("cpu", torch.float64)


class DDPMExact:
    """The exact eps-prediction of an :class:`EmpiricalMixture` in the DDPM convention.

    ``model(x_t, t)`` or ``model(x_t, t, y)`` with ``t`` = step / T in (0, 1] (a float tensor [B]) and
    steps 1..T, abar_t = cumprod(1 - betas)[t - 1]; a = sqrt(abar_t), s = sqrt(1 - abar_t) in (2).
    ``y`` None (or the null class ``num_classes``) is unconditional: eps(x, t, None) and
    eps(x, t, y) are the two terms of classifier-free guidance.

    Args:
        mixture: the training set.
        betas: [T] in (0, 1), beta_t for t = 1..T (e.g. ``linear_beta_schedule(1000, 1e-4, 0.02)``).
    """

    def __init__(self, mixture: EmpiricalMixture, betas: torch.Tensor):
        _check_mixture(mixture)
        if not isinstance(betas, torch.Tensor) or not betas.is_floating_point():
            raise TypeError("betas must be a floating tensor [T]")
        if betas.dim() != 1 or betas.numel() < 1 or not ((betas > 0) & (betas < 1)).all():
            raise ValueError(f"betas must be a non-empty 1-D tensor [T] with values in (0, 1), "
                             f"got shape {tuple(betas.shape)}")
        self.mixture, self.T = mixture, betas.numel()
        self.alphas_cumprod = torch.cumprod(1 - betas.detach().cpu().double(), 0)

    def __repr__(self) -> str:
        return f"DDPMExact({self.mixture!r}, T={self.T})"

    def levels(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, s) [B] float64 for t = step / T [B]; t must sit on the grid 1/T, 2/T, ..., 1."""
        t = _check_time(t, t.numel() if isinstance(t, torch.Tensor) else 1)
        step = torch.round(t * self.T)
        if (step < 1).any() or (step > self.T).any() or ((t * self.T - step).abs() > 1e-3).any():
            raise ValueError(f"t must hold step / T for integer steps in 1..T = 1..{self.T}")
        abar = self.alphas_cumprod[step.long() - 1]
        return abar.sqrt(), (1 - abar).sqrt()

    def _levels_for(self, x_t, t):
        batch = x_t.shape[0] if isinstance(x_t, torch.Tensor) and x_t.dim() else 1
        _check_time(t, batch)
        return self.levels(t)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """E[eps | x_t] (8): x_t [B, ...], t [B] = step / T, y [B] or None -> [B, ...] like x_t."""
        a, s = self._levels_for(x_t, t)
        return self.mixture.eps(x_t, a, s, y)

    def x0(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """E[x_0 | x_t] (6) in the same convention, [B, ...] like x_t."""
        a, s = self._levels_for(x_t, t)
        return self.mixture.denoise(x_t, a, s, y)


class VPExact:
    """The exact eps-prediction and score of an :class:`EmpiricalMixture` under a continuous-time process.

    By default the VP-SDE of Song et al. (beta(t) = beta_min + t (beta_max - beta_min) on [0, 1]):
    a(t) = exp(-B(t)/2), s(t) = sqrt(1 - exp(-B(t))), B(t) = beta_min t + (beta_max - beta_min) t^2 / 2.
    Any other process x_t = a(t) x_0 + s(t) eps enters as ``marginal(t) -> (a, s)``, for instance
    ``minimal.fpe_gap.VP(...).marginal`` or an OU process.

    ``model(x, t, y=None)`` is the eps-prediction, ``model.score(x, t, y=None)`` the score
    (``score_fn(x, t)`` of the continuous-time samplers), ``model.x0`` the denoiser; t is a float
    tensor [B] (or one element) with s(t) > 0.

    Args:
        mixture: the training set.
        beta_min, beta_max: the VP schedule (ignored when ``marginal`` is given).
        marginal: optional callable t [B] float64 -> (a [B], s [B]).
    """

    def __init__(self, mixture: EmpiricalMixture, beta_min: float = 0.1, beta_max: float = 20.0, *,
                 marginal: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None):
        _check_mixture(mixture)
        self.beta_min = _check_float("beta_min", beta_min, 0.0)
        self.beta_max = _check_float("beta_max", beta_max, self.beta_min)
        if marginal is not None and not callable(marginal):
            raise TypeError(f"marginal must be callable t -> (a, s), got {type(marginal).__name__}")
        self.mixture, self.marginal = mixture, marginal

    def __repr__(self) -> str:
        sched = "custom marginal" if self.marginal else f"beta_min={self.beta_min}, beta_max={self.beta_max}"
        return f"VPExact({self.mixture!r}, {sched})"

    def levels(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, s) float64 [B] at times t [B]."""
        t = _check_time(t, t.numel() if isinstance(t, torch.Tensor) else 1)
        if self.marginal is not None:
            a, s = self.marginal(t)
            return torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(s, dtype=torch.float64)
        B = self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t ** 2   # int_0^t beta
        return torch.exp(-0.5 * B), torch.sqrt(-torch.expm1(-B))

    def _levels_for(self, x, t):
        batch = x.shape[0] if isinstance(x, torch.Tensor) and x.dim() else 1
        _check_time(t, batch)
        return self.levels(t)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """E[eps | x_t] (8) at x [B, ...], t [B] -> [B, ...] like x."""
        a, s = self._levels_for(x, t)
        return self.mixture.eps(x, a, s, y)

    def score(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """grad log p_t(x) (7) at x [B, ...], t [B] -> [B, ...] like x."""
        a, s = self._levels_for(x, t)
        return self.mixture.score(x, a, s, y)

    def x0(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """E[x_0 | x_t] (6) at x [B, ...], t [B] -> [B, ...] like x."""
        a, s = self._levels_for(x, t)
        return self.mixture.denoise(x, a, s, y)
