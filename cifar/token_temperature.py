r"""How hot is a set of token samples? Statistics against an exact Markov chain, and a fitted temperature.

Lesson 04 samples 32x32 images as 1024-token sequences from a model whose truth is known: a
:class:`~cifar.token_oracle.MarkovTokenOracle`. This module turns samples into the numbers the lesson
reads: per sequence, the share of rare tokens, the share of rare transitions and the negative
log-likelihood per token under the true chain; and the temperature at which the tempered chain would
produce that negative log-likelihood.

Notation, fixed for this file
-----------------------------
The chain of ``cifar/token_oracle.py``: initial distribution ``pi0`` [V], transition matrix ``P`` [V, V],
``L`` positions, ``p(x) = pi0[x_0] prod_i P[x_{i-1}, x_i]``. For a temperature ``tau > 0`` the tempered
chain has

    (1)  pi0_tau ∝ pi0 ** (1 / tau),    P_tau[a, :] ∝ P[a, :] ** (1 / tau)    (row by row),

so ``tau < 1`` favours each row's likely tokens (a colder sampler), ``tau = 1`` is the chain itself. Its
expected negative log-likelihood per token under the *true* chain is

    (2)  nll(tau) = (1 / L) E_{x ~ chain_tau} [-log p(x)]
                  = (1 / L) [ sum_v pi0_tau[v] (-log pi0[v]) + sum_{i=1}^{L-1} sum_a m_{i-1}(a) sum_b P_tau[a, b] (-log P[a, b]) ],

with ``m_i = pi0_tau P_tau^i`` the tempered chain's marginals; ``nll(1)`` is the entropy per token.
``nll`` grows with ``tau`` (for one row its derivative is a variance over ``tau^2``), so a measured mean
negative log-likelihood per token has one fitted temperature (:func:`fit_temperature`): the ``tau``
whose (2) equals it. Samples that drop rare tokens have a low negative log-likelihood and a fitted
``tau < 1``.

    stats = token_statistics(oracle, x, threshold=1e-3)        # per-sequence tensors [B]
    tau = fit_temperature(oracle.transition, oracle.initial, stats["nll"].mean().item())
"""
from __future__ import annotations

import math

import torch

from cifar.token_oracle import MarkovTokenOracle

__all__ = ["tempered_chain", "tempered_nll", "fit_temperature", "token_statistics"]


def _check_chain(transition, initial) -> tuple[torch.Tensor, torch.Tensor]:
    for name, value, dim in (("transition", transition, 2), ("initial", initial, 1)):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise TypeError(f"{name} must be a floating torch.Tensor, got {type(value).__name__}")
        if value.dim() != dim:
            raise ValueError(f"{name} must have {dim} dimension(s), got shape {tuple(value.shape)}")
    V = initial.shape[0]
    if tuple(transition.shape) != (V, V):
        raise ValueError(f"transition must have shape [{V}, {V}] (V from initial), got {tuple(transition.shape)}")
    if (transition < 0).any() or (initial < 0).any():
        raise ValueError("transition and initial must be non-negative")
    return transition.double(), initial.double()


def _check_tau(tau) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)):
        raise TypeError(f"tau must be a float, got {type(tau).__name__}")
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a finite number > 0, got {tau}")
    return float(tau)


def _temper(p: torch.Tensor, tau: float) -> torch.Tensor:
    """p ** (1/tau) normalised along the last dimension, through logs (no underflow for small tau)."""
    logp = torch.log(p) / tau
    return torch.softmax(torch.where(p > 0, logp, torch.full_like(logp, -math.inf)), dim=-1)


def tempered_chain(transition: torch.Tensor, initial: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The tempered chain (1).

    Args:
        transition: P [V, V], rows summing to 1.
        initial: pi0 [V].
        tau: the temperature, > 0.

    Returns:
        ``(P_tau, pi0_tau)``: [V, V] and [V] float64, on the inputs' device.
    """
    P, pi0 = _check_chain(transition, initial)
    tau = _check_tau(tau)
    return _temper(P, tau), _temper(pi0, tau)


def tempered_nll(transition: torch.Tensor, initial: torch.Tensor, tau: float, length: int = 1024) -> float:
    """The expected negative log-likelihood per token (2) of the tempered chain's samples under the true chain.

    Args:
        transition: P [V, V]; initial: pi0 [V]; tau: > 0.
        length: L >= 1.

    Returns:
        nll(tau) in nats per token; at ``tau = 1`` the chain's entropy per token.

    Computed on the CPU whatever the inputs' device: ``L - 1`` tiny products, each read back, which a GPU
    would run as as many launches and synchronisations.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be an int >= 1, got {length!r}")
    P, pi0 = (t.cpu() for t in _check_chain(transition, initial))
    P_tau, pi0_tau = tempered_chain(P, pi0, tau)
    surprise = -torch.log(torch.where(P > 0, P, torch.ones_like(P)))               # -log P[a, b], 0 where P = 0
    step = (P_tau * surprise).sum(1)                                                # [V]: E_b[-log P[a, b]] per a
    first = (pi0_tau * -torch.log(torch.where(pi0 > 0, pi0, torch.ones_like(pi0)))).sum()
    m, total = pi0_tau, 0.0
    for _ in range(length - 1):                                                     # (2): m_{i-1} . step
        total += float(m @ step)
        m = m @ P_tau
    return (float(first) + total) / length


def fit_temperature(transition: torch.Tensor, initial: torch.Tensor, nll: float, length: int = 1024, *,
                    bounds: tuple[float, float] = (0.05, 20.0), tol: float = 1e-4) -> float:
    """The temperature whose tempered chain (1) has the expected negative log-likelihood ``nll`` (2).

    Bisection on ``log tau`` (nll(tau) grows with tau).

    Args:
        transition: P [V, V]; initial: pi0 [V]; length: L.
        nll: a measured mean negative log-likelihood per token (nats).
        bounds: the search interval for tau.
        tol: stop when the interval is narrower than this (relative).

    Returns:
        tau, a float in ``bounds``.

    Raises:
        ValueError: if ``nll`` is outside [nll(bounds[0]), nll(bounds[1])].
    """
    if isinstance(nll, bool) or not isinstance(nll, (int, float)) or not math.isfinite(nll):
        raise TypeError(f"nll must be a finite float, got {nll!r}")
    lo, hi = (_check_tau(b) for b in bounds)
    if not lo < hi:
        raise ValueError(f"bounds must be (low, high) with low < high, got {bounds}")
    f_lo, f_hi = (tempered_nll(transition, initial, b, length) for b in (lo, hi))
    if not f_lo <= nll <= f_hi:
        raise ValueError(f"nll = {nll:.6g} is outside [{f_lo:.6g}, {f_hi:.6g}], the range over tau in {bounds}")
    while hi / lo > 1 + tol:
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if tempered_nll(transition, initial, mid, length) < nll else (lo, mid)
    return math.sqrt(lo * hi)


def token_statistics(oracle: MarkovTokenOracle, x: torch.Tensor, threshold: float = 1e-3) -> dict[str, torch.Tensor]:
    """Per-sequence statistics of samples against the true chain.

    Args:
        oracle: the chain.
        x: [B, L] int tokens in 0..V-1, on any device (computed where the oracle is).
        threshold: a token is rare when its probability is below it.

    Returns:
        dict of [B] float64 tensors on x's device: ``rare`` (the share of positions holding a token whose
        expected frequency, :meth:`~MarkovTokenOracle.token_distribution`, is below ``threshold``; its truth is
        :meth:`~MarkovTokenOracle.rare_token_mass`), ``rare_transitions`` (the share of positions whose
        token had probability below ``threshold`` given its predecessor; truth
        :meth:`~MarkovTokenOracle.rare_transition_mass`) and ``nll`` (``-log p(x) / L`` in nats; its
        truth is :meth:`~MarkovTokenOracle.entropy`).
    """
    if not isinstance(oracle, MarkovTokenOracle):
        raise TypeError(f"oracle must be a MarkovTokenOracle, got {type(oracle).__name__}")
    nll = -oracle.log_prob(x) / oracle.length                                       # checks x
    rare_tokens = oracle.token_distribution() < threshold                           # [V]
    rare = rare_tokens[x.long().to(rare_tokens.device)].double().mean(1).to(x.device)
    return dict(rare=rare, rare_transitions=oracle.rare_transition_fraction(x, threshold), nll=nll)
