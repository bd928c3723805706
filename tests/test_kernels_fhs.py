"""kernels.fhs: the batched first-hitting sampler and MDLM steps against exact laws on a toy network.

The toy network reads the unmasked tokens (so the order of unmasking matters); with L = 3 positions and
V = 3 tokens the exact law of each sampler is a sum over 27 sequences, computed by recursion. Our
samplers (on the float64 reference and on the Triton kernel) and minimal/masked_fhs.py's must all fit it.
"""
import functools
import itertools
import os
import warnings

import pytest
import torch

if not torch.cuda.is_available():  # the kernel on CPU tensors: Triton's interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")

from scipy import stats  # noqa: E402

import minimal.masked_fhs as ref  # noqa: E402
from kernels import categorical  # noqa: E402
from kernels.fhs import fhs_sample, mdlm_sample, mdlm_step  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
KERNEL_OK = categorical.triton_available() and (DEVICE == "cuda" or categorical.interpreter_active())
BACKENDS = ["torch", pytest.param("triton", marks=pytest.mark.skipif(
    not KERNEL_OK, reason="the Triton kernel is not runnable here (triton missing, or imported before "
                          "TRITON_INTERPRET=1 was set)"))]
L, V, MASK = 3, 3, 3
B = 4000
P_MIN = 1e-4

_g = torch.Generator().manual_seed(11)
BASE = torch.randn(L, V, generator=_g, dtype=torch.float64)
COUPLING = 1.5 * torch.randn(L, L, V, V, generator=_g, dtype=torch.float64)  # [i, j, x_j, v]


@pytest.fixture(autouse=True)
def _quiet_interpreter():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def toy_logits(x):
    """[B, L] tokens -> [B, L, V] logits that depend on every unmasked token."""
    onehot = torch.nn.functional.one_hot(x.cpu(), V + 1)[..., :V].double()  # a mask contributes nothing
    out = BASE + torch.einsum("bjw,ijwv->biv", onehot, COUPLING)
    return out.to(x.device)


def toy_probs(x):
    return torch.softmax(toy_logits(x), dim=-1).float()


@functools.lru_cache(maxsize=None)
def _mu(state):
    return torch.softmax(toy_logits(torch.tensor([state])), dim=-1)[0].tolist()  # [L][V] floats


@functools.lru_cache(maxsize=None)
def fhs_law(state):
    """Exact law of random-order decoding from ``state`` (a tuple with MASK at masked positions)."""
    masked = [i for i, s in enumerate(state) if s == MASK]
    if not masked:
        return {state: 1.0}
    mu, law = _mu(state), {}
    for i in masked:
        for v in range(V):
            nxt = state[:i] + (v,) + state[i + 1:]
            w = mu[i][v] / len(masked)
            for seq, p in fhs_law(nxt).items():
                law[seq] = law.get(seq, 0.0) + w * p
    return law


@functools.lru_cache(maxsize=None)
def mdlm_law(num_steps):
    """Exact law of eq. 2 on the grid t_k = 1 - k/N from the all-masked sequence."""
    law = {(MASK,) * L: 1.0}
    grid = [1 - k / num_steps for k in range(num_steps + 1)]
    for t, s in zip(grid[:-1], grid[1:]):
        new = {}
        for state, p_state in law.items():
            mu = _mu(state)
            options = [[(x, 1.0)] if x != MASK else [(MASK, s / t)] + [(v, mu[i][v] * (t - s) / t)
                                                                         for v in range(V)]
                       for i, x in enumerate(state)]
            for combo in itertools.product(*options):
                nxt = tuple(c[0] for c in combo)
                w = p_state
                for c in combo:
                    w *= c[1]
                new[nxt] = new.get(nxt, 0.0) + w
        law = new
    return law


def _assert_fits(tokens, law, what):
    """Chi-square of sequences [n, L] against an exact law (bins with expected < 5 pooled)."""
    counts = {}
    for row in tokens.cpu().tolist():
        counts[tuple(row)] = counts.get(tuple(row), 0) + 1
    assert set(counts) <= set(law), f"{what}: drew a sequence of probability 0"
    n = tokens.shape[0]
    obs, exp, pool_o, pool_e = [], [], 0, 0.0
    for seq, p in law.items():
        if p * n >= 5:
            obs.append(counts.get(seq, 0))
            exp.append(p * n)
        else:
            pool_o += counts.get(seq, 0)
            pool_e += p * n
    if pool_e > 0:
        obs.append(pool_o)
        exp.append(pool_e)
    scale = sum(obs) / sum(exp)  # the law sums to 1 up to rounding
    p = stats.chisquare(obs, [e * scale for e in exp]).pvalue
    assert p > P_MIN, f"{what}: chi-square p = {p:.2e}"


def _masked(n):
    return torch.full((n, L), MASK, dtype=torch.int64, device=DEVICE)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("output", ["probs", "logits"])
def test_fhs_fits_the_exact_law(backend, output):
    model = toy_probs if output == "probs" else toy_logits
    x, times, nfe = fhs_sample(model, _masked(B), MASK, output=output, seed=0, backend=backend)
    assert nfe == L and (x != MASK).all()
    _assert_fits(x, fhs_law((MASK,) * L), f"fhs_sample[{backend}, {output}]")
    assert (times[:, 1:] < times[:, :-1]).all()  # event times decrease
    first = times[:, 0].cpu() ** L  # eq. 3: P(t_1 <= s) = s^L, so t_1^L ~ U(0, 1)
    assert stats.kstest(first.numpy(), "uniform").pvalue > P_MIN


def test_minimal_fhs_fits_the_same_law():
    x = ref.fhs_sample(toy_probs, (B, L), MASK, generator=torch.Generator().manual_seed(0))
    _assert_fits(x, fhs_law((MASK,) * L), "minimal.fhs_sample")


@pytest.mark.parametrize("backend", BACKENDS)
def test_fhs_batches_rows_at_different_progress(backend):
    """Three kinds of rows in one batch: all masked, one token fixed, already done."""
    x = _masked(B)
    x[B // 3: 2 * B // 3, 0] = 2
    x[2 * B // 3:] = torch.tensor([1, 0, 2])
    out, times, nfe = fhs_sample(toy_probs, x, MASK, seed=1, backend=backend)
    assert nfe == L  # the largest masked count
    _assert_fits(out[: B // 3], fhs_law((MASK,) * L), "fully masked rows")
    _assert_fits(out[B // 3: 2 * B // 3], fhs_law((2, MASK, MASK)), "rows with x_0 fixed")
    assert (out[2 * B // 3:] == torch.tensor([1, 0, 2], device=DEVICE)).all(), "a finished row changed"
    events = (~torch.isnan(times)).sum(dim=1).cpu()
    assert events[: B // 3].eq(3).all() and events[B // 3: 2 * B // 3].eq(2).all() and events[2 * B // 3:].eq(0).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("num_steps", [1, 3])
def test_mdlm_fits_the_exact_law(backend, num_steps):
    x, nfe = mdlm_sample(toy_probs, _masked(B), MASK, num_steps, seed=2, backend=backend)
    assert nfe <= min(num_steps, L) and (x != MASK).all()
    _assert_fits(x, mdlm_law(num_steps), f"mdlm_sample[{backend}, N={num_steps}]")


@pytest.mark.parametrize("num_steps", [1, 3])
def test_minimal_mdlm_fits_the_same_law(num_steps):
    x = ref.mdlm_sample(toy_probs, (B, L), MASK, num_steps, generator=torch.Generator().manual_seed(2))
    _assert_fits(x, mdlm_law(num_steps), f"minimal.mdlm_sample N={num_steps}")


def test_one_step_mdlm_is_not_fhs():
    """The laws differ (factorisation error of a coarse grid), and the test can see it."""
    x, _ = mdlm_sample(toy_probs, _masked(B), MASK, 1, seed=3, backend="torch")
    with pytest.raises(AssertionError, match="chi-square"):
        _assert_fits(x, fhs_law((MASK,) * L), "one-step MDLM against the FHS law")


@pytest.mark.parametrize("backend", BACKENDS)
def test_mdlm_step_takes_times_per_row(backend):
    n = 6000
    x = torch.full((n, 1), MASK, dtype=torch.int64, device=DEVICE)
    mu = torch.tensor([0.5, 0.3, 0.2], device=DEVICE).expand(n, 1, V)
    t = torch.where(torch.arange(n, device=DEVICE) < n // 2, 1.0, 0.5).double()
    s = torch.where(torch.arange(n, device=DEVICE) < n // 2, 0.75, 0.1).double()
    new = mdlm_step(mu, x, MASK, t, s, seed=4, backend=backend)[:, 0].cpu()
    for rows, p_unmask in [(slice(0, n // 2), 0.25), (slice(n // 2, n), 0.8)]:
        k = int((new[rows] != MASK).sum())
        assert stats.binomtest(k, n // 2, p_unmask).pvalue > P_MIN, (k, p_unmask)
    tokens = new[new != MASK]
    expected = mu[0, 0].cpu().double() / mu[0, 0].cpu().double().sum() * len(tokens)
    p = stats.chisquare(torch.bincount(tokens, minlength=V).double().numpy(), expected.numpy()).pvalue
    assert p > P_MIN


@pytest.mark.parametrize("call,error,message", [
    (lambda: fhs_sample(toy_probs, _masked(2).int(), MASK), TypeError, "int64"),
    (lambda: fhs_sample("model", _masked(2), MASK), TypeError, "callable"),
    (lambda: fhs_sample(toy_probs, _masked(2), 2), ValueError, "0..1|inside"),
    (lambda: fhs_sample(toy_probs, _masked(2), MASK, output="scores"), ValueError, "output"),
    (lambda: fhs_sample(lambda x: x.float(), _masked(2), MASK), ValueError, r"\[B, L, V\]"),
    (lambda: fhs_sample(toy_probs, _masked(2), MASK, t=torch.zeros(2)), ValueError, "positive"),
    (lambda: mdlm_sample(toy_probs, _masked(2), MASK, 0), ValueError, "num_steps"),
    (lambda: mdlm_step(torch.rand(2, L, V), _masked(2), MASK, 0.5, 0.5), ValueError, "t > s"),
    (lambda: mdlm_step(torch.rand(2, L + 1, V), _masked(2), MASK, 1.0, 0.5), ValueError, "mu"),
])
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


class _Counting:
    """A toy network that counts its calls: a bad argument must be refused before the first."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return toy_logits(x)


X2 = _masked(2)
BAD_CALLS = [
    ("fhs seed 2**70", lambda m: fhs_sample(m, X2, MASK, output="logits", seed=2 ** 70), ValueError, r"\[0, 2\*\*62\)"),
    ("fhs seed -1", lambda m: fhs_sample(m, X2, MASK, output="logits", seed=-1), ValueError, r"\[0, 2\*\*62\)"),
    ("fhs seed 1.5", lambda m: fhs_sample(m, X2, MASK, output="logits", seed=1.5), TypeError, "seed"),
    ("fhs generator 1", lambda m: fhs_sample(m, X2, MASK, output="logits", generator=1), TypeError, "generator"),
    ("fhs temperature 0", lambda m: fhs_sample(m, X2, MASK, output="logits", temperature=0.0), ValueError,
     "temperature"),
    ("fhs backend", lambda m: fhs_sample(m, X2, MASK, output="logits", backend="cuda"), ValueError, "backend"),
    ("mdlm seed 2**70", lambda m: mdlm_sample(m, X2, MASK, 4, output="logits", seed=2 ** 70), ValueError,
     r"\[0, 2\*\*62\)"),
    ("mdlm generator", lambda m: mdlm_sample(m, X2, MASK, 4, output="logits", generator="cpu"), TypeError, "generator"),
    ("mdlm backend", lambda m: mdlm_sample(m, X2, MASK, 4, output="logits", backend="cuda"), ValueError, "backend"),
    ("mdlm num_steps", lambda m: mdlm_sample(m, X2, MASK, 2.0, output="logits"), TypeError, "num_steps"),
    ("mdlm_step seed -1", lambda m: mdlm_step(torch.rand(2, L, V), X2, MASK, 0.5, 0.25, seed=-1), ValueError,
     r"\[0, 2\*\*62\)"),
    ("mdlm_step generator", lambda m: mdlm_step(torch.rand(2, L, V), X2, MASK, 0.5, 0.25, generator=0), TypeError,
     "generator"),
]


@pytest.mark.parametrize("what,call,error,message", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_arguments_raise_before_any_work(what, call, error, message):
    model = _Counting()
    with pytest.raises(error, match=message):
        call(model)
    assert model.calls == 0, f"{what}: the network ran {model.calls} time(s) before the error"


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batches_give_empty_results(backend):
    model = _Counting()
    empty = _masked(0)
    x, times, nfe = fhs_sample(model, empty, MASK, output="logits", seed=0, backend=backend)
    assert x.shape == (0, L) and times.shape == (0, L) and nfe == 0
    x, nfe = mdlm_sample(model, empty, MASK, 4, output="logits", seed=0, backend=backend)
    assert x.shape == (0, L) and nfe == 0
    mu = torch.rand(0, L, V, device=DEVICE)
    assert mdlm_step(mu, empty, MASK, 0.5, 0.25, seed=0, backend=backend).shape == (0, L)
    assert model.calls == 0
