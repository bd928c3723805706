"""kernels.categorical.sample: the contract, on the float64 reference and on the Triton kernel.

The kernel runs compiled on CUDA tensors and, without a GPU, through Triton's interpreter (which this
file switches on before triton is imported). Where triton is not installed its cases are skipped.
"""
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


BAD_ROWS = [
    ("logits", float("nan"), "NaN"),
    ("logits", float("inf"), r"\+inf"),
    ("probs", float("nan"), "NaN"),
    ("probs", -0.1, "negative"),
    ("probs", float("inf"), r"\+inf"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind,value,message", BAD_ROWS)
def test_bad_values_are_rejected_naming_the_row(backend, kind, value, message):
    x = torch.rand(6, 9, device=DEVICE)
    x[4, 7] = value
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
    (lambda: sample(probs=torch.rand(4, 3), seed=-1), TypeError, "seed"),
    (lambda: sample(probs=torch.rand(4, 3), seed=1, generator=torch.Generator()), ValueError, "at most one"),
    (lambda: sample(probs=torch.rand(4, 3), generator=1), TypeError, "generator"),
    (lambda: sample(probs=torch.rand(4, 3), backend="cuda"), ValueError, "backend"),
])
def test_wrong_arguments_raise_before_any_work(call, error, message):
    with pytest.raises(error, match=message):
        call()


SCALES = [  # masses near the dtype's limits, and logits whose scaled differences overflow float64
    ("float64 probs 1e308", "probs", [1e308, 1e308], 1.0, [0.5, 0.5]),
    ("float64 probs 1e-300", "probs", [1e-300, 3e-300], 1.0, [0.25, 0.75]),
    ("float64 logits +-1.7e308 at T = 0.5", "logits", [1.7e308, -1.7e308, 1.7e308], 0.5, [0.5, 0.0, 0.5]),
    ("float64 logits 1e300, 1e300, 0 at T = 1e-30", "logits", [1e300, 1e300, 0.0], 1e-30, [0.5, 0.5, 0.0]),
]


@pytest.mark.parametrize("what,kind,row,temperature,law", SCALES, ids=[c[0] for c in SCALES])
def test_float64_reference_is_scale_invariant(what, kind, row, temperature, law):
    x = torch.tensor(row, dtype=torch.float64).expand(N_DRAWS, -1)
    idx = _draw("torch", **{kind: x}, temperature=temperature)
    _assert_fits(idx, torch.tensor(law), f"torch: {what}")
