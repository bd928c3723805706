r"""Batched masked-diffusion samplers on the exact kernel: first-hitting (FHS) and MDLM steps.

The same samplers as ``minimal/masked_fhs.py`` (its notation: ``L`` positions, vocabulary ``0..V-1``,
mask token ``mask_id``, linear schedule ``alpha_t = 1 - t``, network ``mu(x_t)`` [B, L, V] with no time
input), rebuilt for throughput:

* every categorical draw goes through :func:`kernels.categorical.sample`: exact (32 random bits per element, 64 where a small noise decides), one
  read of the network output, no gathered or concatenated copies (``rows=`` reads the chosen rows in
  place, ``extra_mass=`` adds the mask class of eq. 2 without building ``[M, V + 1]``);
* :func:`fhs_sample` runs sequences at *different progress* in one batch: each row has its own masked
  count ``n_b`` and time ``t_b``, and every event unmasks exactly one position in every row that still
  has masks (eq. 3: ``t_b <- t_b * u^(1/n_b)``, a uniformly random masked position, its token from
  ``mu``). Rows that are done drop out of the network call.
* :func:`mdlm_step` is one step ``t -> s`` of eq. 2 for a batch (``t`` and ``s`` may differ per row);
  :func:`mdlm_sample` chains ``N`` of them on the uniform grid with MDLM's caching.

Both agree in distribution with ``minimal/masked_fhs.py`` (``tests/test_kernels_fhs.py`` checks the
exact laws on a toy network).
"""
from __future__ import annotations

import numbers
from typing import Callable

import torch

from kernels.categorical import check_backend, check_seed_and_generator, check_temperature, sample

__all__ = ["fhs_sample", "mdlm_step", "mdlm_sample"]


def _check_common(model, x, mask_id, output):
    if model is not None and not callable(model):
        raise TypeError(f"model must be callable (tokens [B, L] -> [B, L, V]), got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.dtype != torch.int64:
        raise TypeError(f"x must be an int64 tensor of shape [B, L], got "
                        f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
    if x.dim() != 2 or x.shape[1] < 1:
        raise ValueError(f"x must have shape [B, L] with L >= 1, got {tuple(x.shape)}")
    if isinstance(mask_id, bool) or not isinstance(mask_id, int) or mask_id < 1:
        raise TypeError(f"mask_id must be a positive int outside the vocabulary, got {mask_id!r}")
    if x.numel() and (x.min() < 0 or x.max() > mask_id):
        raise ValueError(f"x must hold tokens in 0..{mask_id - 1} or mask_id = {mask_id}")
    if output not in ("probs", "logits"):
        raise ValueError(f"output must be 'probs' or 'logits' (what model returns), got {output!r}")


def _call(model, x, mask_id, output):
    out = model(x)
    if not isinstance(out, torch.Tensor) or not out.is_floating_point() or out.dim() != 3 \
            or out.shape[:2] != x.shape:
        raise ValueError(f"model must return a float tensor [B, L, V] = [{x.shape[0]}, {x.shape[1]}, V], got "
                         f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
    if out.shape[2] > mask_id:
        raise ValueError(f"mask_id = {mask_id} lies inside the model's vocabulary of V = {out.shape[2]}")
    return out


def _generator(generator, seed, device):
    """The generator every draw of a sampler uses: ``generator``, or a new one seeded with ``seed``
    (checked by the caller: an int in [0, 2^62), as for :func:`kernels.categorical.sample`)."""
    return torch.Generator(device=device).manual_seed(seed) if seed is not None else generator


def fhs_sample(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mask_id: int, *,
               output: str = "probs", temperature: float = 1.0, t: torch.Tensor | None = None,
               generator: torch.Generator | None = None, seed: int | None = None, backend: str = "auto"):
    """First-hitting sampler (eq. 3) for a batch whose rows may be at different progress.

    Args:
        model: tokens [B', L] -> probabilities (``output="probs"``) or logits [B', L, V]; called on the
            rows that still have masks.
        x: [B, L] int64, ``mask_id`` at the positions to fill; rows may hold different numbers of masks.
        mask_id: the mask token (``>= V``).
        output: what ``model`` returns, ``"probs"`` or ``"logits"`` (bf16/fp16/fp32 logits are read as
            they are).
        temperature: applied to the token draw (``mu ** (1/T)`` or ``softmax(logits / T)``).
        t: [B] float64 current times (default 1). Only reported: the network takes no time.
        generator / seed: randomness (a generator on ``x``'s device, or a seed in [0, 2^62)).
        backend: passed to :func:`kernels.categorical.sample`.

    Returns:
        ``(x, times, nfe)``: x [B, L] with every mask filled; times [B, L] float64, ``times[b, k]`` the
        time of row ``b``'s ``k``-th event (NaN after its last); ``nfe`` the number of network calls
        (the largest masked count in the batch; 0 for an empty batch, B = 0).
    """
    _check_common(model, x, mask_id, output)
    check_temperature(temperature)
    check_seed_and_generator(seed, generator, x.device)
    check_backend(backend)
    B, L = x.shape
    if t is not None and not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a float64 tensor of shape [{B}] or None, got {type(t).__name__}")
    tt = torch.ones(B, dtype=torch.float64, device=x.device) if t is None else t.to(x.device, torch.float64).clone()
    if tt.shape != (B,) or not (tt > 0).all():
        raise ValueError(f"t must be a positive tensor of shape [{B}]")
    g = _generator(generator, seed, x.device)
    x = x.clone()
    times = torch.full((B, L), float("nan"), dtype=torch.float64, device=x.device)
    n0 = (x == mask_id).sum(dim=1)  # masks at the start: row b has n0[b] events
    nfe = 0
    while True:
        masked = x == mask_id  # [B, L]
        n = masked.sum(dim=1)  # per-row masked counts
        active = (n > 0).nonzero().squeeze(1)  # [A]
        if active.numel() == 0:
            return x, times, nfe
        A = active.numel()
        u = torch.rand(A, dtype=torch.float64, device=x.device, generator=g)
        tt[active] = tt[active] * u ** (1.0 / n[active].double())  # eq. 3, per row
        k = n0[active] - n[active]  # index of this event in each row's list
        times[active, k] = tt[active]
        # one uniformly random masked position per active row (an exact race over 0/1 masses)
        pos = sample(probs=masked[active].to(torch.float32), generator=g, backend=backend)  # [A]
        out = _call(model, x[active], mask_id, output)  # [A, L, V]
        nfe += 1
        flat = out.reshape(A * L, out.shape[2])
        rows = torch.arange(A, device=x.device) * L + pos  # read only the chosen rows, in place
        kw = {"logits": flat} if output == "logits" else {"probs": flat}
        x[active, pos] = sample(**kw, rows=rows, temperature=temperature, generator=g, backend=backend)


def mdlm_step(mu: torch.Tensor, x: torch.Tensor, mask_id: int, t, s, *,
              generator: torch.Generator | None = None, seed: int | None = None,
              backend: str = "auto") -> torch.Tensor:
    """One step ``t -> s`` of the discretised sampler (eq. 2) for a batch.

    Every masked position draws from ``mu_v (t - s)`` for ``v`` in the vocabulary and ``s`` for staying
    masked (scaled by ``1/(t - s)``: masses ``mu_v`` beside an extra class of mass ``s / (t - s)``, one
    kernel call with no ``[M, V + 1]`` copy). Unmasked positions are kept.

    Args:
        mu: [B, L, V] probabilities from the network on ``x`` (any float dtype).
        x: [B, L] int64 tokens, ``mask_id`` at masked positions.
        mask_id: the mask token (``>= V``).
        t, s: floats or [B] tensors with ``1 >= t > s >= 0`` (rows may be at different times).
        generator / seed, backend: as for :func:`kernels.categorical.sample`.

    Returns:
        [B, L] int64, the tokens at time ``s``.
    """
    _check_common(None, x, mask_id, "probs")
    if not isinstance(mu, torch.Tensor) or not mu.is_floating_point() or mu.dim() != 3 or mu.shape[:2] != x.shape:
        raise ValueError(f"mu must be a float tensor [B, L, V] matching x {tuple(x.shape)}")
    B, L = x.shape
    tt = _times(t, B, x.device, "t")
    ss = _times(s, B, x.device, "s")
    if not ((tt > ss) & (ss >= 0) & (tt <= 1)).all():
        raise ValueError("need 1 >= t > s >= 0 in every row")
    check_seed_and_generator(seed, generator, x.device)
    check_backend(backend)
    g = _generator(generator, seed, x.device)
    masked = (x == mask_id).reshape(-1)
    rows = masked.nonzero().squeeze(1)  # [M] flat indices of the masked positions
    if rows.numel() == 0:
        return x.clone()
    V = mu.shape[2]
    b = rows // L
    extra = (ss / (tt - ss))[b]  # eq. 2 divided by (t - s): the mask's mass beside mu
    draw = sample(probs=mu.reshape(B * L, V), rows=rows, extra_mass=extra, generator=g, backend=backend)
    new = x.clone().reshape(-1)
    new[rows] = torch.where(draw == V, torch.full_like(draw, mask_id), draw)
    return new.reshape(B, L)


def _times(v, B, device, name):
    if isinstance(v, torch.Tensor):
        if v.shape not in ((B,), ()):
            raise ValueError(f"{name} must be a float or a tensor of shape [{B}], got {tuple(v.shape)}")
        return v.to(device=device, dtype=torch.float64).expand(B)
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a float or a tensor of shape [{B}], got {type(v).__name__}")
    return torch.full((B,), float(v), dtype=torch.float64, device=device)


def mdlm_sample(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mask_id: int, num_steps: int,
                *, output: str = "probs", generator: torch.Generator | None = None, seed: int | None = None,
                backend: str = "auto"):
    """MDLM's ``ddpm_cache`` sampler: ``num_steps`` steps of eq. 2 on ``t_k = 1 - k/N``, with caching.

    Args:
        model: tokens [B, L] -> probabilities or logits (``output``) [B, L, V].
        x: [B, L] int64 start, usually all ``mask_id``.
        mask_id, num_steps: the mask token; ``N >= 1`` (the last step, to ``s = 0``, fills every mask).
        generator / seed, backend: randomness and kernel choice, as for :func:`kernels.categorical.sample`.

    Returns:
        ``(x, nfe)``: the tokens [B, L] and the number of network calls (``<= min(N, L)``).
    """
    _check_common(model, x, mask_id, output)
    if isinstance(num_steps, bool) or not isinstance(num_steps, int):
        raise TypeError(f"num_steps must be a positive int, got {type(num_steps).__name__}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps}")
    check_seed_and_generator(seed, generator, x.device)
    check_backend(backend)
    g = _generator(generator, seed, x.device)
    grid = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64).tolist()
    mu, nfe = None, 0
    for t, s in zip(grid[:-1], grid[1:]):
        if not (x == mask_id).any():
            break
        if mu is None:  # caching: a new network call only after something changed
            mu = _call(model, x, mask_id, output)
            if output == "logits":
                mu = torch.softmax(mu.float(), dim=-1)
            nfe += 1
        new = mdlm_step(mu, x, mask_id, t, s, generator=g, backend=backend)
        if not torch.equal(new, x):
            x, mu = new, None
    return x, nfe
