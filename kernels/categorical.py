r"""Exact categorical sampling in one pass over the logits: an exponential race with refined noise.

The reference (``minimal/masked_fhs.py``, eq. 4) draws one index per row of ``p`` [N, V] by an
exponential race,

    E_v ~ Exp(1) i.i.d.,        sample = argmax_v  p_v / E_v   (= argmax_v  log p_v - log E_v),

which picks ``v`` with probability ``p_v / sum(p)``. It is exact only if the noise ``E`` is exact
where it matters: a class of small mass ``p_v`` wins through a *small* ``E_v``. The reference builds
``E = -log u`` from a float32 uniform ``u``; ``u <= 1 - 2^-24``, so ``E >= ~6e-8`` and a class whose
mass is below ~6e-8 of the leader's can (almost) never win. Float64 fixes that but costs a float64
uniform, a float64 log and a float64 division per element, and several passes over memory.

The construction used here (32 random bits per element, 64 where they matter)
-----------------------------------------------------------------------------
Each element gets a 32-bit word ``w`` from Philox-4x32-10 (one call, 128 bits, serves four columns).
It names a cell of the unit interval, ``u = (w + 1/2) 2^-32``, and ``E = -ln u`` is computed from the
end of (0, 1) that ``u`` is near, so that the small quantity is always exact before it is rounded:

    upper region, u < 3/4:  a = u     = (w  + 1/2) 2^-32             E = -ln a          in (0.29, 45.1]
    lower region, u > 3/4:  a = 1 - u = (~w + 1/2) 2^-32             E = -log1p(-a)     in [2.7e-20, 0.29)

(``~w = 2^32 - 1 - w``, exact in integers). **Refinement**: where ``a < 2^-16``, i.e. in the 2^16
cells next to 0 and the 2^16 next to 1 (probability 2^-15 per element), 32 more bits ``l`` (a second
Philox stream, computed only for the tiles that need it) pick one of 2^32 sub-cells:
``a = (k 2^32 + l + 1/2) 2^-64`` with ``k`` the cell. So ``u`` is a uniform quantized to the
midpoints of a grid of spacing 2^-64 within 2^-16 of either end and 2^-32 elsewhere (the grids meet
at cell boundaries). As a float32, ``a`` keeps 24 significant bits down to its smallest value 2^-65.

The race needs ``log2 E``, not ``E``: with ``X = -log2 u = E / ln 2`` and the key ``k_v`` of a class
(its logit, ``scale = log2(e) / T``, or ``log2 p_v``, ``scale = 1 / T``), the score

    s_v = scale * k_v - log2 X_v                                                              (1)

differs from ``log2 p_v / T - log2 E_v`` by the same constant ``log2 ln 2`` for every class. On the
upper region ``log2 X = log2(-log2 a)``, two logarithms. On the lower region
``log2 X = log2 a + R(a)`` with ``R(t) = log2(-log2(1 - t) / t)`` a degree-5 minimax polynomial on
[0, 1/4] (absolute error 2^-23.5): no logarithm of ``1 - t`` (whose rounding would cost
2^-24 / |ln(1 - t)| relative) and no division.

**The race in differences.** The score (1) is never formed: ``scale * k_v`` can be huge (logits
[1e9, 1e9] give 1.4e9, whose float32 spacing of 128 swamps the noise, and the race would always
pick the first column), while only differences of keys matter. Each slot keeps its leader's key
``k_b`` and noise ``n_b = log2 X_b`` apart, and a new element ``v`` takes the lead when

    (k_v - k_b) * scale + n_b > n_v                                                            (2)

(one fused multiply-add; float64 logits keep their keys, the difference and the product in float64,
so their whole range works). At the end of the row the slots' leaders meet in the frame of the
largest leading key ``m``: ``s_b - m * scale = (k_b - m) * scale - n_b`` (3), and the extra class of
an MDLM step, untempered, enters that frame as ``log2 w - m * scale - n`` (``log2 w`` computed by
the caller in float64). Logits shifted by any constant, or masses multiplied by any positive constant,
give the same decisions. The temperature must lie in ``TEMPERATURE_RANGE`` = [1e-30, 1e30] (on both
backends): there ``scale`` is a finite normal float32, and a difference that overflows to +-inf in (2)
is one that decides the comparison anyway.

**Why the coarse grid does not bias the race.** Given the other classes' noise, class ``v`` wins with
probability ``P(E_v < p_v / M)``, ``M = max_{j != v} p_j / E_j``; with the others exact
``M = W / Exp(1)`` (``W`` their total mass) and the win probability is ``E[exp(-R E_v)]``,
``R = W / p_v``: the average over the cells of ``u`` of a smooth function. Quantizing ``u`` to cell
midpoints replaces that integral by the midpoint rule, whose relative error is about
``(h R)^2 / 24`` for cells of width ``h`` on the scale ``1/R`` over which the integrand varies. On
the coarse cells (``a >= 2^-16``, ``h = 2^-32``) the integrand is below ``exp(-2^-16 R)``, so their
error is below ``max_R (2^-32 R)^2 exp(-2^-16 R) / 24 = 2^-32 * 4 e^-2 / 24 = 5e-12`` for every ``R``;
a class that can only win from ``a < 2^-16`` (``1/R < 2^-16``) does so on the fine grid, with error
``(2^-64 R)^2 / 24``. (This bounds one quantized noise against exact others; with every class
quantized we have no proof beyond it, only the heuristic that what remains are ties between noises on
matching grid points, probability <= 2^-32 per pair: far below the rounding of float32 scores.)
Pointwise, the CDF of the quantized ``E`` is off by at most half a cell: 2^-65 on the fine grid, and
2^-33 on the coarse one, a relative 2^-17 of ``F`` or ``1 - F`` there, which averages out as above.

**What it guarantees.** Resolution: the smallest ``E`` is 2.7e-20 (the largest 45.05), against
6e-8 for the float32 race. A class of mass ratio ``r`` to the rest wins with probability
``r / (1 + r)`` times ``1 - (2^-64 / r)^2 / 24``: exact to a relative 1e-6 down to ``r ~ 1e-17``, to
1% at ``r ~ 1e-19``; the float32 race loses everything below ``r ~ 6e-8``. Arithmetic: with an
accurate float32 ``log2`` (the interpreter's numpy; the libdevice variant on CUDA)
``|error of log2 X| <= 2^-21 max(1, |log2 X|)`` (checked against float64 in
``tests/test_kernels_exactness.py``); with the hardware's ``lg2.approx`` (the default on CUDA; PTX ISA:
absolute error <= 2^-22 on [1/2, 2], relative <= 2^-22 elsewhere) it is
``<= 2^-19.4 + 2^-21.7 |log2 X|`` (the constant from ``log2 u`` at ``u`` near 3/4, the slope from
``log2 t`` for tiny ``t``). The comparisons add their float32 roundings: (2) decides as the exact race
would unless the two exact scores are within ``2^-24 (|(k_v - k_b) scale| + |n_v|)``, and (3) puts
each leader within ``2^-24 (|(k_b - m) scale| + |s_b - m scale|)`` of its exact score. Those bounds
do not grow with the keys: a comparison is only close when both sides lie in the noise's range,
``|log2 X| <= 64.5``, so each is at most ``2^-24 * 135 = 8e-6``, whatever the logits or the
temperature. An error ``delta`` in a comparison acts like a factor ``2^(+-delta)`` on a class's mass;
adding the noise's error for both classes, every win probability is right to a factor within
``1 +- 4e-5`` (the rarest winners, ``E ~ 2^-64``, hardware log2) and within ``1 +- 1e-5`` on the
draws whose ``E`` are above 3e-3 (almost all): biases far below anything a test can see, and never
the float32 race's truncation. (The extra class is compared in absolute terms, as it must be: add
``2^-23 (|log2 w| + |m scale|)`` for it.)

The kernel
----------
One program handles ``ROWS`` rows and walks along them in tiles of ``BLOCK = 4 Q`` columns: slot
``q`` of a tile holds four consecutive columns, the four words of one Philox call (counter
``(row, column // 4, 0, 0)``). It loads each input element once (bf16/fp16/fp32/fp64 logits, or
non-negative probabilities), makes its noise in registers, and keeps per slot its leader (key,
noise, column), reduced across the row once at the end (3). A tile that holds an element needing
refinement (6% of 2048-element tiles) computes the second stream (counter ``(row, column // 4, 2, 0)``) for the
whole tile; the test for it is one reduction per tile. It writes one int64 per row. Bytes moved:
``N * V * itemsize + 8 N``, a single read of the input: the sampler is a reduction. Its speed is set
by arithmetic: compiled for an H100 the main loop runs about 39 instructions per bf16 element (a
quarter of a Philox call, ~13; two hardware logarithms and a polynomial; the race (2), about 2.5 more
than a race on formed scores), where reading at full bandwidth leaves time for about 20;
``python -m kernels.bench --count-instructions`` prints the count. Input checks (NaN, +inf, negative
probabilities, rows with no mass) are made in the same pass on the key, in float32 (float64 for
float64 input) whatever the input dtype, so bf16 and fp16 are checked by the same operations on
every device; the kernel flags a bad row, and only that row is read again, after the pass, to name
the fault in the ValueError.

Without CUDA the same contract is served by the float64 reference of ``minimal/masked_fhs.py``; the
kernel itself also runs on CPU tensors through Triton's interpreter (``backend="triton"``), slowly,
which is how the tests check it on machines without a GPU.

Which GPUs
----------
The oldest GPU the kernel supports has compute capability ``MIN_CAPABILITY`` = 7.5 (Turing: the T4
of Colab's free tier). Every variant ``sample`` launches (``kernel_variants()``: four input dtypes,
logits or probabilities, with or without ``rows=`` and ``extra_mass=``) compiles, without a GPU, for
sm_75, sm_80 and sm_90 with Triton 3.9 (``python -m kernels.bench --compile-for 7.5,8.0,9.0``; the
tests compile them for 7.5). Below sm_80 there are no bf16 instructions and Triton widens bf16 input by
a 16-bit shift, which is exact. sm_70 (V100) compiles as well, but only through the CUDA 12.9
``ptxas`` that Triton still ships for targets below sm_90: CUDA 13's ``ptxas``, which Triton already
uses from sm_90 up, rejects sm_70 as a target ("Value 'sm_70' is not defined for option 'gpu-name'";
``TRITON_PTXAS_PATH=<triton>/backends/nvidia/bin/ptxas-blackwell python -m kernels.bench
--compile-for 7.5,7.0`` compiles all 24 for 7.5 and none for 7.0), so 7.0 is not a target this code
can count on; below 7.0 (P100, K80) Triton itself is unsupported (PyTorch's compiler refuses such
GPUs), whatever an old ``ptxas`` still builds. On a GPU below ``MIN_CAPABILITY``, ``backend="auto"``
warns once per device and uses the float64 reference; ``backend="triton"`` raises.
"""
from __future__ import annotations

import math
import numbers
import warnings

import torch

from minimal.masked_fhs import sample_categorical as reference_sample_categorical

try:  # Triton is optional: without it the float64 reference serves every call
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is absent
    triton = None
    tl = None

__all__ = ["sample", "triton_available", "interpreter_active", "kernel_supported", "RESOLUTION", "SEED_BITS",
           "TEMPERATURE_RANGE", "MIN_CAPABILITY"]

RESOLUTION = 2.0 ** -64  # the finest grid of the uniform behind each E (within 2^-16 of 0 or 1)

LOGIT_DTYPES = (torch.bfloat16, torch.float16, torch.float32, torch.float64)
SEED_BITS = 62  # seeds are ints in [0, 2^62), for both backends: the kernel's Philox key has 62 bits
TEMPERATURE_RANGE = (1e-30, 1e30)  # accepted T, both backends: log2(e) / T and T ln 2 stay normal float32
MIN_CAPABILITY = (7, 5)  # the oldest CUDA compute capability the kernel runs on (see "Which GPUs")
NO_MASS = "has no positive mass (all probabilities zero, or all logits -inf)"


def triton_available() -> bool:
    """True when Triton is importable (the kernel can run: compiled on CUDA, interpreted on CPU)."""
    return triton is not None


def kernel_supported(capability) -> bool:
    """True when a CUDA GPU of this compute capability runs the kernel (see "Which GPUs").

    Args:
        capability: ``(major, minor)``, as ``torch.cuda.get_device_capability`` returns it.

    Returns:
        ``capability >= MIN_CAPABILITY``.

    Raises:
        TypeError when ``capability`` is not a tuple of two ints.
    """
    if not (isinstance(capability, tuple) and len(capability) == 2
            and all(isinstance(c, int) and not isinstance(c, bool) for c in capability)):
        raise TypeError(f"capability must be a (major, minor) tuple of ints, got {capability!r}")
    return capability >= MIN_CAPABILITY


def _capability(device: torch.device):
    """The compute capability of a CUDA device, None for any other device. (The one place ``sample``
    asks the hardware: tests replace it to play an old GPU with CPU tensors.)"""
    return tuple(torch.cuda.get_device_capability(device)) if device.type == "cuda" else None


_WARNED = set()  # devices already told that they are too old for the kernel


def _use_kernel(backend: str, device: torch.device) -> bool:
    """The backend decision of ``sample`` for an input on ``device`` (``backend`` already checked).

    ``"torch"``: the reference. Off CUDA: the kernel only for ``"triton"`` (Triton's interpreter).
    On a CUDA GPU of ``MIN_CAPABILITY`` or newer: the kernel, with ``"auto"`` when Triton is installed.
    On an older GPU: ``"auto"`` warns (once per device) and takes the reference; ``"triton"`` raises a
    RuntimeError, since the kernel was never built for it.
    """
    if backend == "torch":
        return False
    capability = _capability(device)
    if capability is None:
        return backend == "triton"
    if triton is None:  # only "auto" gets here: check_backend rejects "triton" without the package
        return False
    if kernel_supported(capability):
        return True
    found, needed = ".".join(map(str, capability)), ".".join(map(str, MIN_CAPABILITY))
    if backend == "triton":
        raise RuntimeError(f"backend='triton' needs a GPU of compute capability >= {needed}; {device} has "
                           f"{found}. Use backend='auto' or 'torch' (the float64 reference) on this GPU")
    if device not in _WARNED:
        _WARNED.add(device)
        warnings.warn(f"{device} has compute capability {found}, below the {needed} the Triton kernel "
                      f"needs (kernels.categorical.MIN_CAPABILITY): sampling with the float64 torch "
                      f"reference instead (exact, but slower)", stacklevel=3)
    return False


# ------------------------------------------------------------------------------------------------
# the Triton kernel
# ------------------------------------------------------------------------------------------------
FINE_CELLS = 1 << 16  # the cells (of 2^32) next to 0 and next to 1 that get 32 more bits: a < 2^-16

if triton is not None:
    _FINE = tl.constexpr(FINE_CELLS)

    @triton.jit
    def _philox(c0, c1, c2, c3, k0, k1, N_ROUNDS: tl.constexpr):
        """Philox-4x32 (Salmon et al., SC 2011): 128 random bits from a 128-bit counter and a key.
        All arguments uint32 tensors of one shape; returns four."""
        for _ in tl.static_range(N_ROUNDS):
            _c0 = c0
            _c2 = c2
            c0 = tl.umulhi(0xCD9E8D57, _c2) ^ c1 ^ k0
            c2 = tl.umulhi(0xD2511F53, _c0) ^ c3 ^ k1
            c1 = tl.mul(0xCD9E8D57, _c2, sanitize_overflow=False)
            c3 = tl.mul(0xD2511F53, _c0, sanitize_overflow=False)
            k0 = tl.add(k0, 0x9E3779B9, sanitize_overflow=False)  # the Weyl sequence of the key
            k1 = tl.add(k1, 0xBB67AE85, sanitize_overflow=False)
        return c0, c1, c2, c3

    @triton.jit
    def _log2(x, FAST: tl.constexpr):
        """log2 of float32 ``x``: the accurate library function, or (FAST, CUDA only) the hardware's
        lg2.approx, one instruction, absolute error <= 2^-22 on [1/2, 2] and relative error <= 2^-22
        elsewhere (PTX ISA). It flushes subnormal inputs to zero (.ftz): used for the noise only,
        whose arguments are >= 2^-66."""
        if FAST:
            return tl.inline_asm_elementwise("lg2.approx.ftz.f32 $0, $1;", "=f,f", [x], dtype=tl.float32,
                                             is_pure=True, pack=1)
        else:
            return tl.log2(x)

    @triton.jit
    def _fold(w):
        """A 32-bit word w names the cell of u = (w + 1/2) 2^-32 in (0, 1). Returns (lower, k): on the
        lower region u > 3/4 the cell is counted from 1, k = ~w = 2^32 - 1 - w (exact), so that in
        both regions a = (k + 1/2) 2^-32 is the small end: u (upper region) or t = 1 - u (lower)."""
        lower = w >= 0xC0000000
        return lower, tl.where(lower, ~w, w)

    @triton.jit
    def _coarse(k):
        """a = (k + 1/2) 2^-32: the midpoint of cell k."""
        return k.to(tl.float32) * 2.3283064365386963e-10 + 1.1641532182693481e-10

    @triton.jit
    def _fine(k, z, lower):
        """a = (k 2^32 + l + 1/2) 2^-64, l = z (counted from the other end too on the lower region):
        the midpoint of one of the 2^32 sub-cells of cell k."""
        l = tl.where(lower, ~z, z)
        return k.to(tl.float32) * 2.3283064365386963e-10 + (l.to(tl.float32) + 0.5) * 5.421010862427522e-20

    @triton.jit
    def _log2_noise(a, lower, FAST: tl.constexpr):
        """log2 X with X = -log2 u = E / ln 2 (E ~ Exp(1)), from a = u on the upper region (u < 3/4)
        or a = t = 1 - u on the lower region (t <= 1/4)."""
        l1 = _log2(a, FAST)  # log2 u, or log2 t
        # lower region: log2 X = log2 t + R(t), R(t) = log2(-log2(1 - t) / t) by a degree-5 minimax
        # polynomial (absolute error 2^-23.5 on [0, 1/4]): no log of 1 - t and no division
        r = 0.5287663340568542 + a * (0.7213531136512756 + a * (0.30031004548072815 + a * (
            0.1844150274991989 + a * (0.0965583473443985 + a * 0.1852394938468933))))
        if FAST:  # upper region: log2 X = log2(-log2 u), the sign flip folded into the operand
            l2 = tl.inline_asm_elementwise("{.reg .f32 t; neg.f32 t, $1; lg2.approx.ftz.f32 $0, t;}", "=f,f", [l1],
                                           dtype=tl.float32, is_pure=True, pack=1)
        else:
            l2 = tl.log2(-l1)
        return tl.where(lower, l1 + r, l2)

    @triton.jit
    def _key(x, IS_PROBS: tl.constexpr):
        """The quantity the race compares for one input element: the logit (float32, or float64 for
        float64 logits, whose range float32 cannot hold) or log2 of the probability (float32; float64
        masses take their log2 in float64 first, so tiny and huge ones keep their exponent). Every
        input check reads the key, not the raw element: the same float32 (float64) operations for
        every input dtype, on every device. NaN, and negative probabilities (log2 < 0 is NaN), give NaN;
        +inf gives +inf; a zero probability or a -inf logit gives -inf (mass 0)."""
        if IS_PROBS:
            if x.dtype == tl.float64:
                return tl.log2(x).to(tl.float32)
            else:
                return tl.log2(x.to(tl.float32))
        else:
            if x.dtype == tl.float64:
                return x
            else:
                return x.to(tl.float32)

    @triton.jit
    def _compete(x, a, lower, tag, kb, nb, best_c, kmax, scale, IS_PROBS: tl.constexpr, FAST: tl.constexpr):
        """One element per slot (row, q) enters the race against the slot's leader so far, whose key
        ``kb`` and noise ``nb`` are kept apart: the element wins when ``(k - kb) scale + nb > n`` (2),
        which is ``s > s_b`` for the scores (1) without ever forming a score. Only differences of keys
        enter, so the decision depends on neither a shift of the logits nor a scale of the masses. Also
        keeps ``tag`` (the column minus 4q) of the leader, and the keys' NaN-propagating max."""
        k = _key(x, IS_PROBS)
        kmax = tl.maximum(kmax, k, propagate_nan=tl.PropagateNan.ALL)  # NaN sticks; else +inf shows
        n = _log2_noise(a, lower, FAST)  # log2 X = log2 E_v - log2 ln 2
        if k.dtype == tl.float64:  # float64 logits: the difference and its scaling in float64 (2)
            lhs = ((k - kb) * scale + nb).to(tl.float32)
        else:
            lhs = tl.fma(k - kb, scale, nb)  # (2), one rounding; a first finite key beats kb = -inf
        take = lhs > n  # strict; NaN (NaN input, or -inf - -inf) never wins; ties keep the earlier column
        return tl.where(take, k, kb), tl.where(take, n, nb), tl.where(take, tag, best_c), kmax

    @triton.jit
    def _words(bits_row, ctr, ctr_row, zero, k0, k1, c, n_valid, STREAM: tl.constexpr,
               BITS_FROM_MEMORY: tl.constexpr, N_ROUNDS: tl.constexpr, MASKED: tl.constexpr):
        """32 random bits for each column c + 4q + j of each slot q: word j of the Philox call with
        counter (row, c/4 + q, STREAM, 0), or (tests) word STREAM/2 of bits[row, column]."""
        if BITS_FROM_MEMORY:  # [n_rows, V(+1), 2] int32 (hi, lo): hi for stream 0, lo for stream 2
            p = bits_row + 2 * c + STREAM // 2
            if MASKED:
                w0 = tl.load(p, mask=n_valid > 0, other=0).to(tl.uint32, bitcast=True)
                w1 = tl.load(p + 2, mask=n_valid > 1, other=0).to(tl.uint32, bitcast=True)
                w2 = tl.load(p + 4, mask=n_valid > 2, other=0).to(tl.uint32, bitcast=True)
                w3 = tl.load(p + 6, mask=n_valid > 3, other=0).to(tl.uint32, bitcast=True)
            else:
                w0 = tl.load(p).to(tl.uint32, bitcast=True)
                w1 = tl.load(p + 2).to(tl.uint32, bitcast=True)
                w2 = tl.load(p + 4).to(tl.uint32, bitcast=True)
                w3 = tl.load(p + 6).to(tl.uint32, bitcast=True)
        else:
            w0, w1, w2, w3 = _philox(ctr_row, ctr, zero + STREAM, zero, k0, k1, N_ROUNDS)
        return w0, w1, w2, w3

    @triton.jit
    def _race_tile(row_base, bits_row, c, V, quad, ctr_row, zero, k0, k1, scale,
                   kb, nb, best_c, kmax, IS_PROBS: tl.constexpr, BITS_FROM_MEMORY: tl.constexpr,
                   N_ROUNDS: tl.constexpr, FAST: tl.constexpr, MASKED: tl.constexpr):
        """The columns c .. c + 4Q - 1 of each row enter the race; MASKED for the last, cut tile."""
        # --- one read of the input: a load per column of the slot, laid out like the random words, so
        # that no thread needs another's (a row of odd length starts only 2-byte aligned anyway) ------
        col0 = c + 4 * quad[None, :]  # [1, Q]: the first column of each slot
        xp = row_base + col0
        n_valid = V - col0  # columns of the slot inside the row (>= 4 except in the last tile)
        if MASKED:
            nil = 0.0 if IS_PROBS else float("-inf")  # masses 0: they never win
            x0 = tl.load(xp, mask=n_valid > 0, other=nil)
            x1 = tl.load(xp + 1, mask=n_valid > 1, other=nil)
            x2 = tl.load(xp + 2, mask=n_valid > 2, other=nil)
            x3 = tl.load(xp + 3, mask=n_valid > 3, other=nil)
        else:
            x0 = tl.load(xp)
            x1 = tl.load(xp + 1)
            x2 = tl.load(xp + 2)
            x3 = tl.load(xp + 3)

        # --- 32 random bits per element: one Philox call for the four columns of a slot -------------
        ctr = zero + (c // 4 + quad).to(tl.uint32)[None, :]
        w0, w1, w2, w3 = _words(bits_row, ctr, ctr_row, zero, k0, k1, c, n_valid, 0, BITS_FROM_MEMORY,
                                N_ROUNDS, MASKED)
        lower0, h0 = _fold(w0)
        lower1, h1 = _fold(w1)
        lower2, h2 = _fold(w2)
        lower3, h3 = _fold(w3)
        a0 = _coarse(h0)
        a1 = _coarse(h1)
        a2 = _coarse(h2)
        a3 = _coarse(h3)

        # --- 32 more bits where a < 2^-16 (probability 2^-15 per element, 6% of 2048-element tiles):
        # computed only in the tiles that hold such an element; the whole tile branches ---------------
        if tl.min(tl.minimum(tl.minimum(h0, h1), tl.minimum(h2, h3))) < _FINE:
            z0, z1, z2, z3 = _words(bits_row, ctr, ctr_row, zero, k0, k1, c, n_valid, 2, BITS_FROM_MEMORY,
                                    N_ROUNDS, MASKED)  # stream 2: stream 1 is the extra class's
            a0 = tl.where(h0 < _FINE, _fine(h0, z0, lower0), a0)
            a1 = tl.where(h1 < _FINE, _fine(h1, z1, lower1), a1)
            a2 = tl.where(h2 < _FINE, _fine(h2, z2, lower2), a2)
            a3 = tl.where(h3 < _FINE, _fine(h3, z3, lower3), a3)

        # --- the race, in registers: a running max per slot (no exchange between threads) -----------
        kb, nb, best_c, kmax = _compete(x0, a0, lower0, c, kb, nb, best_c, kmax, scale, IS_PROBS, FAST)
        kb, nb, best_c, kmax = _compete(x1, a1, lower1, c + 1, kb, nb, best_c, kmax, scale, IS_PROBS, FAST)
        kb, nb, best_c, kmax = _compete(x2, a2, lower2, c + 2, kb, nb, best_c, kmax, scale, IS_PROBS, FAST)
        kb, nb, best_c, kmax = _compete(x3, a3, lower3, c + 3, kb, nb, best_c, kmax, scale, IS_PROBS, FAST)
        return kb, nb, best_c, kmax

    @triton.jit(do_not_specialize=["key0", "key1"])
    def _race_kernel(
        x_ptr, row_index_ptr, extra_ptr, bits_ptr, out_ptr,
        n_rows, V, stride_x, stride_bits,
        key0, key1, scale,
        IS_PROBS: tl.constexpr, HAS_ROW_INDEX: tl.constexpr, HAS_EXTRA: tl.constexpr,
        BITS_FROM_MEMORY: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr,
        N_ROUNDS: tl.constexpr, FAST_LOG2: tl.constexpr, KEY_F64: tl.constexpr,
    ):
        """One exponential race per row: out[r] = argmax_v s_v with s_v = scale * k_v - log2 X_v (1).

        ``k_v`` is the logit (scale = log2(e) / T) or log2 of the probability (scale = 1 / T); scores
        are never formed, only differences (2). ``KEY_F64``: float64 logits, kept in float64. The
        extra class (``extra_ptr``) arrives as log2 of its mass, computed in float64 by the caller.
        Column j takes word j % 4 of the Philox call with counter (row, j // 4, 0, 0) and, when it
        needs them, 32 more bits from word j % 4 of counter (row, j // 4, 2, 0); key = (key0, key1).
        (The varying word second: then the first rounds' products of row and key are loop-invariant.)
        """
        Q: tl.constexpr = BLOCK // 4  # slots per row: slot q holds columns c + 4q .. c + 4q + 3
        pid = tl.program_id(0)
        r = pid * ROWS + tl.arange(0, ROWS)  # [ROWS] output rows
        row_ok = r < n_rows
        r = tl.where(row_ok, r, 0)  # rows past the end redo row 0 (not stored): no masks in the loop
        if HAS_ROW_INDEX:
            src = tl.load(row_index_ptr + r).to(tl.int64)
        else:
            src = r.to(tl.int64)
        row_base = x_ptr + src[:, None] * stride_x  # [ROWS, 1]
        zero = tl.zeros([ROWS, Q], tl.uint32)
        k0 = (zero + key0).to(tl.uint32)  # written to survive Triton's specialisation of ints
        k1 = (zero + key1).to(tl.uint32)
        ctr_row = zero + r.to(tl.uint32)[:, None]
        quad = tl.arange(0, Q)
        bits_row = bits_ptr + r.to(tl.int64)[:, None] * stride_bits + 8 * quad[None, :]  # (hi, lo) of 4q

        key_ty = tl.float64 if KEY_F64 else tl.float32
        kb = tl.full([ROWS, Q], float("-inf"), key_ty)  # per slot: the leader's key (-inf: none yet)
        nb = tl.zeros([ROWS, Q], tl.float32)  # the leader's noise log2 X
        best_c = tl.zeros([ROWS, Q], tl.int32)  # the leader's column, minus 4q
        kmax = tl.full([ROWS, Q], float("-inf"), key_ty)  # NaN-propagating max of the keys: the checks
        n_full = V - V % BLOCK
        for c in range(0, n_full, BLOCK):  # full tiles: no masks
            kb, nb, best_c, kmax = _race_tile(row_base, bits_row, c, V, quad, ctr_row, zero, k0, k1, scale,
                                              kb, nb, best_c, kmax, IS_PROBS, BITS_FROM_MEMORY,
                                              N_ROUNDS, FAST_LOG2, False)
        if n_full < V:  # the last tile, cut by the end of the row
            kb, nb, best_c, kmax = _race_tile(row_base, bits_row, n_full, V, quad, ctr_row, zero, k0, k1,
                                              scale, kb, nb, best_c, kmax, IS_PROBS, BITS_FROM_MEMORY,
                                              N_ROUNDS, FAST_LOG2, True)

        # --- once per row: the slots' leaders race in the frame of the largest leading key m (3) -----
        m = tl.max(kb, axis=1)  # [ROWS]; -inf: no positive mass; +inf: the row is bad anyway
        m = tl.where((m > float("-inf")) & (m < float("inf")), m, 0.0)
        if KEY_F64:
            s = ((kb - m[:, None]) * scale - nb).to(tl.float32)
        else:
            s = tl.fma(kb - m[:, None], scale, -nb)  # (3): the slot's score minus m * scale
        top = tl.max(s, axis=1)
        col = best_c + 4 * quad[None, :]
        best_idx = tl.min(tl.where(s == top[:, None], col, 2147483647), axis=1)
        best_idx = tl.where(top > float("-inf"), best_idx, -1)  # -1: no positive mass
        # NaN (or a negative probability) or +inf among the keys: the row is bad, the caller says why
        bad = tl.max(((kmax != kmax) | (kmax == float("inf"))).to(tl.int32), axis=1)

        if HAS_EXTRA:  # one more class, index V, with mass extra[r] (not tempered)
            if BITS_FROM_MEMORY:
                bptr1 = bits_ptr + r.to(tl.int64) * stride_bits + 2 * V
                hi1 = tl.load(bptr1).to(tl.uint32, bitcast=True)
                lo1 = tl.load(bptr1 + 1).to(tl.uint32, bitcast=True)
            else:  # its own Philox stream: counter (row, 0, 1, 0)
                z = r.to(tl.uint32) * 0
                hi1, lo1, _, _ = _philox(r.to(tl.uint32), z, z + 1, z, (z + key0).to(tl.uint32),
                                         (z + key1).to(tl.uint32), N_ROUNDS)
            lower_e, h_e = _fold(hi1)  # one element per row: always all 64 bits (hi1, lo1)
            lw = tl.load(extra_ptr + r)  # log2 of the extra mass: NaN for NaN or < 0, -inf for 0
            bad_e = (lw != lw) | (lw == float("inf"))
            # its score in the frame of (3), untempered: log2 w - m * scale - log2 X
            s1 = tl.fma(-m, scale, lw) - _log2_noise(_fine(h_e, lo1, lower_e), lower_e, False)
            s1 = tl.where(bad_e, float("-inf"), s1)
            bad = tl.maximum(bad, bad_e.to(tl.int32))
            best_idx = tl.where(s1 > top, V, best_idx)

        result = tl.where(bad > 0, -2, best_idx)  # -1: no mass; -2: NaN, +inf or a negative mass
        tl.store(out_ptr + r, result.to(tl.int64), mask=row_ok)


def interpreter_active() -> bool:
    """True when the kernel runs through Triton's interpreter (``TRITON_INTERPRET=1`` was set before
    triton was imported): then it accepts CPU tensors."""
    if triton is None:
        return False
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_race_kernel, InterpretedFunction)


def _tile(V: int, M: int, device: torch.device):
    """(ROWS, BLOCK, num_warps): a tile of ROWS x BLOCK elements per loop iteration."""
    block = 1 << max(0, math.ceil(math.log2(max(1, V))))  # next power of two >= V
    block = max(8, min(block, 2048 if device.type == "cuda" else 32768))
    if device.type == "cuda":
        rows = max(1, 2048 // block)  # ~2048 elements per iteration: 16 per thread
        warps = 4
    else:  # the interpreter pays per program: give each one many rows
        rows = max(1, 262144 // block)
        warps = 1
    rows = min(rows, 1 << max(0, math.ceil(math.log2(max(1, M)))))  # no tile taller than the batch
    return rows, block, warps


def _split_seed(seed: int):
    """A seed in [0, 2^62) -> two 31-bit Philox key words (the caller has checked the range)."""
    return seed & 0x7FFFFFFF, seed >> 31


def _launch(x, row_index, extra, *, is_probs, scale, seed, bits=None, n_rounds=10, fast_log2=True):
    """Run the kernel. x [N, V] (unit stride along V), row_index [M] int64 or None, extra [M] float32
    log2 of the extra class's mass (computed in float64) or None, bits [M, V(+1), 2] int32 or None.
    Returns int64 [M]: -1 for a row with no mass, -2 for a row with NaN, +inf or a negative mass.
    ``n_rounds`` and ``fast_log2`` (the hardware log2 for the noise; CUDA only, the interpreter always
    uses numpy's) are for benchmarks; ``sample`` uses the defaults."""
    V = x.shape[1]
    M = row_index.shape[0] if row_index is not None else x.shape[0]
    out = torch.empty(M, dtype=torch.int64, device=x.device)
    if M == 0:
        return out
    rows, block, warps = _tile(V, M, x.device)
    key0, key1 = _split_seed(seed)
    dummy = out  # any tensor: unused pointers are never read
    if x.device.type != "cuda" and not interpreter_active():
        raise RuntimeError("the Triton kernel needs CUDA tensors; to run it on CPU tensors, set "
                           "TRITON_INTERPRET=1 in the environment before triton is imported")
    kernel = _race_kernel
    grid = (triton.cdiv(M, rows),)
    extra_kw = {"num_warps": warps} if x.device.type == "cuda" else {}
    kernel[grid](
        x, row_index if row_index is not None else dummy, extra if extra is not None else dummy,
        bits if bits is not None else dummy, out,
        M, V, x.stride(0), bits.stride(0) if bits is not None else 0,
        key0, key1, float(scale),
        **_constexprs(x.dtype, is_probs=is_probs, has_row_index=row_index is not None, has_extra=extra is not None,
                      bits=bits is not None, rows=rows, block=block, n_rounds=n_rounds,
                      fast_log2=fast_log2 and x.device.type == "cuda"),
        **extra_kw,
    )
    return out


def _constexprs(dtype, *, is_probs, has_row_index, has_extra, bits, rows, block, n_rounds, fast_log2):
    """The compile-time arguments of a launch: one compiled variant of the kernel per distinct dict.
    Shared by ``_launch`` and ``kernel_variants``, so that the variants compiled without a GPU are the
    ones launched."""
    return {"IS_PROBS": is_probs, "HAS_ROW_INDEX": has_row_index, "HAS_EXTRA": has_extra, "BITS_FROM_MEMORY": bits,
            "ROWS": rows, "BLOCK": block, "N_ROUNDS": n_rounds, "FAST_LOG2": fast_log2,
            "KEY_F64": not is_probs and dtype == torch.float64}


_POINTER_TYPES = {torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.float32: "*fp32", torch.float64: "*fp64"}


def kernel_signature(dtype: torch.dtype) -> dict:
    """The argument types of ``_race_kernel`` for input of ``dtype``, as ``triton.compile`` takes them
    (with ``triton.compiler.ASTSource``) to build the kernel for a GPU that need not be present.

    Args:
        dtype: one of ``LOGIT_DTYPES``.

    Returns:
        ``{argument name: type}``: pointers as ``"*bf16"``..., ints ``"i32"``, compile-time ``"constexpr"``.
    """
    if dtype not in _POINTER_TYPES:
        raise TypeError(f"dtype must be bfloat16, float16, float32 or float64, got {dtype}")
    sig = {"x_ptr": _POINTER_TYPES[dtype], "row_index_ptr": "*i64", "extra_ptr": "*fp32", "bits_ptr": "*i32",
           "out_ptr": "*i64", "n_rows": "i32", "V": "i32", "stride_x": "i32", "stride_bits": "i32", "key0": "i32",
           "key1": "i32", "scale": "fp32"}
    return sig | {name: "constexpr" for name in _constexprs(dtype, is_probs=False, has_row_index=False,
                                                             has_extra=False, bits=False, rows=1, block=8,
                                                             n_rounds=10, fast_log2=True)}


def kernel_variants(vocab: int = 50257, n_rows: int = 8192):
    """Every variant of the kernel that ``sample`` launches on CUDA for a batch of ``n_rows`` rows of
    ``vocab`` columns: each input dtype, as logits (with and without ``rows=``) and as probabilities
    (with and without ``rows=``, with and without ``extra_mass=``), 24 in all, with the tile ``_tile``
    picks for that shape (the tile sets the layout, not which instructions are needed).

    Returns:
        A list of ``(label, signature, constexprs, num_warps)``: what ``triton.compile`` needs to build
        each one for a target GPU.
    """
    rows, block, warps = _tile(vocab, n_rows, torch.device("cuda"))
    out = []
    for dtype in LOGIT_DTYPES:
        for is_probs in (False, True):
            for has_row_index in (False, True):
                for has_extra in ((False, True) if is_probs else (False,)):  # extra_mass needs probs=
                    label = " ".join([str(dtype).removeprefix("torch."), "probs" if is_probs else "logits"]
                                     + ["rows="] * has_row_index + ["extra_mass="] * has_extra)
                    consts = _constexprs(dtype, is_probs=is_probs, has_row_index=has_row_index,
                                         has_extra=has_extra, bits=False, rows=rows, block=block, n_rounds=10,
                                         fast_log2=True)
                    out.append((label, kernel_signature(dtype), consts, warps))
    return out


# ------------------------------------------------------------------------------------------------
# the public function
# ------------------------------------------------------------------------------------------------
def _check_inputs(logits, probs, temperature, generator, seed, extra_mass, rows, backend):
    if (logits is None) == (probs is None):
        raise ValueError("pass exactly one of logits= or probs= (a tensor of shape [N, V])")
    name = "logits" if logits is not None else "probs"
    x = logits if logits is not None else probs
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [N, V], got {type(x).__name__}")
    allowed = LOGIT_DTYPES
    if x.dtype not in allowed:
        raise TypeError(f"{name} must have dtype bfloat16, float16, float32 or float64, got {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape [N, V], got {tuple(x.shape)}")
    if x.shape[1] < 1:
        raise ValueError(f"{name} has empty rows (V = 0): there is nothing to sample, shape {tuple(x.shape)}")
    check_temperature(temperature)
    check_seed_and_generator(seed, generator, x.device)
    check_backend(backend)
    if rows is not None:
        if not isinstance(rows, torch.Tensor) or rows.dtype not in (torch.int64, torch.int32):
            raise TypeError("rows must be an int64 tensor of shape [M] (indices into the N rows)")
        if rows.dim() != 1 or rows.device != x.device:
            raise ValueError(f"rows must have shape [M] on {x.device}, got {tuple(rows.shape)} on {rows.device}")
        if rows.numel() and (rows.min() < 0 or rows.max() >= x.shape[0]):
            raise ValueError(f"rows must index 0..{x.shape[0] - 1}, got values in "
                             f"[{rows.min().item()}, {rows.max().item()}]")
    M = rows.shape[0] if rows is not None else x.shape[0]
    if extra_mass is not None:
        if probs is None:
            raise ValueError("extra_mass needs probs= (a mass beside unnormalised probabilities); got logits=")
        if isinstance(extra_mass, torch.Tensor):
            if not extra_mass.dtype.is_floating_point or extra_mass.shape != (M,):
                raise ValueError(f"extra_mass must be a float or a float tensor of shape [{M}], got "
                                 f"{extra_mass.dtype} {tuple(extra_mass.shape)}")
            if extra_mass.device != x.device:
                raise ValueError(f"extra_mass is on {extra_mass.device} but probs is on {x.device}")
        elif isinstance(extra_mass, bool) or not isinstance(extra_mass, numbers.Real):
            raise TypeError(f"extra_mass must be a float or a tensor of shape [{M}], got {type(extra_mass).__name__}")
        elif not (math.isfinite(extra_mass) and extra_mass >= 0):
            raise ValueError(f"extra_mass must be finite and >= 0, got {extra_mass}")
    return name, x, M


def check_temperature(temperature) -> None:
    """A float in ``TEMPERATURE_RANGE`` (shared with kernels.fhs)."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a positive float, got {type(temperature).__name__}")
    lo, hi = TEMPERATURE_RANGE
    if not lo <= temperature <= hi:
        raise ValueError(f"temperature must lie in [{lo:g}, {hi:g}] (use argmax for T = 0), got {temperature}")


def check_backend(backend) -> None:
    """'auto', 'triton' (needs the triton package) or 'torch' (shared with kernels.fhs)."""
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    if backend == "triton" and triton is None:
        raise RuntimeError("backend='triton' needs the triton package (pip install triton)")


def check_seed_and_generator(seed, generator, device: torch.device) -> None:
    """The randomness arguments of every sampler in kernels/ (shared with kernels.fhs): ``seed`` an
    int in [0, 2^62) (the same range for both backends) or None; ``generator`` a ``torch.Generator``
    on ``device``'s type or None; not both. TypeError for a wrong type, ValueError for a wrong value."""
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed must be an int in [0, 2**{SEED_BITS}) or None, got {type(seed).__name__}")
        if not 0 <= seed < 1 << SEED_BITS:
            raise ValueError(f"seed must be an int in [0, 2**{SEED_BITS}), got {seed}")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        if generator.device.type != torch.device(device).type:
            raise ValueError(f"generator is on {generator.device} but the input is on {device}")
        if seed is not None:
            raise ValueError("pass at most one of generator= and seed=")


def _seed_from(generator, seed, device):
    if seed is not None:
        return int(seed)
    # one draw from the given (or the default) generator keys the Philox stream
    g_dev = generator.device if generator is not None else torch.device("cpu")
    return int(torch.randint(0, 1 << SEED_BITS, (1,), generator=generator, device=g_dev).item())


def _raise_bad_rows(codes, name, x, row_index, extra):
    """After the kernel: raise a ValueError naming the first row it flagged. It flags, in its one pass,
    rows with no mass (-1) and rows with NaN, +inf or a negative mass (-2); only then is that one row
    read again, here, to say which."""
    bad = (codes < 0).nonzero()
    if not bad.numel():
        return
    i = int(bad[0, 0])
    src = int(row_index[i]) if row_index is not None else i
    e = None if extra is None else extra[i:i + 1].double().exp2()  # the mass back from its log2
    _diagnose(name, x[src:src + 1].double(), e, row=i)
    raise ValueError(f"{name} row {i} {NO_MASS}")  # pragma: no cover - _diagnose found it first


def _diagnose(name, xd, e, row=0):
    """Raise a ValueError naming the first bad row of xd [M, V] (float64) or of e [M] (row numbers
    start at ``row``)."""
    checks = [(torch.isnan(xd).any(1), "contains NaN"), ((xd == float("inf")).any(1), "contains +inf")]
    if name == "probs":
        checks.append(((xd < 0).any(1), "contains a negative probability"))
    for bad, what in checks:
        if bad.any():
            raise ValueError(f"{name} row {row + int(bad.nonzero()[0, 0])} {what}")
    if e is not None and (torch.isnan(e).any() or (e < 0).any() or (e == float("inf")).any()):
        raise ValueError("extra_mass must be finite and >= 0")
    alive = (xd > 0).any(1) if name == "probs" else (xd > float("-inf")).any(1)
    if e is not None:
        alive |= e > 0
    if not alive.all():
        raise ValueError(f"{name} row {row + int((~alive).nonzero()[0, 0])} {NO_MASS}")


def _tempered(logw, temperature, e):
    """exp((logw - m) / T) beside the untempered extra mass e [M] (or None), divided by the largest:
    m, the row max of logw, is taken out *before* the division, so neither a large |logw| nor a small T
    can overflow (a difference too large for float64 is decisive, and its -inf is right). The extra
    class's log mass in the same frame is log e - m / T. Float64, [M, V(+1)]."""
    top = logw.amax(dim=1, keepdim=True)
    m = torch.where(torch.isfinite(top), top, 0.0)
    logw = logw - m if temperature == 1.0 else (logw - m) / temperature
    if e is not None:
        logw = torch.cat([logw, torch.log(e)[:, None] - m / temperature], dim=1)
        top = logw.amax(dim=1, keepdim=True)
        rel = torch.where(logw == top, 0.0, logw - top)  # a +inf leader (the extra class) at 0, not NaN
        logw = torch.where(top > float("-inf"), rel, logw)
    return torch.exp(logw)


def _reference(name, x, temperature, generator, seed, extra, rows):
    """The float64 reference: temper, then minimal's exponential race (eq. 4). Input checks run only
    when the race rejects its input, to name the bad row without extra passes in the normal case."""
    if rows is not None:
        x = x[rows]
    xd = x.double()
    e = None
    if extra is not None:
        e = extra.double() if isinstance(extra, torch.Tensor) else torch.full((x.shape[0],), float(extra),
                                                                              dtype=torch.float64)
        e = e.to(x.device)
    if x.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=x.device)
    if name == "probs" and temperature == 1.0:  # the masses as they are
        w = xd if e is None else torch.cat([xd, e[:, None]], dim=1)
    else:  # tempered masses, through logs, the leader at mass 1
        with torch.no_grad():
            w = _tempered(xd if name == "logits" else torch.log(xd), temperature, e)
    if seed is not None:
        generator = torch.Generator(device=x.device).manual_seed(seed)
    try:
        return reference_sample_categorical(w, dtype=torch.float64, generator=generator)
    except ValueError:
        _diagnose(name, xd, e)
        raise


def sample(logits: torch.Tensor | None = None, probs: torch.Tensor | None = None, *, temperature: float = 1.0,
           generator: torch.Generator | None = None, seed: int | None = None,
           extra_mass: float | torch.Tensor | None = None, rows: torch.Tensor | None = None,
           backend: str = "auto") -> torch.Tensor:
    """Draw one index per row, exactly, from ``softmax(logits / T)`` or from ``probs ** (1 / T)``.

    Args:
        logits: [N, V] bfloat16, float16, float32 or float64; ``-inf`` means mass 0. Or:
        probs: [N, V] non-negative masses, not necessarily normalised (same dtypes).
        temperature: ``T`` in ``TEMPERATURE_RANGE`` = [1e-30, 1e30]; class ``v`` gets mass
            ``exp(logit_v / T)`` or ``p_v ** (1 / T)``. Only differences of logits (ratios of masses) count:
            rows far from 0 or near the dtype's limits are sampled as exactly as any others.
        generator: a ``torch.Generator`` on the input's device (one draw from it seeds the kernel), or
        seed: an int in ``[0, 2^62)`` (``SEED_BITS``, both backends; ValueError outside) that fixes the
            draw (it keys the kernel's Philox stream, or seeds the reference's generator). Same seed and
            backend, same result. The kernel's stream depends on neither device nor tile size, so
            compiled on CUDA and interpreted on CPU it should give the same indices (up to near-ties
            within the last bits of the logarithms or of (2), which tiles of another size may order
            differently); the float64 reference draws differently.
        extra_mass: with ``probs`` only: one more class, index ``V``, with this (untempered) mass beside
            the row's masses; a float or a tensor [M]. This is the mask class of an MDLM step (eq. 2 of
            ``minimal/masked_fhs.py``) without building a [M, V + 1] copy.
        rows: optional int64 [M]: sample only these rows of the input (read in place, no gather copy).
        backend: ``"auto"`` (the Triton kernel for CUDA tensors when Triton is installed and the GPU
            is supported, the float64 reference otherwise), ``"triton"`` (the kernel; CPU tensors run it
            through Triton's interpreter, slowly, when ``TRITON_INTERPRET=1`` was set before triton was
            imported) or ``"torch"`` (the float64 reference). The oldest GPU the kernel supports:
            compute capability ``MIN_CAPABILITY`` = 7.5 (a T4). On an older GPU ``"auto"`` warns once
            and uses the reference, and ``"triton"`` raises a RuntimeError.

    Returns:
        int64 [M] (M = N without ``rows``) on the input's device: index ``v`` with probability
        ``mass_v / sum(mass)``; ``V`` for the extra class. An empty batch (``M = 0``) gives an empty
        result.

    Raises:
        TypeError / ValueError for a wrong type, dtype, shape or argument; RuntimeError for
        ``backend="triton"`` on a GPU below ``MIN_CAPABILITY`` (or without triton); ValueError naming the row
        for NaN, +inf, negative probabilities, or a row with no positive mass (the kernel finds these in
        its single pass and the error is raised right after it).
    """
    name, x, M = _check_inputs(logits, probs, temperature, generator, seed, extra_mass, rows, backend)
    if not _use_kernel(backend, x.device):
        return _reference(name, x, temperature, generator, seed, extra_mass, rows)

    if x.stride(1) != 1:
        x = x.contiguous()
    row_index = rows.to(torch.int64).contiguous() if rows is not None else None
    extra = None
    if extra_mass is not None:  # log2 of the mass, in float64 (any float64 mass fits), then float32
        extra = (extra_mass.to(torch.float64).log2().float().contiguous() if isinstance(extra_mass, torch.Tensor)
                 else torch.full((M,), math.log2(extra_mass) if extra_mass > 0 else float("-inf"),
                                 dtype=torch.float32, device=x.device))
    scale = (math.log2(math.e) if name == "logits" else 1.0) / temperature  # natural-log units -> log2
    out = _launch(x, row_index, extra, is_probs=name == "probs", scale=scale,
                  seed=_seed_from(generator, seed, x.device))
    _raise_bad_rows(out, name, x, row_index, extra)
    return out
