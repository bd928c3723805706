"""kernels.categorical.sample: the contract, on the float64 reference and on the Triton kernel.

The kernel runs compiled on CUDA tensors and, without a GPU, through Triton's interpreter (which this
file switches on before triton is imported). Where triton is not installed its cases are skipped.
"""
import math
import os
import pathlib
import re
import subprocess
import sys
import warnings

import pytest
import torch

if not torch.cuda.is_available():  # the kernel on CPU tensors: Triton's interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")

from scipy import stats  # noqa: E402

from kernels import categorical  # noqa: E402
from kernels.categorical import sample  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
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


# ------------------------------------------------------------------------------------------------
# the oldest GPU the kernel supports, and the fallback below it
# ------------------------------------------------------------------------------------------------
NEEDS_TRITON = pytest.mark.skipif(not categorical.triton_available(),
                                  reason="without triton every device takes the float64 reference, silently")


@pytest.mark.parametrize("capability,supported", [((3, 7), False), ((6, 0), False), ((7, 0), False), ((7, 5), True),
                                                  ((8, 0), True), ((8, 9), True), ((9, 0), True), ((12, 0), True)])
def test_the_kernel_supports_compute_capability_7_5_and_newer(capability, supported):
    """K80 (3.7), P100 (6.0) and V100 (7.0) are out; T4 (7.5) and everything since are in."""
    assert categorical.MIN_CAPABILITY == (7, 5)
    assert categorical.kernel_supported(capability) is supported


@pytest.mark.parametrize("bad", ["7.5", 7.5, (7,), [7, 5], (7.0, 5), (True, 5)])
def test_kernel_supported_rejects_what_is_not_a_capability(bad):
    with pytest.raises(TypeError, match=r"capability must be a \(major, minor\) tuple of ints"):
        categorical.kernel_supported(bad)


def test_the_capability_is_asked_of_cuda_devices_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    assert categorical._capability(torch.device("cuda", 0)) == (7, 0)  # a device object needs no GPU
    assert categorical._capability(torch.device("cpu")) is None


@NEEDS_TRITON
@pytest.mark.parametrize("capability,backend,use_kernel", [
    (None, "auto", False), (None, "triton", True), (None, "torch", False),  # CPU: the interpreter on request
    ((9, 0), "auto", True), ((7, 5), "auto", True), ((7, 5), "triton", True), ((7, 5), "torch", False),
    ((6, 0), "torch", False),
])
def test_the_backend_choice_by_device(monkeypatch, capability, backend, use_kernel):
    monkeypatch.setattr(categorical, "_capability", lambda device: capability)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a supported GPU, a CPU or backend='torch': nothing to warn of
        assert categorical._use_kernel(backend, torch.device("cuda" if capability else "cpu")) is use_kernel


@NEEDS_TRITON
def test_an_old_gpu_takes_the_reference_with_one_warning_or_refuses_triton(monkeypatch):
    """A P100 played by CPU tensors: sample() learns a device's capability only through _capability."""
    monkeypatch.setattr(categorical, "_capability", lambda device: (6, 0))
    monkeypatch.setattr(categorical, "_WARNED", set())
    x = torch.randn(6, 9, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match=r"compute capability 6\.0, below the 7\.5 the Triton kernel needs"):
        got = sample(logits=x, seed=5)
    assert torch.equal(got, sample(logits=x, seed=5, backend="torch"))  # what ran is the reference
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sample(logits=x, seed=5)  # once per device
    with pytest.raises(RuntimeError, match=r"backend='triton' needs a GPU of compute capability >= 7\.5; cpu has 6\.0"):
        sample(logits=x, seed=5, backend="triton")


def test_kernel_variants_are_every_launch_of_sample():
    """4 dtypes x (logits, with or without rows=; probs, with or without rows= and extra_mass=)."""
    variants = categorical.kernel_variants()
    assert len(variants) == 24 == len({label for label, *_ in variants})
    for label, signature, constexprs, warps in variants:
        assert signature["x_ptr"] == {"bfloat16": "*bf16", "float16": "*fp16", "float32": "*fp32",
                                      "float64": "*fp64"}[label.split()[0]]
        assert constexprs["KEY_F64"] == (label.startswith("float64 logits"))
        assert constexprs["HAS_EXTRA"] == ("extra_mass=" in label) and constexprs["FAST_LOG2"] and warps == 4
        assert set(constexprs) == {name for name, kind in signature.items() if kind == "constexpr"}


def test_every_launched_variant_compiles_for_the_oldest_supported_gpu():
    """``python -m kernels.bench --compile-for 7.5``: each of the 24 variants built for sm_75 by
    triton.compile, no GPU needed. In a process of its own, without TRITON_INTERPRET: this one may run
    Triton's interpreter, which cannot compile. (Cold, about a second per variant; Triton's cache
    makes reruns quick.)"""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    target = ".".join(map(str, categorical.MIN_CAPABILITY))
    proc = subprocess.run([sys.executable, "-m", "kernels.bench", "--compile-for", target], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode == 2 and "cannot compile the kernel here" in proc.stderr:
        pytest.skip(proc.stderr.strip())  # no triton, or no NVIDIA backend / ptxas in it
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    n = len(categorical.kernel_variants())
    assert re.search(rf"^compiled\s+{n}/{n}\s*$", proc.stdout, re.M), proc.stdout
