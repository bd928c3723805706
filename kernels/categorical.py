r"""Exact categorical sampling in one pass over the logits: an exponential race with 64-bit noise.

The reference (``minimal/masked_fhs.py``, eq. 4) draws one index per row of ``p`` [N, V] by an
exponential race,

    E_v ~ Exp(1) i.i.d.,        sample = argmax_v  p_v / E_v   (= argmax_v  log p_v - log E_v),

which picks ``v`` with probability ``p_v / sum(p)``. It is exact only if the noise ``E`` is exact
where it matters: a class of small mass ``p_v`` wins through a *small* ``E_v``. The reference builds
``E = -log u`` from a float32 uniform ``u``; ``u <= 1 - 2^-24``, so ``E >= ~6e-8`` and a class whose
mass is below ~6e-8 of the leader's can (almost) never win. Float64 fixes that but costs a float64
uniform, a float64 log and a float64 division per element, and several passes over memory.

The construction used here (``E`` from 64 random bits)
------------------------------------------------------
Per element take 64 bits ``(hi, lo)`` from Philox-4x32-10 (one Philox call gives 128 bits, i.e. two
elements). The top bit ``b`` of ``hi`` picks one half of the unit interval and the other 63 bits give

    t = (h * 2^32 + lo + 1/2) * 2^-64,    h = hi & 0x7fffffff,    t in (2^-65, 1/2),

a uniform on a grid of spacing ``2^-64`` that, as a float32, keeps 24 significant bits down to its
smallest value (the grid is absolute, the float32 rounding relative). Then

    b = 1:  u = t        in (0, 1/2)   ->  E = -log t          in [log 2, 45.06]
    b = 0:  u = 1 - t    in (1/2, 1)   ->  E = -log1p(-t)      in (2.7e-20, log 2]

so ``u`` is uniform on (0, 1) and ``E = -log u ~ Exp(1)``, but each half is computed from the end of
the interval where its precision is needed: the small ``E`` (``u`` near 1, the winners of unlikely
classes) from ``t = 1 - u`` directly, never from ``1 - u`` after rounding. ``-log1p(-t)`` is a series
for ``t < 1/16`` and ``-log(y) * t / (1 - y)`` with ``y = 1 - t`` otherwise (Goldberg's trick: the
factor ``t / (1 - y)`` cancels the rounding of ``y``).

**Resolution it guarantees.** For every ``x`` in ``[2^-64, 45]`` the law of the computed ``E`` obeys

    |P(E <= x) - (1 - e^-x)| <= 2^-64 + (1 - e^-x) * 2^-20,

(the first term is the grid of ``t``; the second a few float32 roundings in computing ``E``, since
``x F'(x) <= F(x)`` turns a relative error of ``E`` into the same relative error of the CDF), i.e.
the noise is exact to a relative 1e-6 down to ``E ~ 5e-20``: the smallest ``E`` is ``2.7e-20``,
against ``6e-8`` for the float32 race and ``2.1e-16`` for the float64 one. A class then wins with
probability ``p_v / sum(p)`` for any mass ratio down to about ``1e-19``; the only other error is the
float32 rounding of the score ``s_v = log2 p_v - log2 E_v`` (at most ~4e-6 absolute for ``|s| < 64``),
which multiplies each probability by a factor within ``1 +- 3e-6``: a bias too small to see in any
test, and never the truncation of the float32 race.

The kernel
----------
One program handles ``ROWS`` rows and walks over the columns in tiles of ``2 * HALF``: it loads each
input element once (bf16/fp16/fp32/fp64 logits, or non-negative probabilities), makes its noise in
registers, and keeps a running (max score, argmax) per row. It writes one int64 per row. Bytes moved:
``N * V * itemsize + 8 N``, the same as a single read of the input: the sampler is a reduction. Its
speed is set by arithmetic, not memory: compiled for an H100 the main loop is about 160 instructions
per element (half a Philox call, the construction of ``E``, two logarithms), while reading a bf16
element at full bandwidth leaves time for about 20. Input checks (NaN, +inf, negative probabilities,
rows with no mass) are made inside the same pass and raised after it, so they cost no extra read.

Without CUDA the same contract is served by the float64 reference of ``minimal/masked_fhs.py``; the
kernel itself also runs on CPU tensors through Triton's interpreter (``backend="triton"``), slowly,
which is how the tests check it on machines without a GPU.
"""
from __future__ import annotations

import math
import numbers

import torch

from minimal.masked_fhs import sample_categorical as reference_sample_categorical

try:  # Triton is optional: without it the float64 reference serves every call
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is absent
    triton = None
    tl = None

__all__ = ["sample", "triton_available", "interpreter_active", "RESOLUTION"]

RESOLUTION = 2.0 ** -64  # the grid of the uniform behind each E: E is exact in law down to ~this

LOGIT_DTYPES = (torch.bfloat16, torch.float16, torch.float32, torch.float64)
_BAD_CODES = {  # the kernel writes -1 - code for a row it could not sample
    0: "has no positive mass (all probabilities zero, or all logits -inf)",
    2: "contains +inf",
    3: "contains a negative probability",
    4: "contains NaN",
}


def triton_available() -> bool:
    """True when Triton is importable (the kernel can run: compiled on CUDA, interpreted on CPU)."""
    return triton is not None


# ------------------------------------------------------------------------------------------------
# the Triton kernel
# ------------------------------------------------------------------------------------------------
if triton is not None:

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
        approximation (absolute error ~2^-22 on [1/2, 2], 2 ulp elsewhere; fewer instructions)."""
        if FAST:
            return tl.inline_asm_elementwise("lg2.approx.f32 $0, $1;", "=r,r", [x], dtype=tl.float32,
                                             is_pure=True, pack=1)
        else:
            return tl.log2(x)

    @triton.jit
    def _exponential(hi, lo, FAST: tl.constexpr):
        """E ~ Exp(1) from 64 random bits (uint32 hi, lo), exact at both ends (module docstring)."""
        upper = (hi >> 31) != 0  # which half of (0, 1) u lies in
        t = (hi & 0x7FFFFFFF).to(tl.float32) * 2.3283064365386963e-10 \
            + (lo.to(tl.float32) + 0.5) * 5.421010862427522e-20  # (k + 1/2) 2^-64, in (0, 1/2)
        y = 1.0 - t  # u in the lower half; rounded, corrected below
        d = 1.0 - y  # exact (Sterbenz): the t that y really represents
        lg = _log2(tl.where(upper, t, y), FAST) * 0.6931471805599453  # natural log of t or of y
        series = t * (1.0 + t * (0.5 + t * (1.0 / 3.0 + t * (0.25 + t * (0.2 + t * (
            1.0 / 6.0 + t * (1.0 / 7.0 + t * 0.125)))))))  # -log1p(-t) = sum t^k / k, t < 1/16
        goldberg = -lg * (t / tl.where(d > 0.0, d, 1.0))  # -log1p(-t) = -log(y) t / (1 - y)
        return tl.where(upper, -lg, tl.where(t < 0.0625, series, goldberg))

    @triton.jit
    def _bad_code(x, IS_PROBS: tl.constexpr):
        """0 for a usable value; 4 NaN, 3 negative probability, 2 +inf (the worst code wins a row)."""
        if IS_PROBS:
            return tl.where(x != x, 4, tl.where(x < 0, 3, tl.where(x == float("inf"), 2, 0)))
        else:
            return tl.where(x != x, 4, tl.where(x == float("inf"), 2, 0))

    @triton.jit(do_not_specialize=["key0", "key1"])
    def _race_kernel(
        x_ptr, row_index_ptr, extra_ptr, bits_ptr, out_ptr,
        n_rows, V, stride_x, stride_bits,
        key0, key1, scale,
        IS_PROBS: tl.constexpr, HAS_ROW_INDEX: tl.constexpr, HAS_EXTRA: tl.constexpr,
        BITS_FROM_MEMORY: tl.constexpr, ROWS: tl.constexpr, HALF: tl.constexpr,
        N_ROUNDS: tl.constexpr, FAST_LOG2: tl.constexpr,
    ):
        """One exponential race per row: out[r] = argmax_v s_v with s_v = scale * in_v - log2 E_v.

        ``in_v`` is the logit (scale = log2(e) / T) or log2 of the probability (scale = 1 / T).
        Philox counter = (column // 2, row, stream, 0), key = (key0, key1): column 2i takes words
        0, 1 of call i and column 2i+1 words 2, 3, whatever the tile size.
        """
        pid = tl.program_id(0)
        r = pid * ROWS + tl.arange(0, ROWS)  # [ROWS] output rows
        row_ok = r < n_rows
        if HAS_ROW_INDEX:
            src = tl.load(row_index_ptr + r, mask=row_ok, other=0).to(tl.int64)
        else:
            src = r.to(tl.int64)
        row_base = x_ptr + src[:, None] * stride_x  # [ROWS, 1]
        zero = tl.zeros([ROWS, HALF], tl.uint32)
        k0 = (zero + key0).to(tl.uint32)  # written to survive Triton's specialisation of ints
        k1 = (zero + key1).to(tl.uint32)
        ctr_row = zero + r.to(tl.uint32)[:, None]
        lane = tl.arange(0, HALF)

        best = tl.full([ROWS], float("-inf"), tl.float32)
        best_idx = tl.full([ROWS], -1, tl.int32)
        bad = tl.zeros([ROWS], tl.int32)
        for c in range(0, V, 2 * HALF):
            # --- one read of the input: a contiguous tile, split into even and odd columns ---------
            cols = c + tl.arange(0, 2 * HALF)
            m = row_ok[:, None] & (cols < V)[None, :]
            x = tl.load(row_base + cols[None, :], mask=m, other=0.0 if IS_PROBS else float("-inf"))
            x_even, x_odd = tl.split(tl.reshape(x, [ROWS, HALF, 2]))
            m_even, m_odd = tl.split(tl.reshape(m, [ROWS, HALF, 2]))

            # --- 128 random bits for columns 2i and 2i+1 ------------------------------------------
            if BITS_FROM_MEMORY:  # tests feed chosen bits: [n_rows, V(+1), 2] int32 (hi, lo)
                bptr = bits_ptr + r.to(tl.int64)[:, None] * stride_bits + 2 * (c + 2 * lane)[None, :]
                hi_a = tl.load(bptr, mask=m_even, other=0).to(tl.uint32, bitcast=True)
                lo_a = tl.load(bptr + 1, mask=m_even, other=0).to(tl.uint32, bitcast=True)
                hi_b = tl.load(bptr + 2, mask=m_odd, other=0).to(tl.uint32, bitcast=True)
                lo_b = tl.load(bptr + 3, mask=m_odd, other=0).to(tl.uint32, bitcast=True)
            else:
                pair = zero + (c // 2 + lane).to(tl.uint32)[None, :]
                hi_a, lo_a, hi_b, lo_b = _philox(pair, ctr_row, zero, zero, k0, k1, N_ROUNDS)

            for parity in tl.static_range(2):
                if parity == 0:
                    e = _exponential(hi_a, lo_a, FAST_LOG2)
                    xp = x_even
                    mp = m_even
                else:
                    e = _exponential(hi_b, lo_b, FAST_LOG2)
                    xp = x_odd
                    mp = m_odd
                code = _bad_code(xp, IS_PROBS)
                if IS_PROBS:
                    if xp.dtype == tl.float64:  # tiny float64 masses keep their exponent range
                        lx = tl.log2(xp).to(tl.float32)
                    else:
                        lx = tl.log2(xp.to(tl.float32))
                else:
                    lx = xp.to(tl.float32)
                sc = lx * scale - _log2(e, FAST_LOG2)  # log2 p_v / T - log2 E_v: the race in log space
                sc = tl.where(mp & (code == 0), sc, float("-inf"))
                bad = tl.maximum(bad, tl.max(tl.where(mp, code, 0), axis=1))
                blk_best = tl.max(sc, axis=1)
                blk_idx = c + 2 * tl.argmax(sc, axis=1).to(tl.int32) + parity
                take = blk_best > best  # strict: ties (probability ~0) keep the earlier block
                best = tl.where(take, blk_best, best)
                best_idx = tl.where(take, blk_idx, best_idx)

        if HAS_EXTRA:  # one more class, index V, with mass extra[r] (not tempered)
            if BITS_FROM_MEMORY:
                bptr1 = bits_ptr + r.to(tl.int64) * stride_bits + 2 * V
                hi1 = tl.load(bptr1, mask=row_ok, other=0).to(tl.uint32, bitcast=True)
                lo1 = tl.load(bptr1 + 1, mask=row_ok, other=0).to(tl.uint32, bitcast=True)
            else:  # its own Philox stream: counter (0, row, 1, 0)
                z1 = r.to(tl.uint32) * 0
                hi1, lo1, _, _ = _philox(z1, r.to(tl.uint32), z1 + 1, z1, (z1 + key0).to(tl.uint32),
                                         (z1 + key1).to(tl.uint32), N_ROUNDS)
            w = tl.load(extra_ptr + r, mask=row_ok, other=0.0)
            code1 = _bad_code(w, True)
            s1 = tl.log2(w) - tl.log2(_exponential(hi1, lo1, False))
            s1 = tl.where(code1 == 0, s1, float("-inf"))
            bad = tl.maximum(bad, code1)
            best_idx = tl.where(s1 > best, V, best_idx)

        result = tl.where(bad > 0, -1 - bad, best_idx)  # -1: no mass; -3, -4, -5: bad input
        tl.store(out_ptr + r, result.to(tl.int64), mask=row_ok)


def interpreter_active() -> bool:
    """True when the kernel runs through Triton's interpreter (``TRITON_INTERPRET=1`` was set before
    triton was imported): then it accepts CPU tensors."""
    if triton is None:
        return False
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_race_kernel, InterpretedFunction)


def _tile(V: int, M: int, device: torch.device):
    """(ROWS, HALF, num_warps): a tile of ROWS x 2*HALF elements per loop iteration."""
    half = 1 << max(0, math.ceil(math.log2(max(1, (V + 1) // 2))))  # next power of two >= V/2
    half = max(4, min(half, 1024 if device.type == "cuda" else 16384))
    if device.type == "cuda":
        rows = max(1, 2048 // (2 * half))  # ~2048 elements per iteration
        warps = 8 if 2 * half * rows >= 2048 else 4
    else:  # the interpreter pays per program: give each one many rows
        rows = max(1, 262144 // (2 * half))
        warps = 1
    rows = min(rows, 1 << max(0, math.ceil(math.log2(max(1, M)))))  # no tile taller than the batch
    return rows, half, warps


def _split_seed(seed: int):
    seed &= (1 << 62) - 1
    return seed & 0x7FFFFFFF, seed >> 31  # two 31-bit Philox key words


def _launch(x, row_index, extra, *, is_probs, scale, seed, bits=None, n_rounds=10, fast_log2=False):
    """Run the kernel. x [N, V] (unit stride along V), row_index [M] int64 or None, extra [M] fp32
    or None, bits [M, V(+1), 2] int32 or None. Returns int64 [M] with negative codes for bad rows.
    ``n_rounds`` and ``fast_log2`` (CUDA only) are for benchmarks; ``sample`` uses the defaults."""
    V = x.shape[1]
    M = row_index.shape[0] if row_index is not None else x.shape[0]
    out = torch.empty(M, dtype=torch.int64, device=x.device)
    if M == 0:
        return out
    rows, half, warps = _tile(V, M, x.device)
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
        IS_PROBS=is_probs, HAS_ROW_INDEX=row_index is not None, HAS_EXTRA=extra is not None,
        BITS_FROM_MEMORY=bits is not None, ROWS=rows, HALF=half, N_ROUNDS=n_rounds,
        FAST_LOG2=fast_log2 and x.device.type == "cuda", **extra_kw,
    )
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
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a positive float, got {type(temperature).__name__}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite float > 0 (use argmax for T = 0), got {temperature}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(f"generator is on {generator.device} but {name} is on {x.device}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise TypeError(f"seed must be a non-negative int or None, got {seed!r}")
    if seed is not None and generator is not None:
        raise ValueError("pass at most one of generator= and seed=")
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    if backend == "triton" and triton is None:
        raise RuntimeError("backend='triton' needs the triton package (pip install triton)")
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


def _seed_from(generator, seed, device):
    if seed is not None:
        return seed
    # one draw from the given (or the default) generator keys the Philox stream
    g_dev = generator.device if generator is not None else torch.device("cpu")
    return int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=g_dev).item())


def _raise_bad_rows(codes, name, has_extra):
    bad = (codes < 0).nonzero()
    if bad.numel():
        i = int(bad[0, 0])
        code = -1 - int(codes[i])
        what = f"{name} (or extra_mass)" if has_extra and code else name
        raise ValueError(f"{what} row {i} {_BAD_CODES[code]}; {bad.shape[0]} bad row(s) in all")


def _diagnose(name, xd, e):
    """Raise a ValueError naming the first bad row of xd [M, V] (float64) or of e [M]."""
    checks = [(torch.isnan(xd).any(1), "contains NaN"), ((xd == float("inf")).any(1), "contains +inf")]
    if name == "probs":
        checks.append(((xd < 0).any(1), "contains a negative probability"))
    for bad, what in checks:
        if bad.any():
            raise ValueError(f"{name} row {int(bad.nonzero()[0, 0])} {what}")
    if e is not None and (torch.isnan(e).any() or (e < 0).any() or (e == float("inf")).any()):
        raise ValueError("extra_mass must be finite and >= 0")
    alive = (xd > 0).any(1) if name == "probs" else (xd > float("-inf")).any(1)
    if e is not None:
        alive |= e > 0
    if not alive.all():
        raise ValueError(f"{name} row {int((~alive).nonzero()[0, 0])} {_BAD_CODES[0]}")


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
    else:  # tempered masses, through logs: exp(log(mass) / T - row max), the leader at mass 1
        with torch.no_grad():
            logw = xd / temperature if name == "logits" else torch.log(xd) / temperature
            if e is not None:
                logw = torch.cat([logw, torch.log(e)[:, None]], dim=1)
            top = logw.amax(dim=1, keepdim=True)
            w = torch.exp(logw - torch.where(top > float("-inf"), top, 0.0))
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
        temperature: ``T > 0``; class ``v`` gets mass ``exp(logit_v / T)`` or ``p_v ** (1 / T)``.
        generator: a ``torch.Generator`` on the input's device (one draw from it seeds the kernel), or
        seed: an int that fixes the draw (its low 62 bits key the kernel's Philox stream). Same seed and
            backend, same result. The kernel's stream depends on neither device nor tile size, so
            compiled on CUDA and interpreted on CPU it should give the same indices (up to last-bit
            ties of the logarithms); the float64 reference draws differently.
        extra_mass: with ``probs`` only: one more class, index ``V``, with this (untempered) mass beside
            the row's masses; a float or a tensor [M]. This is the mask class of an MDLM step (eq. 2 of
            ``minimal/masked_fhs.py``) without building a [M, V + 1] copy.
        rows: optional int64 [M]: sample only these rows of the input (read in place, no gather copy).
        backend: ``"auto"`` (the Triton kernel for CUDA tensors when Triton is installed, the float64
            reference otherwise), ``"triton"`` (the kernel; CPU tensors run it through Triton's
            interpreter, slowly, when ``TRITON_INTERPRET=1`` was set before triton was imported) or
            ``"torch"`` (the float64 reference).

    Returns:
        int64 [M] (M = N without ``rows``) on the input's device: index ``v`` with probability
        ``mass_v / sum(mass)``; ``V`` for the extra class.

    Raises:
        TypeError / ValueError for a wrong type, dtype, shape or argument; ValueError naming the row
        for NaN, +inf, negative probabilities, or a row with no positive mass (the kernel finds these in
        its single pass and the error is raised right after it).
    """
    name, x, M = _check_inputs(logits, probs, temperature, generator, seed, extra_mass, rows, backend)
    use_kernel = backend == "triton" or (backend == "auto" and triton is not None and x.is_cuda)
    if not use_kernel:
        return _reference(name, x, temperature, generator, seed, extra_mass, rows)

    if x.stride(1) != 1:
        x = x.contiguous()
    row_index = rows.to(torch.int64).contiguous() if rows is not None else None
    extra = None
    if extra_mass is not None:
        extra = (extra_mass.to(torch.float32).contiguous() if isinstance(extra_mass, torch.Tensor)
                 else torch.full((M,), float(extra_mass), dtype=torch.float32, device=x.device))
    scale = (math.log2(math.e) if name == "logits" else 1.0) / temperature  # natural-log units -> log2
    out = _launch(x, row_index, extra, is_probs=name == "probs", scale=scale,
                  seed=_seed_from(generator, seed, x.device))
    _raise_bad_rows(out, name, extra is not None)
    return out
