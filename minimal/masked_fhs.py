r"""Masked diffusion: time-agnostic training, the first-hitting sampler, and the float32 categorical bug.

Zheng, Chen, Mao, Liu, Zhu, Zhang, *Masked Diffusion Models are Secretly Time-Agnostic Masked Models
and Exploit Inaccurate Categorical Sampling* (ICLR 2025, arXiv 2409.02908).

One file, torch only. Copy it into your project; ``python masked_fhs.py`` runs a demo (< 30 s on a CPU)
that shows the bug and both fixes.

Notation (fixed for the whole file)
-----------------------------------
* A sequence ``x`` has ``L`` positions; each holds a token of the vocabulary ``{0, ..., V-1}`` or the
  mask token ``m`` (``mask_id``, an id outside the vocabulary, usually ``V``).
* Forward process, each position independently, linear schedule ``alpha_t = 1 - t`` for ``t`` in [0, 1]:

      q(x_t^i | x_0^i) = alpha_t * delta_{x_0^i} + (1 - alpha_t) * delta_m.

  At ``t = 1`` everything is masked, at ``t = 0`` nothing is.
* The network ``mu^i(x_t)`` (here: ``probs_fn(x_t)[:, i]``) is a distribution over the ``V`` real tokens
  for each position ``i``; it is only used at masked positions (unmasked tokens are copied).

1. Training has no time in it
-----------------------------
The continuous-time ELBO with ``alpha_t = 1 - t`` weighs the masked cross-entropies by ``1/t``:

      -log p(x_0) <= E_{t ~ U(0,1)} E_{x_t ~ q(.|x_0)} [ (1/t) * sum_{i : x_t^i = m} -log mu^i(x_t)_{x_0^i} ].

The optimal ``mu^i(x_t)`` is ``q(x_0^i | unmasked part of x_t)``: given ``x_t`` it does not depend on
``t``, so the network needs no time input. Condition on the number of masks ``n ~ Bin(L, t)``:

      int_0^1 (1/t) * C(L, n) t^n (1-t)^(L-n) dt = C(L, n) * B(n, L-n+1) = 1/n,

so the ELBO equals a masked-LM loss with a uniform number of masks and weight ``1/n``:

      ELBO = sum_{n=1}^{L} (1/n) E_{|M| = n} [ sum_{i in M} CE_i ]
           = L * E_{n ~ U{1..L}} [ (1/n) sum_{i in M} CE_i ],                         (eq. 1)

with ``M`` a uniformly random set of ``n`` masked positions. This is the any-order autoregressive
objective; the schedule ``alpha_t`` has disappeared. :func:`masked_diffusion_loss` computes both forms.

2. The discretised sampler (MDLM, with caching)
-----------------------------------------------
On the grid ``1 = t_0 > t_1 > ... > t_N = 0`` one step from ``t`` to ``s < t`` keeps unmasked tokens and
draws each masked position from an unnormalised categorical over ``V + 1`` classes:

      q~(v) = mu_v * (t - s)   for v in V,       q~(m) = s,                              (eq. 2)

(the posterior ``(alpha_s - alpha_t)/(1 - alpha_t) mu + (1 - alpha_s)/(1 - alpha_t) delta_m`` times
``t``). If no position changed, ``mu`` is reused (caching), so the number of network calls (NFE) is at
most ``min(N, L)``; but a categorical over ``V + 1`` classes is drawn for every masked position at
*every* step (the reference code even draws all ``L`` positions; :func:`mdlm_sample` draws only the
masked ones, which gives the same samples in distribution for about half the work).

3. The first-hitting sampler (FHS)
----------------------------------
Each masked position's unmask time ``tau_i`` is i.i.d. given it is below the current time ``t``:
``P(tau_i <= s | tau_i < t) = (1 - alpha_s)/(1 - alpha_t) = s/t``. With ``n`` positions masked, the next
unmasking in reverse time is the largest of ``n`` such times:

      P(t_next <= s) = (s/t)^n   =>   t_next = t * u^(1/n),   u ~ U(0, 1).              (eq. 3)

At ``t_next`` exactly one position unmasks; every masked position is equally likely to be it, and its
token is drawn from ``mu^i(x_t)``. So FHS makes exactly ``L`` network calls and ``L`` categorical draws
over ``V`` tokens, and samples the N -> infinity limit of section 2 exactly. Since ``mu`` ignores the
time, FHS is random-order autoregressive decoding with a masked model.

4. The float32 bug
------------------
The reference samplers draw a categorical with an exponential race (equivalent to Gumbel-max):

      E_v = eps - log(u_v + eps),  u_v ~ U[0, 1),  eps = 1e-10,    sample = argmax_v p_v / E_v.   (eq. 4)

A float32 uniform is a multiple of ``delta = 2^-24`` and at most ``1 - delta``, so ``E_v >= ~delta``
(equivalently the Gumbel noise ``-log E`` is capped near ``16.6``). In one MDLM step a token ``v``
competes with the mask at ratio ``r_v = mu_v (t - s)/s``; exactly it wins with probability
``r_v/(1 + r_v)``, but with ``E_v`` on the grid ``k * delta`` (each ``k`` with probability ``delta``):

      P_fp32(v beats m) = E_{E_m}[ delta * floor(r_v E_m / delta) ] = delta / (exp(delta / r_v) - 1)   (eq. 5)

for ``r_v << 1``. Tokens with ``r_v << delta`` (that is ``mu_v << delta * N * t`` on a uniform grid)
essentially never win: a soft cutoff on rare tokens that grows linearly with the number of steps ``N``,
which lowers the sampling temperature. Fixes: draw the race in float64 (``delta = 2^-53``), or use FHS,
whose categorical is over ``mu`` alone with no tiny ``(t - s)`` factors. :func:`fp32_unmask_probability`
evaluates eq. 5.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

EPS = 1e-10  # the reference code's eps in eq. 4

__all__ = [
    "sample_categorical",
    "masked_diffusion_loss",
    "mdlm_sample",
    "fhs_sample",
    "fp32_unmask_probability",
]


# ------------------------------------------------------------------------------------------------
# eq. 4: the exponential race
# ------------------------------------------------------------------------------------------------
def _check_dtype(dtype, name="dtype"):
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating torch.dtype such as torch.float64, got {dtype!r}")


def _check_generator(generator):
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def _check_probs(probs, name="probs"):
    if not isinstance(probs, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [..., K], got {type(probs).__name__}")
    if not probs.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {probs.dtype}")
    if probs.dim() < 1 or probs.shape[-1] < 1:
        raise ValueError(f"{name} must have shape [..., K] with K >= 1, got {tuple(probs.shape)}")
    if torch.isnan(probs).any():
        raise ValueError(f"{name} must not contain NaN")
    if torch.isinf(probs).any():
        raise ValueError(f"{name} must be finite, got an infinite value")
    if (probs < 0).any():
        raise ValueError(f"{name} must be non-negative, got a minimum of {probs.min().item():.3g}")
    if probs.numel() > 0 and not (probs.amax(dim=-1) > 0).all():
        raise ValueError(f"{name} has a row that is all zero; each row needs some positive mass")


def sample_categorical(probs: torch.Tensor, *, dtype: torch.dtype = torch.float64,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one index per row of ``probs`` by the exponential race of eq. 4, as the reference code does.

    The masses are first divided by their row maximum (in the wider of ``probs.dtype`` and ``dtype``), so
    the leader has mass 1 and ``p_v / E_v`` can neither overflow nor underflow: ``probs`` and ``c * probs``
    have the same law at any scale ``c > 0``, and give the same draws under one generator when ``c`` is a
    power of two. The reference code races the raw masses; that changes nothing else.

    Accuracy: write ``w_v = p_v / max_j p_j``, ``delta`` for the spacing of ``torch.rand``'s draws just
    below 1 in ``dtype`` (``2^-53`` float64, ``2^-24`` float32, ``2^-11`` float16, ``2^-8`` bfloat16) and
    ``eps`` for the dtype's unit roundoff (the same powers of two). The law differs from ``p / sum(p)`` only
    by (i) rounding ``w_v`` to ``dtype`` (relative error <= ``eps``; a ``w_v`` below the dtype's smallest
    subnormal, ~6e-8 in float16, becomes 0 and is never drawn); (ii) the grid: ``E_v >= ~delta``, so a class
    at ratio ``w_v`` beats a rival of mass 1 with probability ``delta / (exp(delta / w_v) - 1) / (1 + w_v)``
    instead of ``w_v / (1 + w_v)`` (eq. 5), a relative shortfall of about ``delta / (2 w_v)`` for
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
    _check_probs(probs)
    _check_dtype(dtype)
    _check_generator(generator)
    return _race(probs, dtype, generator)


def _race(probs, dtype, generator):
    """eq. 4 without the input checks (the samplers check each network output once, not every step)."""
    w = probs.to(torch.promote_types(probs.dtype, dtype))
    p = (w / w.amax(dim=-1, keepdim=True)).to(dtype)  # the leader has mass 1: no overflow, no underflow
    u = torch.rand(p.shape, dtype=dtype, device=p.device, generator=generator)
    race = EPS - torch.log(u + EPS)  # E ~ Exp(1); in float32 u <= 1 - 2^-24 so E >= ~2^-24
    return (p / race).argmax(dim=-1)  # the smallest E_v / p_v wins: P(v) = p_v / sum(p)


# ------------------------------------------------------------------------------------------------
# section 1: the two forms of the loss
# ------------------------------------------------------------------------------------------------
def _check_tokens(x0, mask_id):
    if not isinstance(x0, torch.Tensor) or x0.dtype not in (torch.int64, torch.int32, torch.int16,
                                                             torch.int8, torch.uint8):
        raise TypeError(f"x0 must be an integer torch.Tensor of shape [B, L], got "
                        f"{type(x0).__name__ if not isinstance(x0, torch.Tensor) else x0.dtype}")
    if x0.dim() != 2 or x0.shape[0] < 1 or x0.shape[1] < 1:
        raise ValueError(f"x0 must have shape [B, L] with B, L >= 1, got {tuple(x0.shape)}")
    if x0.numel() and (x0.min() < 0 or x0.max() >= mask_id):
        raise ValueError(f"x0 must hold vocabulary tokens in 0..mask_id-1 = 0..{mask_id - 1}, "
                         f"got values in [{x0.min().item()}, {x0.max().item()}]")


def _check_mask_id(mask_id):
    if isinstance(mask_id, bool) or not isinstance(mask_id, int):
        raise TypeError(f"mask_id must be an int (an id outside the vocabulary), got {type(mask_id).__name__}")
    if mask_id < 1:
        raise ValueError(f"mask_id must be >= 1 (the vocabulary is 0..V-1 and mask_id >= V), got {mask_id}")


def _check_network_output(out, batch, length, mask_id, name):
    if not isinstance(out, torch.Tensor) or not out.dtype.is_floating_point:
        raise ValueError(f"{name} must return a floating tensor of shape [B, L, V] = [{batch}, {length}, V], "
                         f"got {type(out).__name__ if not isinstance(out, torch.Tensor) else out.dtype}")
    if out.dim() != 3 or out.shape[0] != batch or out.shape[1] != length or out.shape[2] < 1:
        raise ValueError(f"{name} must return shape [B, L, V] = [{batch}, {length}, V], got {tuple(out.shape)}")
    if out.shape[2] > mask_id:
        raise ValueError(f"mask_id must lie outside the vocabulary: {name} returned V = {out.shape[2]} "
                         f"tokens, so mask_id must be >= {out.shape[2]}, got {mask_id}")


def masked_diffusion_loss(logits_fn: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, mask_id: int,
                          *, form: str = "elbo", generator: torch.Generator | None = None,
                          reduction: str = "mean") -> torch.Tensor:
    """The negative ELBO of a masked diffusion model, per token, in one of its two equal forms (eq. 1).

    Args:
        logits_fn: maps tokens [B, L] (with ``mask_id`` at masked positions) to logits [B, L, V] over the
            real vocabulary. It gets no time: the optimal denoiser does not need one.
        x0: [B, L] clean tokens in ``0..V-1``.
        mask_id: the mask token's id, outside the vocabulary (``>= V``).
        form: ``"elbo"``: ``t ~ U(0, 1]``, mask each position with probability ``t``, weight ``1/t``;
            ``"masked_lm"``: ``n ~ U{1..L}`` masks at uniformly random positions, weight ``L/n``.
            Both have the same expectation; ``masked_lm`` has a much smaller variance.
        generator: optional ``torch.Generator`` on ``x0``'s device for the masking noise.
        reduction: ``"mean"`` (a scalar, the batch mean) or ``"none"`` ([B], one estimate per sequence).

    Returns:
        The estimate of ``-ELBO / L`` in nats per token: a scalar, or [B] with ``reduction="none"``.
    """
    if not callable(logits_fn):
        raise TypeError(f"logits_fn must be callable, got {type(logits_fn).__name__}")
    _check_mask_id(mask_id)
    _check_tokens(x0, mask_id)
    if form not in ("elbo", "masked_lm"):
        raise ValueError(f"form must be 'elbo' or 'masked_lm', got {form!r}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    _check_generator(generator)
    B, L = x0.shape
    dev = x0.device
    x0 = x0.long()
    scores = torch.rand(B, L, device=dev, generator=generator)  # position i is masked iff its score is low
    if form == "elbo":
        t = 1.0 - torch.rand(B, 1, device=dev, dtype=torch.float64, generator=generator)  # t in (0, 1]
        masked = scores < t  # each position masked with probability t
        weight = 1.0 / t  # the ELBO weight -alpha'_t / (1 - alpha_t) = 1/t
    else:
        n = torch.randint(1, L + 1, (B, 1), device=dev, generator=generator)  # n ~ U{1..L}
        rank = scores.argsort(dim=1).argsort(dim=1)  # a uniformly random permutation of 0..L-1
        masked = rank < n  # exactly n masks at uniformly random positions
        weight = L / n.double()  # eq. 1: L * (1/n)
    x_t = torch.where(masked, torch.full_like(x0, mask_id), x0)
    logits = logits_fn(x_t)
    _check_network_output(logits, B, L, mask_id, "logits_fn")
    ce = -torch.log_softmax(logits.float(), dim=-1).gather(-1, x0.unsqueeze(-1)).squeeze(-1)  # [B, L]
    per_seq = (ce * masked).sum(dim=1) * weight.squeeze(1).to(ce.dtype) / L  # nats per token
    return per_seq.mean() if reduction == "mean" else per_seq


# ------------------------------------------------------------------------------------------------
# section 2: the discretised sampler with caching
# ------------------------------------------------------------------------------------------------
def _check_shape(shape):
    if (not isinstance(shape, (tuple, list, torch.Size)) or len(shape) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)):
        raise ValueError(f"shape must be (B, L) with positive ints, got {shape!r}")


def _call_probs_fn(probs_fn, x, mask_id):
    probs = probs_fn(x)
    _check_network_output(probs, x.shape[0], x.shape[1], mask_id, "probs_fn")
    _check_probs(probs, "probs_fn's output")
    return probs


def _device_of(generator):
    return generator.device if generator is not None else torch.device("cpu")


def mdlm_sample(probs_fn: Callable[[torch.Tensor], torch.Tensor], shape, mask_id: int, num_steps: int, *,
                dtype: torch.dtype = torch.float64, generator: torch.Generator | None = None,
                device: torch.device | str | None = None):
    """Sample with the discretised reverse process of eq. 2 on a uniform grid, as MDLM's ``ddpm_cache``.

    Args:
        probs_fn: maps tokens [B, L] (``mask_id`` at masked positions) to probabilities [B, L, V].
        shape: ``(B, L)``.
        mask_id: the mask token's id, outside the vocabulary (``>= V``).
        num_steps: ``N >= 1``, steps on the grid ``t_k = 1 - k/N``; the last step (to ``s = 0``) unmasks
            every remaining position.
        dtype: precision of the categorical draw (eq. 4). ``torch.float32`` is the reference code's bug.
        generator: optional ``torch.Generator``; its device is the sampling device unless ``device``
            is given.
        device: where the tokens live (defaults to the generator's device, else CPU).

    Returns:
        ``(tokens, nfe)``: tokens [B, L] int64 in ``0..V-1``; ``nfe`` the number of ``probs_fn`` calls
        (a call is skipped when no position changed in the previous step).
    """
    if not callable(probs_fn):
        raise TypeError(f"probs_fn must be callable, got {type(probs_fn).__name__}")
    _check_shape(shape)
    _check_mask_id(mask_id)
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    _check_dtype(dtype)
    _check_generator(generator)
    dev = torch.device(device) if device is not None else _device_of(generator)
    B, L = shape
    x = torch.full((B, L), mask_id, dtype=torch.long, device=dev)
    times = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64).tolist()
    mu, nfe = None, 0
    for t, s in zip(times[:-1], times[1:]):
        masked = x == mask_id  # [B, L]
        if not masked.any():
            break
        if mu is None:  # caching: call the network only when x changed since the last call
            mu = _call_probs_fn(probs_fn, x, mask_id).to(dtype)
            nfe += 1
        mu_masked = mu[masked]  # [M, V]: unmasked tokens are copied, so only masked positions are drawn
        q = torch.cat([mu_masked * (t - s), torch.full_like(mu_masked[:, :1], s)], dim=-1)  # eq. 2: [M, V + 1]
        draw = _race(q, dtype, generator)  # [M]: a fresh categorical every step, cached mu or not
        V = mu.shape[-1]
        stay = draw == V  # class V is "stay masked"
        if not stay.all():
            x = x.clone()
            x[masked] = torch.where(stay, torch.full_like(draw, mask_id), draw)
            mu = None  # x changed: the next step needs a fresh network call
    return x, nfe


# ------------------------------------------------------------------------------------------------
# section 3: the first-hitting sampler
# ------------------------------------------------------------------------------------------------
def fhs_sample(probs_fn: Callable[[torch.Tensor], torch.Tensor], shape, mask_id: int, *,
               generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
               device: torch.device | str | None = None):
    """Sample with the first-hitting sampler (eq. 3): one exact unmasking event per network call.

    Args:
        probs_fn: maps tokens [B, L] (``mask_id`` at masked positions) to probabilities [B, L, V].
        shape: ``(B, L)``.
        mask_id: the mask token's id, outside the vocabulary (``>= V``).
        generator: optional ``torch.Generator``; its device is the sampling device unless ``device``
            is given.
        dtype: precision of the token draw (float64 by default; float32 is nearly harmless here).
        device: where the tokens live (defaults to the generator's device, else CPU).

    Returns:
        ``(tokens, times, nfe)``: tokens [B, L] int64; ``times`` [B, L] float64, the ``k``-th unmasking
        time of each sequence (decreasing in ``k``); ``nfe == L``.
    """
    if not callable(probs_fn):
        raise TypeError(f"probs_fn must be callable, got {type(probs_fn).__name__}")
    _check_shape(shape)
    _check_mask_id(mask_id)
    _check_dtype(dtype)
    _check_generator(generator)
    dev = torch.device(device) if device is not None else _device_of(generator)
    B, L = shape
    x = torch.full((B, L), mask_id, dtype=torch.long, device=dev)
    t = torch.ones(B, dtype=torch.float64, device=dev)
    times = torch.empty(B, L, dtype=torch.float64, device=dev)
    rows = torch.arange(B, device=dev)
    for k in range(L):
        n = L - k  # masked positions left, the same in every row
        u = torch.rand(B, dtype=torch.float64, device=dev, generator=generator)
        t = t * u ** (1.0 / n)  # eq. 3: the largest of n i.i.d. unmask times below t
        times[:, k] = t
        masked = (x == mask_id).to(torch.float64)
        pos = _race(masked, torch.float64, generator)  # [B]: a uniformly random masked position
        mu = _call_probs_fn(probs_fn, x, mask_id)[rows, pos]  # [B, V]: only the chosen position is drawn
        x[rows, pos] = _race(mu, dtype, generator)
    return x, times, L


# ------------------------------------------------------------------------------------------------
# section 4: the closed form of the float32 effect
# ------------------------------------------------------------------------------------------------
def fp32_unmask_probability(r, delta: float = 2.0 ** -24):
    """Probability that a token beats the mask in one race (eq. 5), truncated vs exact.

    Args:
        r: token-to-mask mass ratio ``mu_v (t - s)/s`` (> 0): a float or a tensor of any shape.
        delta: the spacing of the uniform grid; ``2^-24`` for float32, ``2^-53`` for float64.

    Returns:
        ``(p_truncated, p_exact)``, each like ``r``: ``p_exact = r / (1 + r)`` and
        ``p_truncated = delta / (exp(delta/r) - 1) / (1 + r)``, which is eq. 5 for ``r << 1`` and
        ``p_exact - delta / (2 (1 + r))`` for ``r >> delta`` (there the truncation costs only ``delta/2``).
        Against the race computed in float32 arithmetic on the grid itself it is within 1% for every ``r``.
    """
    if not isinstance(delta, (int, float)) or isinstance(delta, bool) or not 0 < delta < 1:
        raise ValueError(f"delta must be a float in (0, 1), got {delta!r}")
    is_tensor = isinstance(r, torch.Tensor)
    if not is_tensor and (isinstance(r, bool) or not isinstance(r, (int, float))):
        raise TypeError(f"r must be a float or a torch.Tensor, got {type(r).__name__}")
    rt = r.to(torch.float64) if is_tensor else torch.tensor(float(r), dtype=torch.float64)
    if torch.isnan(rt).any() or (rt <= 0).any():
        raise ValueError("r must be positive (a token-to-mask mass ratio)")
    p_exact = rt / (1.0 + rt)
    kept = delta / torch.expm1(delta / rt)  # eq. 5: sum_k delta * exp(-k delta / r), ~ r - delta/2 for r >> delta
    p_trunc = kept / (1.0 + rt)  # the grid keeps `kept` of the token's ratio r
    if is_tensor:
        return p_trunc, p_exact
    return float(p_trunc), float(p_exact)


# ------------------------------------------------------------------------------------------------
# demo: the bug with no network at all, and the two fixes
# ------------------------------------------------------------------------------------------------
def _predicted_mdlm_float32(mu, num_steps, delta=2.0 ** -24):
    """The token distribution [V] of MDLM with float32 races when mu [V] is the same at every step: one
    position through the N steps, each token's ratio r_v cut to delta / (exp(delta / r_v) - 1) (eq. 5)."""
    drawn, surviving = torch.zeros_like(mu), 1.0
    grid = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64).tolist()
    for t, s in zip(grid[:-1], grid[1:]):
        if s == 0:  # the last step draws mu itself
            return drawn + surviving * mu
        kept = delta / torch.expm1(delta / (mu * (t - s) / s))
        step = kept / (1 + kept.sum())  # P(token v wins this step)
        drawn, surviving = drawn + surviving * step, surviving * (1 - step.sum().item())
    return drawn


def _demo():
    import time

    torch.set_num_threads(1)  # small tensors in a long loop: threads cost more than they give

    # An "oracle" with no network: at every position, token 0 has probability 1/2 and each of K rare
    # tokens 1/(2K). In one MDLM step a rare token faces the mask at r = (t - s)/(2 K s) ~ 1/(2 K N t),
    # below float32's grid 2^-24 once N K t > 2^23: then float32 almost never draws it.
    K, B, L, N = 4096, 4, 8, 16000
    V = K + 1
    mu = torch.full((V,), 0.5 / K, dtype=torch.float64)
    mu[0] = 0.5

    def oracle(x):  # [B, L] -> [B, L, V]
        return mu.expand(x.shape[0], x.shape[1], V)

    runs = [
        (f"MDLM, N = {N}, float32", lambda g: mdlm_sample(oracle, (B, L), V, N, dtype=torch.float32, generator=g)),
        (f"MDLM, N = {N}, float64", lambda g: mdlm_sample(oracle, (B, L), V, N, dtype=torch.float64, generator=g)),
        ("FHS", lambda g: fhs_sample(oracle, (B, L), V, generator=g)[::2]),
    ]
    predicted = 1 - _predicted_mdlm_float32(mu, N)[0].item()
    print(f"Oracle: token 0 has probability 1/2, {K} rare tokens share the other 1/2; {B * L} tokens per run.")
    print(f"Expected share of rare tokens: 0.50 exactly; {predicted:.2f} for float32 MDLM by the closed form.")
    print(f"{'sampler':<24} {'rare tokens drawn':>18} {'NFE':>5} {'seconds':>8}")
    for name, run in runs:
        start = time.perf_counter()
        tokens, nfe = run(torch.Generator().manual_seed(0))
        rare = int((tokens > 0).sum())
        print(f"{name:<24} {rare:>9} of {tokens.numel():<6} {nfe:>5} {time.perf_counter() - start:>8.1f}")
    print("One race of a rare token against the mask, at token-to-mask ratio r (eq. 5):")
    for r in (2.0 ** -20, 2.0 ** -24, 2.0 ** -26, 2.0 ** -28):
        p32, p = fp32_unmask_probability(r)
        print(f"  r = 2^{math.log2(r):.0f}: float32 wins with probability {p32:.3g}, exactly {p:.3g} "
              f"(ratio {p32 / p:.3f})")


if __name__ == "__main__":
    _demo()
