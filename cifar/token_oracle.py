r"""An exact masked model at L = 1024: a Markov chain over image tokens, and its conditionals.

Lesson 04 measures how far float32 categorical sampling moves a masked diffusion model's samples
from the distribution it was meant to sample. A trained network only approximates its
conditionals, so the measurement would mix two errors. This module removes one: a distribution
over 32x32 images seen as token sequences (raster order, ``L = 1024``) whose conditional given
*any* set of unmasked positions has a closed form, so ``probs_fn`` below is a perfect masked
model, and the truth (its token distribution, its rare-token mass, exact samples) is known.

Notation, fixed for this file
-----------------------------
Tokens ``x_0, ..., x_{L-1}`` in ``{0, ..., V-1}``, positions counted from 0. The chain has an initial
distribution ``pi0`` [V] and a transition matrix ``P`` [V, V] (rows sum to 1):

    (1)  p(x) = pi0[x_0] * prod_{i=1}^{L-1} P[x_{i-1}, x_i].

Its marginal at position ``i`` is the row vector

    (2)  mu_i = pi0 P^i,

and by the Markov property, given everything unmasked, a masked position ``i`` depends only on its
nearest unmasked neighbours: ``x_j = a`` at ``j < i`` (none if nothing is unmasked to the left) and
``x_k = b`` at ``k > i`` (none if nothing is unmasked to the right). Bayes' rule on the chain
``a -> (i - j steps) -> v -> (k - i steps) -> b`` gives

    (3)  q_i(v) ∝ left_i(v) * right_i(v),
         left_i(v)  = P^{i-j}[a, v]      (or mu_i[v] when there is no unmasked position to the left),
         right_i(v) = P^{k-i}[v, b]      (or 1 when there is none to the right).

This is the masked-diffusion convention: each masked position's prediction is its marginal given
the unmasked ones (the optimal ``mu^i(x_t)`` of ``minimal/masked_fhs.py``), not a joint. An
unmasked position's row is the one-hot of its token.

Computation. ``probs_fn`` finds every masked position's neighbours with a cumulative max and a
reversed cumulative min (no loop over positions) and reads rows and columns of ``P^d`` from a table
of powers. When ``L V^2`` float64 numbers fit ``table_bytes`` (V <= 64 at L = 1024 by default) the
table holds every ``P^d``, ``d < L``, and a lookup is one gather. Otherwise it holds ``P^r`` for
``r < S`` and ``P^{qS}`` for ``q <= L / S`` with ``S = ceil(sqrt(L))`` (64 matrices at L = 1024),
and ``e_a P^d = (e_a P^{qS}) P^r`` costs one gather and ``S`` matrix products, one per remainder.
All in float64; probabilities come back float64 [B, L, V].

Device. The tables are built on the CPU in float64 (the same numbers whatever the device), then
moved to ``device`` (``MarkovTokenOracle(..., device="cuda")`` or :meth:`~MarkovTokenOracle.to`).
Every computation runs where the tables are; a method given tokens returns on the tokens' device,
and the exact references (``marginals``, ``stationary``, ``token_distribution``) on the oracle's.

Exact references: :meth:`MarkovTokenOracle.marginals` (2), :meth:`~MarkovTokenOracle.token_distribution`
(the expected frequency of each token in a sequence), :meth:`~MarkovTokenOracle.stationary`,
:meth:`~MarkovTokenOracle.rare_token_mass`, :meth:`~MarkovTokenOracle.rare_transition_mass`,
:meth:`~MarkovTokenOracle.entropy` and :meth:`~MarkovTokenOracle.log_prob` (1), and
:meth:`~MarkovTokenOracle.sample`, exact ancestral sampling.

    oracle = MarkovTokenOracle.fit(TokenView("grey", 16).encode(images), vocab_size=16)
    x, nfe = mdlm_sample(oracle.probs_fn, (8, 1024), oracle.mask_id, 1000, dtype=torch.float32)
    truth = oracle.sample(8, generator=g)   # exact samples of the same distribution
    gpu = oracle.to("cuda")                  # tables on the GPU; probs_fn(x) returns on x's device
"""
from __future__ import annotations

import copy
import math

import torch

__all__ = ["MarkovTokenOracle"]

_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


# ----------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------

def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def _check_nonneg_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def _check_distribution(name: str, p, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(p, torch.Tensor) or not p.is_floating_point():
        raise TypeError(f"{name} must be a floating torch.Tensor of shape {list(shape)}, got "
                        f"{p.dtype if isinstance(p, torch.Tensor) else type(p).__name__}")
    if tuple(p.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(p.shape)}")
    p = p.detach().to("cpu", torch.float64)
    if not torch.isfinite(p).all() or (p < 0).any():
        raise ValueError(f"{name} must be finite and non-negative")
    if not torch.allclose(p.sum(-1), torch.ones((), dtype=torch.float64), rtol=0, atol=1e-9):
        raise ValueError(f"{name} must sum to 1 along its last dimension (got sums in "
                         f"[{p.sum(-1).min().item():.6g}, {p.sum(-1).max().item():.6g}])")
    return p / p.sum(-1, keepdim=True)


def _check_device(device) -> torch.device:
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or a torch.device such as 'cpu' or 'cuda', "
                        f"got {type(device).__name__}")
    try:
        device = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda', got {device!r}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device is {str(device)!r} but CUDA is not available on this machine")
    return device


def _check_tokens(name: str, x, vocab_size: int, length: int | None, mask_id: int | None) -> None:
    if not isinstance(x, torch.Tensor) or x.dtype not in _INT_DTYPES:
        raise TypeError(f"{name} must be an integer torch.Tensor [B, L], got "
                        f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
    if x.dim() != 2 or (length is not None and x.shape[1] != length) or x.shape[1] < 1:
        want = f"L = {length}" if length else "L >= 1"
        raise ValueError(f"{name} must have shape [B, L] with {want}, got {tuple(x.shape)}")
    if x.numel():
        bad = (x < 0) | (x >= vocab_size)
        if mask_id is not None:
            bad &= x != mask_id
        if bad.any():
            allowed = f"0..{vocab_size - 1}" + (f" or the mask id {mask_id}" if mask_id is not None else "")
            raise ValueError(f"{name} must hold tokens in {allowed}, "
                             f"got values in [{x.min().item()}, {x.max().item()}]")


# ----------------------------------------------------------------------------------------------
# The oracle
# ----------------------------------------------------------------------------------------------

class MarkovTokenOracle:
    """A first-order Markov chain (1) over ``V`` tokens on ``L`` positions, with exact masked conditionals (3).

    Args:
        transition: P [V, V], float, rows summing to 1.
        initial: pi0 [V] summing to 1; None (default) is the stationary distribution of P, so that
            every position has the same marginal.
        length: L, the number of positions (1024 for 32x32 images).
        mask_id: the mask token's id, outside the vocabulary (default ``V``, as :class:`cifar.tokens.TokenView`).
        table_bytes: the most memory the table of all powers P^d, d < L, may take (default 64 MiB);
            above it the two-level table described in the module docstring is used.
        device: where the tables live and the oracle computes (default the CPU); built on the CPU, then moved.

    Attributes: ``transition`` [V, V] and ``initial`` [V] (float64, on ``device``), ``vocab_size`` (V),
    ``length`` (L), ``mask_id``, ``device``.
    """

    def __init__(self, transition: torch.Tensor, initial: torch.Tensor | None = None, *, length: int = 1024,
                 mask_id: int | None = None, table_bytes: int = 64 << 20, device: str | torch.device | None = None):
        if not isinstance(transition, torch.Tensor) or transition.dim() != 2:
            raise (TypeError if not isinstance(transition, torch.Tensor) else ValueError)(
                f"transition must be a square matrix [V, V], got "
                f"{tuple(transition.shape) if isinstance(transition, torch.Tensor) else type(transition).__name__}")
        V = transition.shape[0]
        self.transition = _check_distribution("transition", transition, (V, V))
        self.vocab_size = V
        self.length = _check_int("length", length, 1)
        self.mask_id = V if mask_id is None else _check_int("mask_id", mask_id, V)
        _check_int("table_bytes", table_bytes, 0)
        device = torch.device("cpu") if device is None else _check_device(device)
        self.device = torch.device("cpu")                # the tables are built here, then moved
        self.initial = self.stationary() if initial is None else _check_distribution("initial", initial, (V,))

        L, P = self.length, self.transition
        if L * V * V * 8 <= table_bytes:               # every power P^0 .. P^{L-1}
            self._step = L
            self._small = self._powers(P, L)                                     # [L, V, V]
            self._big = torch.eye(V, dtype=torch.float64)[None]                  # [1, V, V]
        else:                                          # P^r, r < S, and P^{qS}, q <= (L - 1) // S
            self._step = math.isqrt(L - 1) + 1
            self._small = self._powers(P, self._step)                            # [S, V, V]
            self._big = self._powers(self._small[-1] @ P, (L - 1) // self._step + 1)  # [Q, V, V]
        start = self.initial @ self._big                                         # pi0 P^{qS}      [Q, V]
        marg = torch.einsum("qv,rvw->qrw", start, self._small).reshape(-1, V)    # pi0 P^{qS + r}  [Q S, V]
        self._marginals = marg[:L].clone()                                       # (2): mu_i, i < L  [L, V]
        if device != self.device:
            self._move(device)

    _TENSORS = ("transition", "initial", "_small", "_big", "_marginals")

    def _move(self, device: torch.device) -> None:
        for name in self._TENSORS:
            setattr(self, name, getattr(self, name).to(device))
        self.device = self._small.device                 # with its index: "cuda" becomes "cuda:0"

    def to(self, device: str | torch.device) -> "MarkovTokenOracle":
        """This oracle with its tables on ``device`` (self if they are there already; otherwise a copy)."""
        device = _check_device(device)
        if device == self.device:
            return self
        moved = copy.copy(self)
        moved._move(device)
        return moved

    @staticmethod
    def _powers(M: torch.Tensor, n: int) -> torch.Tensor:
        """M^0, ..., M^{n-1} -> [n, V, V]."""
        out = torch.empty(n, *M.shape, dtype=torch.float64)
        out[0] = torch.eye(M.shape[0], dtype=torch.float64)
        for d in range(1, n):
            out[d] = out[d - 1] @ M
        return out

    def __repr__(self) -> str:
        return (f"MarkovTokenOracle(V={self.vocab_size}, L={self.length}, mask_id={self.mask_id}, "
                f"device={self.device})")

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def fit(cls, tokens: torch.Tensor, vocab_size: int, *, smoothing: float = 1e-3, initial: str = "stationary",
            length: int | None = None, mask_id: int | None = None,
            device: str | torch.device | None = None) -> "MarkovTokenOracle":
        """Fit P by counting consecutive pairs (raster order, so across row ends too) in token sequences.

        Args:
            tokens: [N, L] integer tokens in 0..V-1 (e.g. ``TokenView("grey", 16).encode(images)``).
            vocab_size: V.
            smoothing: added to every count (Laplace smoothing): every transition gets positive mass,
                so every masked position has a well-defined conditional and rare tokens exist.
            initial: "stationary" (pi0 = the stationary distribution of P) or "first" (the smoothed
                frequencies of the first token).
            length: L of the oracle (default: the length of ``tokens``).
            mask_id, device: as in the constructor.

        Returns:
            The oracle.
        """
        _check_int("vocab_size", vocab_size, 1)
        _check_tokens("tokens", tokens, vocab_size, None, None)
        smoothing = _check_nonneg_float("smoothing", smoothing)
        if initial not in ("stationary", "first"):
            raise ValueError(f"initial must be 'stationary' or 'first', got {initial!r}")
        t = tokens.long().cpu()
        pairs = (t[:, :-1] * vocab_size + t[:, 1:]).flatten()
        counts = torch.bincount(pairs, minlength=vocab_size ** 2).reshape(vocab_size, vocab_size).double() + smoothing
        if (counts.sum(1) == 0).any():
            raise ValueError("some token never has a successor in tokens; use smoothing > 0")
        P = counts / counts.sum(1, keepdim=True)
        pi0 = None
        if initial == "first":
            first = torch.bincount(t[:, 0], minlength=vocab_size).double() + smoothing
            pi0 = first / first.sum()
        return cls(P, pi0, length=tokens.shape[1] if length is None else length, mask_id=mask_id, device=device)

    @classmethod
    def ar1(cls, vocab_size: int = 16, rho: float = 0.9, sigma: float = 1.0, floor: float = 1e-6, *,
            length: int = 1024, mask_id: int | None = None, device: str | torch.device | None = None
            ) -> "MarkovTokenOracle":
        """A synthetic chain: grey levels that drift like an AR(1) process, plus a small uniform floor.

        P[a, b] ∝ exp(-(b - m_a)^2 / (2 sigma^2)) + floor, with m_a = rho a + (1 - rho) (V - 1) / 2: smooth
        runs of similar levels (as along an image row), every jump possible but rare (the floor).

        Args:
            vocab_size: V >= 2.
            rho: in [0, 1], how strongly a level is followed by a similar one.
            sigma: > 0, the spread of the next level, in levels.
            floor: >= 0, the mass added to every transition before normalising.
            length, mask_id, device: as in the constructor.
        """
        _check_int("vocab_size", vocab_size, 2)
        rho, floor = _check_nonneg_float("rho", rho), _check_nonneg_float("floor", floor)
        sigma = _check_nonneg_float("sigma", sigma)
        if rho > 1 or sigma == 0:
            raise ValueError(f"rho must be in [0, 1] and sigma > 0, got rho={rho}, sigma={sigma}")
        levels = torch.arange(vocab_size, dtype=torch.float64)
        centre = rho * levels + (1 - rho) * (vocab_size - 1) / 2
        weight = torch.exp(-(levels[None, :] - centre[:, None]) ** 2 / (2 * sigma ** 2)) + floor
        return cls(weight / weight.sum(1, keepdim=True), length=length, mask_id=mask_id, device=device)

    # -- rows and columns of P^d ---------------------------------------------------------------

    def _split(self, d: torch.Tensor):
        return d // self._step, d % self._step

    def _row(self, a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """P^{d[m]}[a[m], :] -> [M, V]."""
        q, r = self._split(d)
        if self._big.shape[0] == 1:
            return self._small[r, a]                                              # one gather
        return self._apply_small(self._big[q, a], r, transpose=False)          # (e_a P^{qS}) P^r

    def _col(self, b: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """P^{d[m]}[:, b[m]] -> [M, V]."""
        q, r = self._split(d)
        if self._big.shape[0] == 1:
            return self._small[r, :, b]                                           # one gather
        return self._apply_small(self._big[q, :, b], r, transpose=True)        # P^r (P^{qS} e_b)

    def _apply_small(self, vectors: torch.Tensor, r: torch.Tensor, transpose: bool) -> torch.Tensor:
        """vectors[m] @ P^{r[m]} (or @ (P^{r[m]})^T): one matrix product per remainder, not per position."""
        out = torch.empty_like(vectors)
        for rem in torch.unique(r).tolist():
            sel = r == rem
            M = self._small[rem]
            out[sel] = vectors[sel] @ (M.T if transpose else M)
        return out

    # -- the masked model ---------------------------------------------------------------------

    def probs_fn(self, x: torch.Tensor) -> torch.Tensor:
        """Exact conditionals (3) of every position given the unmasked ones.

        Args:
            x: [B, L] integer tokens in 0..V-1, with ``mask_id`` at masked positions, on any device.

        Returns:
            [B, L, V] float64 on x's device (computed on the oracle's): at a masked position, q_i(v)
            of (3) (rows sum to 1); at an unmasked position, the one-hot of its token.
        """
        _check_tokens("x", x, self.vocab_size, self.length, self.mask_id)
        B, L, V, dev = x.shape[0], self.length, self.vocab_size, self.device
        xc = x.detach().long().to(dev)
        known = xc != self.mask_id
        pos = torch.arange(L, device=dev).expand(B, L)
        left = torch.where(known, pos, -1).cummax(dim=1).values                           # nearest unmasked j <= i
        right = torch.where(known, pos, L).flip(1).cummin(dim=1).values.flip(1)           # nearest unmasked k >= i
        out = torch.zeros(B, L, V, dtype=torch.float64, device=dev)
        out[known] = torch.nn.functional.one_hot(xc[known], V).double()
        rows, cols = torch.nonzero(~known, as_tuple=True)                                  # the masked positions [M]
        if rows.numel() == 0:
            return out.to(x.device)
        j, k = left[rows, cols], right[rows, cols]
        has_left, has_right = j >= 0, k < L
        lf = self._marginals[cols].clone()                                               # mu_i when nothing is left
        if has_left.any():
            lf[has_left] = self._row(xc[rows[has_left], j[has_left]], (cols - j)[has_left])   # P^{i-j}[a, :]
        rf = torch.ones_like(lf)
        if has_right.any():
            rf[has_right] = self._col(xc[rows[has_right], k[has_right]], (k - cols)[has_right])  # P^{k-i}[:, b]
            rf = rf / rf.amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)  # no underflow
        q = lf * rf                                                                        # (3)
        total = q.sum(dim=1, keepdim=True)
        if not (total > 0).all():
            raise ValueError("x has probability 0 under the chain (its unmasked tokens cannot occur together)")
        out[rows, cols] = q / total
        return out.to(x.device)

    __call__ = probs_fn

    # -- exact references ---------------------------------------------------------------------

    def marginals(self) -> torch.Tensor:
        """mu_i = pi0 P^i (2) for every position: [L, V] float64."""
        return self._marginals.clone()

    def stationary(self) -> torch.Tensor:
        """The stationary distribution pi = pi P: [V] float64 (least squares; unique if P is irreducible).

        Solved on the CPU (a small solve: the same numbers whatever the device), returned on the oracle's."""
        V = self.vocab_size
        P = self.transition.cpu()
        A = torch.cat([P.T - torch.eye(V, dtype=torch.float64), torch.ones(1, V, dtype=torch.float64)])
        rhs = torch.cat([torch.zeros(V, dtype=torch.float64), torch.ones(1, dtype=torch.float64)])
        pi = torch.linalg.lstsq(A, rhs[:, None]).solution.squeeze(1).clamp_min(0)
        return (pi / pi.sum()).to(self.device)

    def token_distribution(self) -> torch.Tensor:
        """The expected frequency of each token in a sequence, mean_i mu_i: [V] float64 (= pi when pi0 = pi)."""
        return self._marginals.mean(0)

    def rare_token_mass(self, threshold: float) -> float:
        """The mass of the rare tokens: sum of p_v over the tokens with p_v < threshold, p = :meth:`token_distribution`.

        The expected fraction of a sequence's positions that hold a rare token; compare with
        :meth:`token_frequencies` of samples.
        """
        threshold = _check_nonneg_float("threshold", threshold)
        p = self.token_distribution()
        return float(p[p < threshold].sum())

    def rare_transition_mass(self, threshold: float) -> float:
        """The expected fraction of positions whose token had probability < threshold given its predecessor.

        (1/L) [ sum_{v: pi0_v < thr} pi0_v + sum_{i=1}^{L-1} sum_a mu_{i-1}(a) sum_{b: P[a,b] < thr} P[a, b] ];
        measure the same on samples with :meth:`rare_transition_fraction`.
        """
        threshold = _check_nonneg_float("threshold", threshold)
        P = self.transition
        rare_from = (P * (P < threshold)).sum(1)                                    # [V]
        first = (self.initial * (self.initial < threshold)).sum()
        return float((first + (self._marginals[:-1] @ rare_from).sum()) / self.length)

    def rare_transition_fraction(self, x: torch.Tensor, threshold: float) -> torch.Tensor:
        """Per sequence, the fraction of positions whose token had probability < threshold given its
        predecessor (pi0 for position 0): x [B, L] -> [B] float64 on x's device."""
        _check_tokens("x", x, self.vocab_size, self.length, None)
        threshold = _check_nonneg_float("threshold", threshold)
        xc = x.long().to(self.device)
        step = torch.cat([self.initial[xc[:, :1]], self.transition[xc[:, :-1], xc[:, 1:]]], dim=1)   # [B, L]
        return (step < threshold).double().mean(1).to(x.device)

    def token_frequencies(self, x: torch.Tensor) -> torch.Tensor:
        """Empirical token frequencies of sequences x [B, L] -> [V] float64 (sums to 1) on x's device."""
        _check_tokens("x", x, self.vocab_size, self.length, None)
        return torch.bincount(x.long().flatten(), minlength=self.vocab_size).double() / x.numel()

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) (1) for complete sequences x [B, L] -> [B] float64 on x's device."""
        _check_tokens("x", x, self.vocab_size, self.length, None)
        xc = x.long().to(self.device)
        out = torch.log(self.initial[xc[:, 0]]) + torch.log(self.transition[xc[:, :-1], xc[:, 1:]]).sum(1)
        return out.to(x.device)

    def entropy(self) -> float:
        """The exact entropy per token, H(x_0, ..., x_{L-1}) / L in nats.

        The mean of -log_prob / L over exact samples tends to it; samples drawn at a lower temperature
        (too few rare tokens) fall below it."""
        def h(p):
            return -(p * torch.log(torch.where(p > 0, p, torch.ones_like(p)))).sum(-1)
        return float((h(self.initial) + (self._marginals[:-1] @ h(self.transition)).sum()) / self.length)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact samples of (1) by ancestral sampling (inverse CDF, float64): [n, L] int64, on the oracle's device.

        Args:
            n: number of sequences.
            generator: optional ``torch.Generator`` on the oracle's device (where the uniforms are drawn).
        """
        _check_int("n", n, 0)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        if generator is not None and generator.device.type != self.device.type:
            raise ValueError(f"generator is on {generator.device} but the oracle is on {self.device}; "
                             f"pass a generator on {self.device} (or move the oracle with .to)")
        u = torch.rand(self.length, n, 1, dtype=torch.float64, generator=generator,
                       device=self.device)                                           # u[i]: position i's uniforms
        cdf = self.transition.cumsum(1)
        cdf[:, -1] = 1.0
        first = self.initial.cumsum(0)
        first[-1] = 1.0
        x = torch.empty(n, self.length, dtype=torch.long, device=self.device)
        x[:, 0] = torch.searchsorted(first, u[0, :, 0], right=True).clamp_max(self.vocab_size - 1)
        for i in range(1, self.length):
            row = cdf[x[:, i - 1]]
            x[:, i] = torch.searchsorted(row, u[i], right=True).squeeze(1).clamp_max(self.vocab_size - 1)
        return x
