"""kernels.categorical.sample: the contract, on the float64 reference and on the Triton kernel.

The kernel runs compiled on CUDA tensors and, without a GPU, through Triton's interpreter (which this
file switches on before triton is imported). Where triton is not installed its cases are skipped.
"""
import math
import os
import warnings

import pytest
import torch

if not torch.cuda.is_available():  # the kernel on CPU tensors: Triton's interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")

from scipy import stats  # noqa: E402

from kernels import categorical  # noqa: E402
from kernels.categorical import sample  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
KERNEL_OK = categorical.triton_available() and (DEVICE == "cuda" or categorical.interpreter_active())
KERNEL_SKIP = ("triton is not installed (pip install triton)" if not categorical.triton_available() else
               "triton was imported before TRITON_INTERPRET=1 was set; run this file on its own")
BACKENDS = ["torch", pytest.param("triton", marks=pytest.mark.skipif(not KERNEL_OK, reason=KERNEL_SKIP))]
N_DRAWS = 20_000
P_MIN = 1e-4  # chi-square p-value below which a fit is rejected (seeds are fixed)


@pytest.fixture(autouse=True)
def _quiet_interpreter():
    with warnings.catch_warnings():  # the interpreter's numpy warns on log2(0) for zero masses
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _draw(backend, n=N_DRAWS, seed=0, **kw):
    return sample(**kw, seed=seed, backend=backend).cpu()


def _assert_fits(idx, target, what):
    """Chi-square goodness of fit of the indices against the exact probabilities ``target`` [K]."""
    target = target.double() / target.sum()
    counts = torch.bincount(idx, minlength=target.numel()).double()
    assert counts.numel() == target.numel(), f"{what}: an index out of range"
    zero = target == 0
    assert counts[zero].sum() == 0, f"{what}: drew a class of probability 0"
    expected = target[~zero] * counts.sum()
    p = stats.chisquare(counts[~zero].numpy(), expected.numpy()).pvalue
    assert p > P_MIN, f"{what}: chi-square p = {p:.2e}; counts {counts.tolist()} vs expected {expected.tolist()}"


MASSES = torch.tensor([0.30, 0.20, 0.15, 0.15, 0.10, 0.07, 0.03, 0.0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_logits_fit_the_softmax(backend, dtype):
    logits = torch.log(MASSES).to(dtype)  # the zero class is a -inf logit
    x = logits.to(DEVICE).expand(N_DRAWS, -1)
    idx = _draw(backend, logits=x)
    _assert_fits(idx, torch.softmax(logits.double(), 0), f"{backend} {dtype} logits")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_unnormalised_probs_fit(backend, dtype):
    p = (MASSES * 7.0).to(dtype)  # not normalised: the race does not care
    idx = _draw(backend, probs=p.to(DEVICE).expand(N_DRAWS, -1))
    _assert_fits(idx, p.double(), f"{backend} {dtype} probs")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_temperature(backend, temperature):
    z = torch.tensor([1.0, 0.5, 0.0, -0.5, -2.0])
    idx = _draw(backend, logits=z.to(DEVICE).expand(N_DRAWS, -1), temperature=temperature)
    target = torch.softmax(z.double() / temperature, 0)
    _assert_fits(idx, target, f"{backend} logits at T = {temperature}")
    # the draw really changes with T: the untempered law is rejected at this sample size
    counts = torch.bincount(idx, minlength=5).double()
    p_wrong = stats.chisquare(counts.numpy(), (torch.softmax(z.double(), 0) * N_DRAWS).numpy()).pvalue
    assert p_wrong < 1e-10, f"T = {temperature} made no difference (p = {p_wrong:.2e})"

    p = MASSES[:7].double()
    idx = _draw(backend, probs=p.to(DEVICE).expand(N_DRAWS, -1), temperature=temperature, seed=1)
    _assert_fits(idx, p ** (1.0 / temperature), f"{backend} probs at T = {temperature}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_extra_mass_is_one_more_untempered_class(backend):
    p = MASSES[:5].double()
    extra = torch.full((N_DRAWS,), 0.4, dtype=torch.float64)
    idx = _draw(backend, probs=p.to(DEVICE).expand(N_DRAWS, -1), temperature=2.0, extra_mass=extra.to(DEVICE))
    _assert_fits(idx, torch.cat([p ** 0.5, torch.tensor([0.4], dtype=torch.float64)]), f"{backend} extra_mass")


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_reads_chosen_rows_of_a_batch(backend):
    table = torch.tensor([[5.0, 1.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    which = torch.arange(3).repeat(N_DRAWS // 3)
    idx = _draw(backend, probs=table.to(DEVICE), rows=which.to(DEVICE))
    assert idx.shape == which.shape
    for r in range(3):
        _assert_fits(idx[which == r], table[r], f"{backend} rows= row {r}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_seed_reproduces_and_generator_advances(backend):
    x = torch.randn(64, 33, device=DEVICE)
    a = sample(logits=x, seed=3, backend=backend)
    assert torch.equal(a, sample(logits=x, seed=3, backend=backend))
    assert not torch.equal(a, sample(logits=x, seed=4, backend=backend))
    g = torch.Generator(device=DEVICE).manual_seed(0)
    b, c = sample(logits=x, generator=g, backend=backend), sample(logits=x, generator=g, backend=backend)
    assert not torch.equal(b, c)
    assert sample(logits=x[:0], seed=0, backend=backend).shape == (0,)


def _law(kind, x, temperature=1.0, extra=None):
    """The exact law of a draw from the input as it is represented: masses exp(logit / T) or
    p^(1/T), computed in float64 from logs with the row's largest taken out first."""
    logw = x.double() if kind == "logits" else torch.log(x.double())
    logw = (logw - logw.max()) / temperature
    if extra is not None:  # untempered, in the same frame
        m = (x.double() if kind == "logits" else torch.log(x.double())).max()
        logw = torch.cat([logw, (math.log(extra) - m / temperature).reshape(1)])
    return torch.exp(logw - logw.max())


_f32_masses = torch.log(MASSES[:7])
INVARIANCE = [  # (what, kind, the row, temperature, extra mass): large |logit / T|, masses near the limits
    ("equal float32 logits 1e7", "logits", torch.tensor([1e7, 1e7]), 1.0, None),
    ("equal float32 logits 1e9", "logits", torch.tensor([1e9, 1e9]), 1.0, None),
    ("equal float32 logits -1e9", "logits", torch.tensor([-1e9, -1e9, -1e9]), 1.0, None),
    ("equal float32 logits 3e38", "logits", torch.tensor([3e38, 3e38]), 1.0, None),
    ("float32 logits 1e5 + log masses", "logits", 1e5 + _f32_masses, 1.0, None),
    ("bfloat16 logits 1e30", "logits", torch.tensor([1e30, 1e30], dtype=torch.bfloat16), 1.0, None),
    ("float64 logits 1e300", "logits", torch.tensor([1e300, 1e300], dtype=torch.float64), 1.0, None),
    ("float64 logits +-1.7e308 at T = 0.5", "logits", torch.tensor([1.7e308, -1.7e308, 1.7e308], dtype=torch.float64),
     0.5, None),
    ("float64 logits 1e12 + log masses", "logits", 1e12 + _f32_masses.double(), 1.0, None),
    ("float64 logits 1e300, 1e300, 0 at T = 1e-30", "logits", torch.tensor([1e300, 1e300, 0.0], dtype=torch.float64),
     1e-30, None),
    ("10 + log masses / 1e6 at T = 1e-6", "logits", 10 + _f32_masses.double() * 1e-6, 1e-6, None),
    ("float64 probs 1e308", "probs", torch.tensor([1e308, 1e308], dtype=torch.float64), 1.0, None),
    ("float64 probs 1e-300 * masses", "probs", 1e-300 * MASSES[:7].double(), 1.0, None),
    ("float16 probs 1e-7, 3e-7 (subnormal)", "probs", torch.tensor([1e-7, 3e-7], dtype=torch.float16), 1.0, None),
    ("float32 probs near 1/2 at T = 1e-4", "probs", 0.5 + 1e-4 * torch.arange(3.0), 1e-4, None),
    ("equal float32 probs at T = 1e-8", "probs", torch.tensor([0.5, 0.5]), 1e-8, None),
    ("float64 probs 1e300 beside an extra mass 1e300", "probs", torch.tensor([1e300, 1e300], dtype=torch.float64),
     1.0, 1e300),
    ("float64 probs 1e-300 beside an extra mass 1e-300", "probs", torch.tensor([1e-300, 3e-300], dtype=torch.float64),
     1.0, 2e-300),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("what,kind,row,temperature,extra", INVARIANCE, ids=[c[0] for c in INVARIANCE])
def test_shift_and_scale_invariance(backend, what, kind, row, temperature, extra):
    """The law depends on differences of logits and ratios of masses only: rows far from 0, near the
    dtype's limits, or with |logit / T| large must still fit their exact law."""
    kw = {"extra_mass": extra} if extra is not None else {}
    idx = _draw(backend, **{kind: row.to(DEVICE).expand(N_DRAWS, -1)}, temperature=temperature, **kw)
    _assert_fits(idx, _law(kind, row, temperature, extra), f"{backend}: {what}")


BAD_ROWS = [
    ("logits", float("nan"), "NaN"),
    ("logits", float("inf"), r"\+inf"),
    ("probs", float("nan"), "NaN"),
    ("probs", -0.1, "negative"),
    ("probs", float("inf"), r"\+inf"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("kind,value,message", BAD_ROWS)
def test_bad_values_are_rejected_naming_the_row(backend, dtype, kind, value, message):
    """In every input dtype (the kernel checks the float32 or float64 value it computes with, the same
    operations on every device), and through rows= (the row named is the output row)."""
    x = torch.rand(6, 9, device=DEVICE).to(dtype)
    x[4, 7] = value
    with pytest.raises(ValueError, match=f"{kind}.*row 4.*{message}"):
        sample(**{kind: x}, seed=0, backend=backend)
    with pytest.raises(ValueError, match=f"{kind}.*row 1.*{message}"):
        sample(**{kind: x}, rows=torch.tensor([0, 4, 4], device=DEVICE), seed=0, backend=backend)
    with pytest.raises(ValueError, match=f"{kind}.*row 4.*{message}"):
        sample(**{kind: x}, seed=0, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_without_mass_are_rejected(backend):
    p = torch.rand(5, 9, device=DEVICE)
    p[2] = 0.0
    with pytest.raises(ValueError, match="probs row 2 has no positive mass"):
        sample(probs=p, seed=0, backend=backend)
    z = torch.randn(5, 9, device=DEVICE)
    z[3] = float("-inf")
    with pytest.raises(ValueError, match="logits row 3 has no positive mass"):
        sample(logits=z, seed=0, backend=backend)
    with pytest.raises(ValueError, match="extra_mass"):
        sample(probs=torch.rand(5, 9, device=DEVICE), extra_mass=-1.0, seed=0, backend=backend)


@pytest.mark.parametrize("call,error,message", [
    (lambda: sample(torch.randn(4, 3), torch.rand(4, 3)), ValueError, "exactly one"),
    (lambda: sample(), ValueError, "exactly one"),
    (lambda: sample(logits=[[0.0, 1.0]]), TypeError, "torch.Tensor"),
    (lambda: sample(logits=torch.zeros(4, 3, dtype=torch.int64)), TypeError, "dtype"),
    (lambda: sample(probs=torch.zeros(4, 3, dtype=torch.bool)), TypeError, "dtype"),
    (lambda: sample(logits=torch.randn(3)), ValueError, r"\[N, V\]"),
    (lambda: sample(logits=torch.randn(4, 0)), ValueError, "empty rows"),
    (lambda: sample(logits=torch.randn(4, 3), temperature=0.0), ValueError, "temperature"),
    (lambda: sample(logits=torch.randn(4, 3), temperature=float("nan")), ValueError, "temperature"),
    (lambda: sample(logits=torch.randn(4, 3), temperature="1"), TypeError, "temperature"),
    (lambda: sample(logits=torch.randn(4, 3), extra_mass=1.0), ValueError, "extra_mass needs probs"),
    (lambda: sample(probs=torch.rand(4, 3), extra_mass=torch.ones(3)), ValueError, "extra_mass"),
    (lambda: sample(probs=torch.rand(4, 3), rows=torch.tensor([0, 4])), ValueError, "rows"),
    (lambda: sample(probs=torch.rand(4, 3), rows=torch.tensor([0.0])), TypeError, "rows"),
    (lambda: sample(probs=torch.rand(4, 3), seed=-1), ValueError, r"seed must be an int in \[0, 2\*\*62\)"),
    (lambda: sample(probs=torch.rand(4, 3), seed=2 ** 62, backend="torch"), ValueError, r"\[0, 2\*\*62\)"),
    (lambda: sample(probs=torch.rand(4, 3), seed=2 ** 70, backend="torch"), ValueError, r"\[0, 2\*\*62\)"),
    (lambda: sample(probs=torch.rand(4, 3), seed=1.0), TypeError, "seed"),
    (lambda: sample(logits=torch.randn(4, 3), temperature=1e-31), ValueError, r"temperature must lie in"),
    (lambda: sample(logits=torch.randn(4, 3), temperature=1e31), ValueError, r"temperature must lie in"),
    (lambda: sample(probs=torch.rand(4, 3), seed=1, generator=torch.Generator()), ValueError, "at most one"),
    (lambda: sample(probs=torch.rand(4, 3), generator=1), TypeError, "generator"),
    (lambda: sample(probs=torch.rand(4, 3), backend="cuda"), ValueError, "backend"),
])
def test_wrong_arguments_raise_before_any_work(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_seed_range_for_both_backends(backend):
    """Seeds are ints in [0, 2^62) on both backends (the kernel's Philox key has 62 bits; the float64
    reference seeds a torch.Generator): the top of the range works, anything past it is refused, never
    overflowed or silently cut to its low bits."""
    x = torch.randn(8, 5, device=DEVICE)
    top = 2 ** categorical.SEED_BITS - 1
    assert torch.equal(sample(logits=x, seed=top, backend=backend), sample(logits=x, seed=top, backend=backend))
    for bad in (2 ** 62, 2 ** 62 + 3, 2 ** 70, -1):
        with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*62\)"):
            sample(logits=x, seed=bad, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batches_give_empty_results(backend):
    p = torch.rand(0, 5, device=DEVICE)
    g = torch.Generator(device=DEVICE).manual_seed(0)
    assert sample(probs=p, seed=0, backend=backend).shape == (0,)
    assert sample(logits=p, generator=g, backend=backend).shape == (0,)
    assert sample(probs=p, extra_mass=torch.ones(0, device=DEVICE), seed=0, backend=backend).shape == (0,)
    none = torch.zeros(0, dtype=torch.int64, device=DEVICE)
    q = torch.rand(3, 5, device=DEVICE)
    assert sample(probs=q, rows=none, extra_mass=0.5, seed=0, backend=backend).shape == (0,)
