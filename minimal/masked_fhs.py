r"""Masked diffusion: time-agnostic training, the first-hitting sampler, and the float32 categorical bug.

A single-file reading of Zheng, Chen, Mao, Liu, Zhu and Zhang, *Masked Diffusion Models are Secretly
Time-Agnostic Masked Models and Exploit Inaccurate Categorical Sampling* (ICLR 2025, arXiv 2409.02908).
It imports only torch and the standard library; copy it into your project as it is.

The claim
---------
A masked diffusion model needs no time: its loss is a masked-LM loss with a uniform number of masks,
and its sampler can be replaced by the first-hitting sampler (FHS), which unmasks one position per
network call at the exact event times of the continuous process. The discretised sampler of the
reference code draws a categorical over ``V + 1`` classes for every masked position at every step, and
draws it in float32: the uniforms' grid caps the noise, rare tokens stop winning against the mask, and
the sampling temperature falls as the number of steps grows. float64 races, or FHS, remove the bug.

Notation, fixed for this file
-----------------------------
A sequence ``x`` has ``L`` positions; each holds a token of the vocabulary ``{0, ..., V-1}`` or the mask
``m`` (``mask_id``, an id outside the vocabulary, usually ``V``). Each position is masked independently
with the linear schedule ``alpha_t = 1 - t``, ``t`` in [0, 1]: ``q(x_t^i | x_0^i) = (1 - t) delta_{x_0^i}
+ t delta_m``; everything is masked at ``t = 1``. The network ``mu^i(x_t)`` is a distribution over the
``V`` tokens for each position ``i``: ``probs_fn(x)[:, i]`` with ``x`` [B, L] -> [B, L, V] (``logits_fn``
for the loss). It takes no time, as in the paper: given ``x_t`` the optimal ``mu^i(x_t) = q(x_0^i |
unmasked part of x_t)`` does not depend on ``t``. Unmasked tokens are copied. Conditioning the number
of masks ``n ~ Bin(L, t)`` in the ELBO (weight ``1/t``), ``int_0^1 (1/t) C(L, n) t^n (1-t)^(L-n) dt = 1/n``:

    (1) ELBO = L * E_{n ~ U{1..L}} [ (1/n) sum_{i in M} -log mu^i(x_t)_{x_0^i} ],  |M| = n uniform positions

    (2) MDLM step t -> s < t, each masked position:  q~(v) = mu_v (t - s) for v in V,   q~(m) = s

    (3) FHS event times, n masked:  t_next = t * u^(1/n),  u ~ U(0, 1); the position is uniform among the masked

    (4) the race:  E_v = eps - log(u_v + eps),  u_v ~ U[0, 1),  eps = 1e-10;   sample = argmax_v p_v / E_v

    (5) float32, ratio r = mu_v (t - s)/s, grid delta = 2^-24:  P(v beats m) = delta / (exp(delta / r) - 1)

(1) is the any-order autoregressive objective: the schedule has disappeared. (2) is the posterior
``(alpha_s - alpha_t)/(1 - alpha_t) mu + (1 - alpha_s)/(1 - alpha_t) delta_m`` times ``t``, on the grid
``t_k = 1 - k/N``; when no position changed, ``mu`` is reused (caching), so at most ``min(N, L)`` network
calls, but a fresh ``V + 1``-way categorical per masked position at every step (the reference draws
all ``L`` positions; :func:`mdlm_sample` draws only the masked ones, the same law for half the work).
(3): each masked position's unmask time is i.i.d. with ``P(tau <= s | tau < t) = s/t``, and the next
event is the largest of ``n`` of them; exactly one position unmasks there, drawn from ``mu^i(x_t)``. So
FHS makes ``L`` network calls and ``L`` draws over ``V`` tokens and samples the ``N -> infinity`` limit of
(2) exactly: random-order autoregressive decoding with a masked model. (4) is equivalent to Gumbel-max.
A float32 uniform is a multiple of ``delta = 2^-24`` below ``1 - delta``, so ``E_v >= ~delta``: in one
step a token with ``r << delta`` (``mu_v << delta N t``) almost never beats the mask (5, for ``r << 1``;
exactly it would win with probability ``r / (1 + r)``), a cutoff on rare tokens that grows with ``N``.
float64 moves ``delta`` to ``2^-53``; FHS forms no ``(t - s)``-scaled masses at all.

Public API: :func:`sample_categorical` (4), :func:`masked_diffusion_loss` (1), :func:`mdlm_sample` (2),
:func:`first_hitting_times` and :func:`fhs_sample` (3), :func:`fp32_unmask_probability` and
:func:`mdlm_truncated_law` (5). ``python masked_fhs.py`` runs a demo (about 10 s on one CPU thread).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["sample_categorical", "masked_diffusion_loss", "mdlm_sample", "first_hitting_times", "fhs_sample",
           "fp32_unmask_probability", "mdlm_truncated_law"]

EPS = 1e-10  # the reference code's eps in (4)
ProbsFn = Callable[[torch.Tensor], torch.Tensor]
_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


# ----------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------
def _check(ok: bool, error: type[Exception], message: str) -> None:
    if not ok:
        raise error(message)


def _type(value) -> str:
    return str(value.dtype) if isinstance(value, torch.Tensor) else type(value).__name__


def _check_int(name: str, value, low: int) -> None:
    _check(isinstance(value, int) and not isinstance(value, bool), TypeError,
           f"{name} must be an int, got {_type(value)}")
    _check(value >= low, ValueError, f"{name} must be >= {low}, got {value}")


def _check_common(generator, dtype=torch.float64, trajectory=None) -> None:
    """The keyword arguments the public functions share."""
    _check(generator is None or isinstance(generator, torch.Generator), TypeError,
           f"generator must be a torch.Generator or None, got {_type(generator)}")
    _check(isinstance(dtype, torch.dtype) and dtype.is_floating_point, TypeError,
           f"dtype must be a floating torch.dtype such as torch.float64, got {dtype!r}")
    _check(trajectory is None or callable(getattr(trajectory, "append", None)), TypeError,
           f"trajectory must be a list (or a deque) or None, got {_type(trajectory)}")


def _check_shape(shape) -> None:
    _check(isinstance(shape, (tuple, list, torch.Size)) and len(shape) == 2, ValueError,
           f"shape must be (B, L), got {shape!r}")
    _check_int("B = shape[0]", shape[0], 1)
    _check_int("L = shape[1]", shape[1], 1)


def _check_probs(name: str, probs) -> None:
    """A floating tensor [..., K] of finite non-negative masses, some positive mass in every row."""
    _check(isinstance(probs, torch.Tensor) and probs.dtype.is_floating_point, TypeError,
           f"{name} must be a floating torch.Tensor [..., K], got {_type(probs)}")
    _check(probs.dim() >= 1 and probs.shape[-1] >= 1, ValueError,
           f"{name} must have shape [..., K] with K >= 1, got {tuple(probs.shape)}")
    _check(bool(torch.isfinite(probs).all() and (probs >= 0).all()), ValueError,
           f"{name} must be finite and non-negative, got NaN, inf or a negative value")
    _check(not probs.numel() or bool((probs.amax(dim=-1) > 0).all()), ValueError, f"{name} has a row that is all zero")


def _check_tokens(x0, mask_id: int) -> None:
    _check(isinstance(x0, torch.Tensor) and x0.dtype in _INT_DTYPES, TypeError,
           f"x0 must be an integer torch.Tensor [B, L], got {_type(x0)}")
    _check(x0.dim() == 2 and x0.numel() > 0, ValueError, f"x0 must be [B, L] with B, L >= 1, got {tuple(x0.shape)}")
    _check(bool((x0 >= 0).all() and (x0 < mask_id).all()), ValueError,
           f"x0 must hold tokens in 0..mask_id-1 = 0..{mask_id - 1}")


def _model_output(name: str, fn: ProbsFn, x: torch.Tensor, mask_id: int) -> torch.Tensor:
    """fn(x), checked: a floating tensor [B, L, V] with V <= mask_id, never broadcast."""
    out = fn(x)
    _check(isinstance(out, torch.Tensor) and out.dtype.is_floating_point, TypeError,
           f"{name} must return a floating torch.Tensor, got {_type(out)}")
    _check(out.dim() == 3 and out.shape[:2] == x.shape and 1 <= out.shape[2] <= mask_id, ValueError,
           f"{name} returned shape {tuple(out.shape)}, expected ({x.shape[0]}, {x.shape[1]}, V) "
           f"(the shape of x_t, then V <= mask_id = {mask_id} tokens)")
    return out


# ----------------------------------------------------------------------------------------------
# The exponential race
# ----------------------------------------------------------------------------------------------
def sample_categorical(probs: torch.Tensor, *, dtype: torch.dtype = torch.float64,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one index per row of ``probs`` by the exponential race (4), as the reference code does.

    The masses are first divided by their row maximum (in the wider of ``probs.dtype`` and ``dtype``), so
    the leader has mass 1 and ``p_v / E_v`` can neither overflow nor underflow: ``probs`` and ``c * probs``
    have the same law at any scale ``c > 0``, and give the same draws under one generator when ``c`` is a
    power of two (and ``c * probs`` stays in the normal range of its dtype). The reference code races the
    raw masses; that changes nothing else.

    Accuracy: write ``w_v = p_v / max_j p_j``, ``delta`` for the spacing of ``torch.rand``'s draws just
    below 1 in ``dtype`` (``2^-53`` float64, ``2^-24`` float32, ``2^-11`` float16, ``2^-8`` bfloat16) and
    ``eps`` for the dtype's unit roundoff (the same powers of two). The law differs from ``p / sum(p)`` only
    by (i) rounding ``w_v`` to ``dtype`` (relative error <= ``eps``; a ``w_v`` below the dtype's smallest
    subnormal, ~6e-8 in float16, becomes 0 and is never drawn); (ii) the grid: ``E_v >= ~delta``, so a class
    at ratio ``w_v`` beats a rival of mass 1 with probability ``delta / (exp(delta / w_v) - 1) / (1 + w_v)``
    instead of ``w_v / (1 + w_v)`` (5), a relative shortfall of about ``delta / (2 w_v)`` for
    ``w_v >> delta`` and a cut-off for ``w_v <~ delta``; (iii) rounding ``w_v / E_v`` (relative ``eps``),
    which flips a comparison only between ratios within ``2 eps`` of each other. In float64 that is exact
    to ~1e-16 for every ``w_v`` above ~1e-15; in float32 classes with ``w_v <~ 2^-24 ~ 6e-8`` are
    suppressed: the bug.

    Args:
        probs: [..., K] non-negative, finite, not necessarily normalised; no row may be all zero.
        dtype: precision of the race. ``torch.float32`` reproduces the bug (uniforms on a ``2^-24`` grid
            cap the noise); ``torch.float64`` (default) is the fix.
        generator: optional ``torch.Generator`` on ``probs``' device.

    Returns:
        [...] int64 indices in ``0..K-1``; index ``k`` is drawn with probability ``probs[..., k] / sum``
        up to the bound above. An empty batch ([0, K]) gives an empty result.
    """
    _check_probs("probs", probs)
    _check_common(generator, dtype)
    return _race(probs, dtype, generator)


def _race(probs: torch.Tensor, dtype: torch.dtype, generator: torch.Generator | None) -> torch.Tensor:
    """(4) without the input checks (the samplers check each network output once, not every step)."""
    w = probs.to(torch.promote_types(probs.dtype, dtype))
    p = (w / w.amax(dim=-1, keepdim=True)).to(dtype)  # the leader has mass 1: no overflow, no underflow
    u = torch.rand(p.shape, dtype=dtype, device=p.device, generator=generator)
    race = EPS - torch.log(u + EPS)  # (4): E ~ Exp(1); in float32 u <= 1 - 2^-24 so E >= ~2^-24
    return (p / race).argmax(dim=-1)  # (4): the smallest E_v / p_v wins, P(v) = p_v / sum(p)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def masked_diffusion_loss(logits_fn: ProbsFn, x0: torch.Tensor, mask_id: int, *, form: str = "elbo",
                          generator: torch.Generator | None = None, reduction: str = "mean") -> torch.Tensor:
    """The negative ELBO of a masked diffusion model per token, in one of its two equal forms (1).

    Args:
        logits_fn: tokens [B, L] (``mask_id`` at masked positions) -> logits [B, L, V] over the vocabulary.
            It gets no time: the optimal denoiser does not need one.
        x0: [B, L] integer clean tokens in ``0..V-1``, ``B, L >= 1``.
        mask_id: the mask token's id, outside the vocabulary (``>= V``).
        form: ``"elbo"``: ``t ~ U(0, 1]``, each position masked with probability ``t``, weight ``1/t``;
            ``"masked_lm"``: ``n ~ U{1..L}`` masks at uniformly random positions, weight ``L/n`` (1). Both
            have the same expectation; ``"masked_lm"`` has a much smaller variance.
        generator: optional ``torch.Generator`` on ``x0``'s device for the masking noise.
        reduction: ``"mean"`` (the batch mean) or ``"none"`` (one estimate per sequence).

    Returns:
        The estimate of ``-ELBO / L`` in nats per token: a scalar, or [B] with ``reduction="none"``.
    """
    _check(callable(logits_fn), TypeError, f"logits_fn must be callable, got {_type(logits_fn)}")
    _check_int("mask_id", mask_id, 1)
    _check_tokens(x0, mask_id)
    _check(form in ("elbo", "masked_lm"), ValueError, f"form must be 'elbo' or 'masked_lm', got {form!r}")
    _check(reduction in ("mean", "none"), ValueError, f"reduction must be 'mean' or 'none', got {reduction!r}")
    _check_common(generator)
    B, L = x0.shape
    x0 = x0.long()
    scores = torch.rand(B, L, device=x0.device, generator=generator)  # position i is masked iff its score is low
    if form == "elbo":
        t = 1.0 - torch.rand(B, 1, device=x0.device, dtype=torch.float64, generator=generator)  # t in (0, 1]
        masked = scores < t  # each position masked with probability t
        weight = 1.0 / t  # the ELBO weight -alpha'_t / (1 - alpha_t) = 1/t
    else:
        n = torch.randint(1, L + 1, (B, 1), device=x0.device, generator=generator)  # (1): n ~ U{1..L}
        masked = scores.argsort(dim=1).argsort(dim=1) < n  # the n lowest of a random permutation
        weight = L / n.double()  # (1): L * (1/n)
    x_t = torch.where(masked, torch.full_like(x0, mask_id), x0)
    logits = _model_output("logits_fn", logits_fn, x_t, mask_id)
    ce = -torch.log_softmax(logits.float(), dim=-1).gather(-1, x0.unsqueeze(-1)).squeeze(-1)  # [B, L]
    per_seq = (ce * masked).sum(dim=1) * weight.squeeze(1).to(ce.dtype) / L  # nats per token
    return per_seq.mean() if reduction == "mean" else per_seq


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------
def _device(generator: torch.Generator | None, device) -> torch.device:
    """``device`` if given, else the generator's device, else the CPU."""
    return torch.device(device if device is not None else generator.device if generator is not None else "cpu")


def _probs(probs_fn: ProbsFn, x: torch.Tensor, mask_id: int) -> torch.Tensor:
    probs = _model_output("probs_fn", probs_fn, x, mask_id)
    _check_probs("probs_fn's output", probs)
    return probs


@torch.no_grad()
def mdlm_sample(probs_fn: ProbsFn, shape: tuple[int, int], mask_id: int, num_steps: int, *,
                dtype: torch.dtype = torch.float64, generator: torch.Generator | None = None,
                device: torch.device | str | None = None, trajectory: list | None = None) -> torch.Tensor:
    """Sample with the discretised reverse process (2) on the grid ``t_k = 1 - k/N``, as MDLM's ``ddpm_cache``.

    Args:
        probs_fn: tokens [B, L] (``mask_id`` at masked positions) -> probabilities [B, L, V].
        shape: ``(B, L)``.
        mask_id: the mask token's id, outside the vocabulary (``>= V``).
        num_steps: ``N >= 1``; the last step (to ``s = 0``) unmasks every remaining position.
        dtype: precision of the race (4). ``torch.float32`` is the reference code's bug.
        generator: optional ``torch.Generator``; its device is the sampling device unless ``device`` is given.
        device: where the tokens live (defaults to the generator's device, else the CPU).
        trajectory: if a list, receives the tokens [B, L] after the draws of each network call (the step
            at which they first change ``x``), so the number of calls is ``len(trajectory)``; a
            ``collections.deque(maxlen=k)`` keeps only the last k.

    Returns:
        [B, L] int64 tokens in ``0..V-1``.
    """
    _check(callable(probs_fn), TypeError, f"probs_fn must be callable, got {_type(probs_fn)}")
    _check_shape(shape)
    _check_int("mask_id", mask_id, 1)
    _check_int("num_steps", num_steps, 1)
    _check_common(generator, dtype, trajectory)
    x = torch.full(tuple(shape), mask_id, dtype=torch.long, device=_device(generator, device))  # all masked
    grid = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64).tolist()
    mu = None
    for t, s in zip(grid[:-1], grid[1:]):
        masked = x == mask_id  # [B, L]
        if not masked.any():
            break
        if mu is None:  # caching: a network call only when x changed since the last one
            mu = _probs(probs_fn, x, mask_id).to(dtype)
        mu_masked = mu[masked]  # [M, V]: unmasked tokens are copied, only masked positions are drawn
        q = torch.cat([mu_masked * (t - s), torch.full_like(mu_masked[:, :1], s)], dim=-1)  # (2): [M, V + 1]
        draw = _race(q, dtype, generator)  # (4), [M]: a fresh categorical every step, cached mu or not
        stay = draw == mu.shape[-1]  # class V is "stay masked"
        if not stay.all():
            x = x.clone()
            x[masked] = torch.where(stay, mask_id, draw)
            mu = None  # x changed: the next step needs a fresh network call
            if trajectory is not None:
                trajectory.append(x)
    return x


def first_hitting_times(shape: tuple[int, int], *, generator: torch.Generator | None = None,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """The unmasking event times of the continuous reverse process (3), for ``L`` positions from ``t = 1``.

    The ``k``-th time is the ``(L - k + 1)``-th smallest of ``L`` uniforms (a Beta(L - k + 1, k) law).
    :func:`fhs_sample` does not need them: its network takes no time.

    Args:
        shape: ``(B, L)``.
        generator: optional ``torch.Generator``; its device is used unless ``device`` is given.
        device: where the times live (defaults to the generator's device, else the CPU).

    Returns:
        [B, L] float64 times in (0, 1), decreasing along each row.
    """
    _check_shape(shape)
    _check_common(generator)
    dev = _device(generator, device)
    n = torch.arange(shape[1], 0, -1, dtype=torch.float64, device=dev)  # masked positions before each event
    u = torch.rand(tuple(shape), dtype=torch.float64, device=dev, generator=generator)
    return torch.cumprod(u ** (1.0 / n), dim=1)  # (3): t_k = t_{k-1} u^(1/n), t_0 = 1


@torch.no_grad()
def fhs_sample(probs_fn: ProbsFn, shape: tuple[int, int], mask_id: int, *, dtype: torch.dtype = torch.float64,
               generator: torch.Generator | None = None, device: torch.device | str | None = None,
               trajectory: list | None = None) -> torch.Tensor:
    """Sample with the first-hitting sampler (3): one unmasking event per network call, ``L`` calls.

    Args:
        probs_fn: tokens [B, L] (``mask_id`` at masked positions) -> probabilities [B, L, V].
        shape: ``(B, L)``.
        mask_id: the mask token's id, outside the vocabulary (``>= V``).
        dtype: precision of the token draw (float64 by default; float32 is nearly harmless here).
        generator: optional ``torch.Generator``; its device is the sampling device unless ``device`` is given.
        device: where the tokens live (defaults to the generator's device, else the CPU).
        trajectory: if a list, receives the tokens [B, L] after each network call (``L`` records); a
            ``collections.deque(maxlen=k)`` keeps only the last k.

    Returns:
        [B, L] int64 tokens in ``0..V-1``.
    """
    _check(callable(probs_fn), TypeError, f"probs_fn must be callable, got {_type(probs_fn)}")
    _check_shape(shape)
    _check_int("mask_id", mask_id, 1)
    _check_common(generator, dtype, trajectory)
    x = torch.full(tuple(shape), mask_id, dtype=torch.long, device=_device(generator, device))  # all masked
    rows = torch.arange(x.shape[0], device=x.device)
    for _ in range(x.shape[1]):
        pos = _race((x == mask_id).double(), torch.float64, generator)  # (3): uniform among the masked
        mu = _probs(probs_fn, x, mask_id)[rows, pos]  # [B, V]: only the chosen position is drawn
        x = x.clone()
        x[rows, pos] = _race(mu, dtype, generator)  # (4)
        if trajectory is not None:
            trajectory.append(x)
    return x


# ----------------------------------------------------------------------------------------------
# The float32 effect in closed form
# ----------------------------------------------------------------------------------------------
def _check_delta(delta) -> None:
    _check(isinstance(delta, (int, float)) and not isinstance(delta, bool) and 0 < delta < 1, ValueError,
           f"delta must be a float in (0, 1), got {delta!r}")


def fp32_unmask_probability(r: float | torch.Tensor, delta: float = 2.0 ** -24
                            ) -> tuple[float, float] | tuple[torch.Tensor, torch.Tensor]:
    """Probability that a token beats the mask in one race (5), truncated by the grid vs exact.

    Args:
        r: token-to-mask mass ratio ``mu_v (t - s)/s > 0``: a float or a tensor of any shape.
        delta: the spacing of the uniforms; ``2^-24`` for float32, ``2^-53`` for float64.

    Returns:
        ``(p_truncated, p_exact)``, floats or tensors like ``r``: ``p_exact = r / (1 + r)`` and
        ``p_truncated = delta / (exp(delta / r) - 1) / (1 + r)``, which is (5) for ``r << 1`` and
        ``p_exact - delta / (2 (1 + r))`` for ``r >> delta``. Against the race computed in float32 on the
        grid itself it is within 1% for every ``r``.
    """
    is_tensor = isinstance(r, torch.Tensor)
    _check(is_tensor or isinstance(r, (int, float)) and not isinstance(r, bool), TypeError,
           f"r must be a float or a torch.Tensor, got {_type(r)}")
    _check_delta(delta)
    rt = r.to(torch.float64) if is_tensor else torch.tensor(float(r), dtype=torch.float64)
    _check(bool((rt > 0).all()), ValueError, "r must be positive (a token-to-mask mass ratio)")
    p_exact = rt / (1.0 + rt)
    kept = delta / torch.expm1(delta / rt)  # (5): sum_k delta exp(-k delta / r), ~ r - delta/2 for r >> delta
    p_trunc = kept / (1.0 + rt)  # the grid keeps `kept` of the token's ratio r
    return (p_trunc, p_exact) if is_tensor else (float(p_trunc), float(p_exact))


def mdlm_truncated_law(mu: torch.Tensor, num_steps: int, *, delta: float = 2.0 ** -24) -> torch.Tensor:
    """The law of one position's token under :func:`mdlm_sample` with races on a ``delta`` grid, in closed form.

    For a network whose ``mu`` is the same at every step (an oracle): the position is followed through the
    ``N`` steps of (2), and in each step every token's ratio ``r_v = mu_v (t - s)/s`` is cut to the part the
    grid keeps, ``delta / (exp(delta / r_v) - 1)`` (5); the last step (``s = 0``) draws ``mu`` itself.

    Args:
        mu: [V] non-negative masses (normalised here).
        num_steps: ``N >= 1``.
        delta: the spacing of the uniforms; ``2^-24`` for float32 races.

    Returns:
        [V] float64, the probability of each token (it sums to 1).
    """
    _check_probs("mu", mu)
    _check(mu.dim() == 1, ValueError, f"mu must have shape [V], got {tuple(mu.shape)}")
    _check_int("num_steps", num_steps, 1)
    _check_delta(delta)
    mu = mu.double() / mu.double().sum()
    drawn, surviving = torch.zeros_like(mu), 1.0
    grid = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64).tolist()
    for t, s in zip(grid[:-2], grid[1:-1]):  # every step but the last
        kept = delta / torch.expm1(delta / (mu * (t - s) / s))  # (5): the part of each ratio the grid keeps
        step = kept / (1 + kept.sum())  # P(token v wins this step), (2)
        drawn, surviving = drawn + surviving * step, surviving * (1 - step.sum().item())
    return drawn + surviving * mu  # the last step draws mu


# ----------------------------------------------------------------------------------------------
# Demo
# ----------------------------------------------------------------------------------------------
def _demo() -> None:
    """An oracle network, MDLM with float16 / float32 / float64 races and FHS, against the closed form (5)."""
    import time

    torch.set_num_threads(1)
    torch.manual_seed(0)
    # Token 0 has probability 1/2, K rare tokens share the other 1/2. In one MDLM step a rare token faces the
    # mask at r ~ 1/(2 K N t): below the float32 grid 2^-24 only once N K t > 2^23, far too slow for a demo.
    # float16 races have the same mechanism on a 2^-11 grid: the cutoff shows at N K ~ 2^12 already.
    K, N, B, L = 64, 200, 200, 8
    mu = torch.full((K + 1,), 0.5 / K, dtype=torch.float64)
    mu[0] = 0.5

    def oracle(x: torch.Tensor) -> torch.Tensor:  # [B, L] -> [B, L, V]
        return mu.expand(x.shape[0], x.shape[1], K + 1)

    runs = [(f"MDLM N={N}, {name}", dtype, delta) for name, dtype, delta in
            (("float16", torch.float16, 2.0 ** -11), ("float32", torch.float32, 2.0 ** -24),
             ("float64", torch.float64, 2.0 ** -53))] + [("FHS, float64", None, None)]
    print(f"oracle: token 0 has probability 1/2, {K} rare tokens share 1/2; {B * L} tokens per run")
    print(f"{'sampler':<22}{'rare share':>11}{'+-':>6}{'closed form (5)':>17}{'NFE':>6}{'seconds':>9}")
    for name, dtype, delta in runs:
        start, calls = time.perf_counter(), []
        if dtype is None:
            tokens, predicted = fhs_sample(oracle, (B, L), K + 1, generator=torch.Generator().manual_seed(0),
                                           trajectory=calls), 0.5
        else:
            tokens = mdlm_sample(oracle, (B, L), K + 1, N, dtype=dtype, generator=torch.Generator().manual_seed(0),
                                 trajectory=calls)
            predicted = 1 - mdlm_truncated_law(mu, N, delta=delta)[0].item()
        share = (tokens > 0).double().mean().item()
        print(f"{name:<22}{share:>11.3f}{math.sqrt(0.25 / tokens.numel()):>6.3f}{predicted:>17.3f}{len(calls):>6}"
              f"{time.perf_counter() - start:>9.2f}")
    print("one race of a token against the mask at ratio r, float32 (5): P_truncated / P_exact")
    for r in (2.0 ** -20, 2.0 ** -24, 2.0 ** -26, 2.0 ** -28):
        p32, p = fp32_unmask_probability(r)
        print(f"  r = 2^{math.log2(r):.0f}: {p32 / p:.3f}")


if __name__ == "__main__":
    _demo()
