"""The kernel's noise is exact where float32's is not: its RNG, its resolution, the MDLM-regime tail.

* The kernel reproduces, index for index, a numpy twin built from the Philox-4x32-10 specification
  (checked against the Random123 known-answer vectors) and the construction of E (32 bits per
  element, 32 more where u or 1 - u < 2^-16); that construction matches float64 ground truth.
* Fed chosen bits, it takes the refinement path where it must, and lets a class of mass ratio 1e-18
  win exactly when the race says it must.
* The MDLM regime (token masses Delta * p_v beside a mask mass 1 - Delta, p Zipf over 4096 tokens,
  Delta = 1e-4 and 1e-5): each tail token wins with probability Delta * p_v, estimated by importance
  sampling its noise (words drawn inside the region where it can win); the float32 race fed the
  same uniforms never lets it win.
* On a GPU, the same regime by brute force with the kernel's own Philox stream (~1e11 draws).
"""
import math
import os
import warnings

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():  # the kernel on CPU tensors: Triton's interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")

from kernels import categorical  # noqa: E402
from kernels.categorical import sample  # noqa: E402
from minimal.masked_fhs import sample_categorical  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
KERNEL_OK = categorical.triton_available() and (DEVICE == "cuda" or categorical.interpreter_active())
needs_kernel = pytest.mark.skipif(not KERNEL_OK, reason=(
    "triton is not installed (pip install triton)" if not categorical.triton_available() else
    "triton was imported before TRITON_INTERPRET=1 was set; run this file on its own"))
DELTA32 = 2.0 ** -24  # the float32 uniform's grid


@pytest.fixture(autouse=True)
def _quiet_interpreter():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


# ------------------------------------------------------------------------------------------------
# a numpy twin of the kernel, from the specifications
# ------------------------------------------------------------------------------------------------
M32 = np.uint64(0xFFFFFFFF)


def philox4x32(c0, c1, c2, c3, k0, k1, rounds=10):
    """Philox-4x32 (Salmon et al. 2011): uint64 arrays holding 32-bit words."""
    c0, c1, c2, c3, k0, k1 = (np.asarray(v, dtype=np.uint64) for v in (c0, c1, c2, c3, k0, k1))
    for _ in range(rounds):
        p0 = np.uint64(0xD2511F53) * c0
        p1 = np.uint64(0xCD9E8D57) * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0) & M32, p1 & M32, ((p0 >> np.uint64(32)) ^ c3 ^ k1) & M32, \
            p0 & M32
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & M32, (k1 + np.uint64(0xBB67AE85)) & M32
    return c0, c1, c2, c3


def test_philox_matches_the_known_answer_vectors():
    kat = [  # Random123 kat_vectors, philox4x32 10 rounds: counter, key -> output
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ]
    for ctr, key, want in kat:
        assert tuple(int(w) for w in philox4x32(*ctr, *key)) == want


R_COEFFS = (0.5287663340568542, 0.7213531136512756, 0.30031004548072815, 0.1844150274991989, 0.0965583473443985,
            0.1852394938468933)  # the kernel's log2(-log2(1 - t) / t) on [0, 1/4], constant term first


def log2_noise32(w, z):
    """The kernel's log2 X (X = -log2 u = E / ln 2) from its primary words w and refinement words z
    (uint32 arrays; z is read only where k < 2^16), op for op in float32 (kernels.categorical)."""
    f = np.float32
    w, z = np.asarray(w, dtype=np.uint32), np.asarray(z, dtype=np.uint32)
    lower = w >= np.uint32(0xC0000000)  # u > 3/4: computed from t = 1 - u
    k = np.where(lower, ~w, w)
    fine = k < categorical.FINE_CELLS
    l = np.where(lower, ~z, z)
    a = np.where(fine, k.astype(f) * f(2.0 ** -32) + (l.astype(f) + f(0.5)) * f(2.0 ** -64),
                 k.astype(f) * f(2.0 ** -32) + f(2.0 ** -33))
    l1 = np.log2(a)
    r = f(R_COEFFS[-1])
    for c in R_COEFFS[-2::-1]:
        r = f(c) + a * r
    return np.where(lower, l1 + r, np.log2(-l1)).astype(f)


def exact_log2_noise(w, z):
    """float64 ground truth for the same words: the cell midpoint u (or t = 1 - u), then log2(-log2 u)."""
    w, z = np.asarray(w, dtype=np.uint64), np.asarray(z, dtype=np.uint64)
    lower = w >= np.uint64(0xC0000000)
    k = np.where(lower, w ^ M32, w)
    l = np.where(lower, z ^ M32, z)
    fine = k < categorical.FINE_CELLS
    a = np.where(fine, (k.astype(np.float64) * 2.0 ** 32 + l.astype(np.float64) + 0.5) * 2.0 ** -64,
                 (k.astype(np.float64) + 0.5) * 2.0 ** -32)  # exact to 2^-53 relative
    return np.where(lower, np.log2(-np.log1p(-a) / math.log(2.0)), np.log2(-np.log2(a)))


def twin_words(N, V, seed, stream):
    """Word j % 4 of Philox-4x32-10 with counter (row, j // 4, stream, 0), for every [row, column j]."""
    seed &= (1 << 62) - 1
    k0, k1 = seed & 0x7FFFFFFF, seed >> 31
    j = np.arange(V, dtype=np.uint64)[None, :]
    rows = np.arange(N, dtype=np.uint64)[:, None]
    words = philox4x32(rows + 0 * j, j >> np.uint64(2), stream + 0 * j, 0 * j, k0, k1)
    return np.choose((j & np.uint64(3)).astype(np.int64) + 0 * rows.astype(np.int64), words)


def twin_race(keys, noise, scale, block):
    """The kernel's race, op for op in float32 (its fma as a float64 product and sum rounded once):
    per slot q (columns c + 4q + j of each tile c, in the kernel's order) the leader's key kb and noise
    nb, replaced when (k - kb) scale + nb > n; then the slots' leaders in the frame of the largest
    leading key m: s = (kb - m) scale - nb."""
    N, V = keys.shape
    Q = block // 4
    kb = np.full((N, Q), -np.inf, np.float32)
    nb = np.zeros((N, Q), np.float32)
    col = np.zeros((N, Q), np.int64)
    for c in range(0, V, block):
        for j in range(4):
            cols = c + 4 * np.arange(Q) + j
            k = np.where(cols < V, keys[:, np.minimum(cols, V - 1)], np.float32(-np.inf))
            n = noise[:, np.minimum(cols, V - 1)]
            take = ((k - kb).astype(np.float64) * scale + nb).astype(np.float32) > n  # an fma: one rounding
            kb, nb, col = np.where(take, k, kb), np.where(take, n, nb), np.where(take, cols, col)
    m = kb.max(axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, np.float32(0))
    s = ((kb - m).astype(np.float64) * scale - nb).astype(np.float32)
    return np.where(s == s.max(axis=1, keepdims=True), col, np.iinfo(np.int64).max).min(axis=1)


def twin_sample(logits, seed, temperature=1.0):
    """What the kernel must return for float32 logits [N, V] (no extra class), and how many elements
    took the refinement path."""
    N, V = logits.shape
    w, z = twin_words(N, V, seed, 0), twin_words(N, V, seed, 2)
    scale = np.float32(math.log2(math.e) / temperature)
    _, block, _ = categorical._tile(V, N, torch.device(DEVICE))
    with np.errstate(invalid="ignore"):  # -inf - -inf: NaN, which never wins, as in the kernel
        idx = twin_race(logits.astype(np.float32), log2_noise32(w, z), scale, block)
    refined = int((np.where(w >= 0xC0000000, w ^ M32, w) < categorical.FINE_CELLS).sum())
    return idx, refined


@needs_kernel
@pytest.mark.parametrize("shape,offset", [((48, 301), 0.0), ((3, 40_001), 0.0), ((48, 301), -3e9)])
def test_kernel_equals_its_twin_index_for_index(shape, offset):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(5)) * 3 + offset
    want, refined = twin_sample(x.numpy(), seed=123_456_789_012, temperature=0.7)
    if shape == (3, 40_001):
        assert refined > 0, "this case should exercise the refinement branch too"
    got = sample(logits=x.to(DEVICE), seed=123_456_789_012, temperature=0.7, backend="triton").cpu().numpy()
    agree = (got == want).mean()
    # the interpreter runs the same float32 numpy ops; a GPU's log2 may differ in the last bits at ties
    assert agree == 1.0 if DEVICE == "cpu" else agree > 0.999, f"kernel and twin agree on {agree:.4f}"


def test_the_noise_is_exact_across_64_binary_orders():
    """log2 X from chosen words against float64 ground truth, from t = 2^-65 to u = 2^-65: both regions,
    the coarse grid and the refined one. |error| <= 2^-21 max(1, |log2 X|), i.e. E = X ln 2 to a
    relative 2^-21.5 max(1, |log2 X|), with numpy's float32 log2 (the kernel's interpreter and the
    accurate CUDA variant; the hardware log2's bound is in the module docstring)."""
    rng = np.random.default_rng(0)
    k = np.concatenate([rng.integers(0, 1 << 16, 20_000), rng.integers(1 << 16, 3 << 30, 200_000),
                        np.geomspace(1, 3 << 30, 20_000).astype(np.int64), [0, 1, 2, 0xFFFF, 0x10000, 0x10001]])
    z = rng.integers(0, 1 << 32, k.size)
    z[-20:] = [0, 1, 0xFFFFFFFF, 2 ** 31] * 5
    for lower in (False, True):
        kk = np.minimum(k, (1 << 30) - 1) if lower else k  # the lower region is 2^30 cells wide
        w = (kk ^ 0xFFFFFFFF) if lower else kk  # the word that folds to kk
        got = log2_noise32(w, z).astype(np.float64)
        truth = exact_log2_noise(w, z)
        err = np.abs(got - truth) / np.maximum(1.0, np.abs(truth))
        assert err.max() < 2.0 ** -21, (lower, err.max(), kk[err.argmax()])
    # the extremes: the smallest E (t = 2^-65) and the largest (u = 2^-65)
    e_min = math.log(2) * 2.0 ** float(log2_noise32(0xFFFFFFFF, 0xFFFFFFFF))
    e_max = math.log(2) * 2.0 ** float(log2_noise32(0, 0))
    assert 2.7e-20 < e_min < 2.72e-20 and 45.0 < e_max < 45.1, (e_min, e_max)  # float32's race: 6e-8


# ------------------------------------------------------------------------------------------------
# chosen bits through the kernel
# ------------------------------------------------------------------------------------------------
def _words_to_bits(words):
    """uint64 words [M, K] -> int32 bits [M, K, 2] (hi, lo) for the kernel's test input: hi is the
    primary word, lo the refinement word (read where hi names one of the 2^16 cells next to 0 or 1;
    then the 64-bit word names the cell of u on the fine grid, see _word_for_small_e)."""
    hi = (words >> np.uint64(32)).astype(np.int64)
    lo = (words & M32).astype(np.int64)
    pair = np.stack([hi, lo], axis=-1)
    pair = np.where(pair >= 2 ** 31, pair - 2 ** 32, pair)
    return torch.from_numpy(pair.astype(np.int32)).contiguous()


def _race_with_bits(masses, extra, words):
    probs = torch.as_tensor(masses, dtype=torch.float32).to(DEVICE)
    extra_t = None  # the kernel takes log2 of the extra mass, computed in float64
    if extra is not None:
        extra_t = torch.as_tensor(extra, dtype=torch.float64).log2().float().to(DEVICE)
    rows = torch.zeros(words.shape[0], dtype=torch.int64, device=DEVICE) if probs.shape[0] == 1 else None
    out = categorical._launch(probs, rows, extra_t, is_probs=True, scale=1.0, seed=0,
                              bits=_words_to_bits(words).to(DEVICE))
    return out.cpu()


def _word_for_small_e(e):
    """A 64-bit word in the lower region (u > 3/4) whose t = 1 - u (= E to first order) is e: its
    complement counts t's cells of 2^-64."""
    return np.uint64(int(e * 2.0 ** 64) ^ (2 ** 64 - 1))


@needs_kernel
@pytest.mark.parametrize("V", [32, 37])  # a full tile, and a tile cut by the end of the row
def test_the_refinement_path_is_taken_and_exact(V):
    """Two columns per row share one coarse cell near t = 0 (primary words equal, k < 2^16) and
    differ only in their refinement words: the winner is decided by those 32 bits alone. The kernel
    must pick what the twin picks, and the later column must win about half of the rows (without the
    refinement the two would tie and the earlier one would always win)."""
    M = 400
    rng = np.random.default_rng(7)
    hi = rng.integers(0, 2 ** 32, size=(M, V), dtype=np.uint64)
    lo = rng.integers(0, 2 ** 32, size=(M, V), dtype=np.uint64)
    hi[:, 5] = hi[:, V - 2] = np.uint64(0xFFFFFFFF - 3)  # lower region, k = 3: t in [3, 4) 2^-32
    hi[:, 9] = np.uint64(17)  # an upper-region word refined too (u ~ 4e-9, E ~ 19: never wins)
    masses = np.ones((M, V), dtype=np.float32)
    got = _race_with_bits(masses, None, (hi << np.uint64(32)) | lo).numpy()
    s = np.log2(masses) - log2_noise32(hi.astype(np.uint32), lo.astype(np.uint32))
    want = s.argmax(axis=1)
    assert np.array_equal(got, want), f"kernel and twin differ on {(got != want).sum()} rows"
    assert set(want.tolist()) == {5, V - 2}
    assert 0.4 < np.mean(want == V - 2) < 0.6


@needs_kernel
@pytest.mark.parametrize("ratio", [1e-8, 1e-10, 1e-12, 1e-15, 1e-18])
def test_chosen_bits_let_a_tiny_class_win_exactly_when_it_should(ratio):
    """Rows [ratio, mask 1]: the mask's E is 1 (u = e^-1), the token's E sits at a factor 0.5 or 2 of
    ratio * 1. The token must win in the first case and lose in the second."""
    mask_word = np.uint64(int(math.exp(-1.0) * 2.0 ** 64))  # upper region, u = e^-1: E_mask = 1
    words = np.array([[_word_for_small_e(0.5 * ratio), mask_word],
                      [_word_for_small_e(2.0 * ratio), mask_word]], dtype=np.uint64)
    out = _race_with_bits([[ratio]], [1.0, 1.0], words)
    assert out.tolist() == [0, 1], f"ratio {ratio:g}: got {out.tolist()}, want token then mask"
    e32_min = np.float32(1e-10) - np.log(np.float32(1 - DELTA32) + np.float32(1e-10))
    assert e32_min > 2.0 * ratio  # float32's smallest E: it could not have let the token win


# ------------------------------------------------------------------------------------------------
# the MDLM regime, by importance sampling the noise of one tail token per row
# ------------------------------------------------------------------------------------------------
ZIPF_V = 4096
# tail tokens whose ratio to the mask is below 2^-24 / 8: the float32 race keeps < 0.3% of their chance
TAIL_RANKS = {1e-4: [1600, 2000, 2500, 3000, 3500, 4096], 1e-5: [160, 320, 640, 1280, 2560, 4096]}
ROWS_PER_TOKEN = 128


def _zipf(V):
    p = 1.0 / np.arange(1, V + 1, dtype=np.float64)
    return p / p.sum()


def _float32_race_on_the_same_uniforms(words, masses32):
    """The reference's float32 race (eq. 4) fed the same uniforms rounded to its 2^-24 grid."""
    lower = words >= np.uint64(3 << 62)  # u > 3/4: the word's complement counts t = 1 - u
    a = (np.where(lower, ~words, words).astype(np.float64) + 0.5) * 2.0 ** -64  # u, or t
    k = np.where(lower, 2 ** 24 - np.ceil(a * 2 ** 24), np.floor(a * 2 ** 24))  # u = k * 2^-24
    u = torch.from_numpy((k * 2.0 ** -24).astype(np.float32))
    e = 1e-10 - torch.log(u + 1e-10)  # float32 throughout
    return (masses32 / e).argmax(dim=1)


@needs_kernel
@pytest.mark.parametrize("delta", sorted(TAIL_RANKS))
def test_mdlm_regime_tail_tokens_win_at_their_exact_rate(delta):
    p = _zipf(ZIPF_V)
    mask_mass = (1 - delta) / delta  # masses p_v beside the mask: the MDLM step's kernel call
    ranks = TAIL_RANKS[delta]
    rng = np.random.default_rng(int(1 / delta))
    K = ROWS_PER_TOKEN
    words = rng.integers(0, 2 ** 64, size=(K * len(ranks), ZIPF_V + 1), dtype=np.uint64)
    wins_expected, var, forced = 0.0, 0.0, []
    for i, rank in enumerate(ranks):
        v = rank - 1
        r = p[v] / mask_mass  # token-to-mask ratio
        assert r < DELTA32 / 8, "the test is about tokens the float32 race cannot reach"
        q = 2.0 ** math.ceil(math.log2(16 * r))  # P(word in region) ; wins outside need E_mask > 16
        shift = np.uint64(round(-math.log2(q)))
        block = slice(i * K, (i + 1) * K)
        words[block, v] = ~(words[block, v] >> shift)  # top bits one: lower region, t < q
        pi = delta * p[v] / q  # exact win probability given the region (up to ~1e-6)
        wins_expected += K * pi
        var += K * pi * (1 - pi)
        forced.append((block, v))
    out = _race_with_bits(p[None, :], np.full(len(words), mask_mass), words)
    wins = sum(int((out[block] == v).sum()) for block, v in forced)
    z = (wins - wins_expected) / math.sqrt(var)
    print(f"Delta={delta:g}: tail wins {wins} vs exact {wins_expected:.1f} (z = {z:+.2f})")
    assert abs(z) < 4, f"kernel: {wins} tail wins, exact law expects {wins_expected:.1f} (z = {z:.1f})"

    masses32 = torch.from_numpy(np.append(p, mask_mass).astype(np.float32))[None, :]
    out32 = _float32_race_on_the_same_uniforms(words, masses32)
    wins32 = sum(int((out32[block] == v).sum()) for block, v in forced)
    print(f"Delta={delta:g}: the float32 race on the same uniforms: {wins32} tail wins")
    assert wins32 < 0.1 * wins_expected, f"float32 race: {wins32} wins; the test would not tell it apart"


# ------------------------------------------------------------------------------------------------
# the MDLM regime by brute force, with the kernel's own Philox stream (GPU only)
# ------------------------------------------------------------------------------------------------
def brute_force_tail(delta, n_rows, backend, chunk=1 << 20):
    """Draw n_rows MDLM-regime races; return (tail wins, expected tail wins) where the tail is every
    token the float32 race truncates (ratio to the mask below 2^-24)."""
    p = _zipf(ZIPF_V)
    mask_mass = (1 - delta) / delta
    tail = torch.from_numpy(p / mask_mass < DELTA32)
    table = torch.from_numpy(p.astype(np.float32))[None, :].to(DEVICE)
    wins, seed = 0, 0
    for start in range(0, n_rows, chunk):
        m = min(chunk, n_rows - start)
        if backend == "float32 race":
            q = torch.cat([table, torch.full((1, 1), mask_mass, device=DEVICE)], dim=1).expand(m, -1)
            idx = sample_categorical(q, dtype=torch.float32,
                                     generator=torch.Generator(device=DEVICE).manual_seed(seed))
        else:
            idx = sample(probs=table, rows=torch.zeros(m, dtype=torch.int64, device=DEVICE),
                         extra_mass=mask_mass, seed=seed, backend=backend)
        idx = idx.cpu()
        hit = idx[idx < ZIPF_V]
        wins += int(tail[hit].sum())
        seed += 1
    expected = n_rows * delta * float(p[tail.numpy()].sum())
    return wins, expected


@pytest.mark.skipif(DEVICE != "cuda", reason="brute force needs ~1e11 draws: seconds on a GPU, hours on CPU")
@pytest.mark.parametrize("delta,n_rows", [(1e-4, 1 << 22), (1e-5, 1 << 24)])
def test_mdlm_regime_tail_brute_force_on_gpu(delta, n_rows):
    wins, expected = brute_force_tail(delta, n_rows, "triton", chunk=1 << 20)
    z = (wins - expected) / math.sqrt(expected)
    print(f"Delta={delta:g}: kernel tail wins {wins} vs exact {expected:.1f} (z = {z:+.2f})")
    assert abs(z) < 5
    wins32, _ = brute_force_tail(delta, n_rows, "float32 race", chunk=1 << 14)
    print(f"Delta={delta:g}: float32 race tail wins {wins32} vs exact {expected:.1f}")
    assert (expected - wins32) / math.sqrt(expected) > 5
