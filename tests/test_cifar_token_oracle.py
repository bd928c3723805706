"""The Markov-chain token oracle: its masked conditionals against brute-force enumeration, its vectorised
lookups against a per-position reference, its exact references (marginals, entropy, rare mass) against
enumeration, and its sampler against the chain."""
import itertools
import math

import pytest
import torch

from cifar.token_oracle import MarkovTokenOracle


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def random_chain(V, seed=0, zeros=False):
    g = gen(seed)
    P = torch.rand(V, V, generator=g, dtype=torch.float64) ** 3 + 0.01
    if zeros:
        P[torch.rand(V, V, generator=g) < 0.3] = 0
        P[torch.arange(V), torch.arange(V)] += 0.5
    pi0 = torch.rand(V, generator=g, dtype=torch.float64) + 0.1
    return P / P.sum(1, keepdim=True), pi0 / pi0.sum()


def enumerate_chain(P, pi0, L):
    """All V^L sequences [V^L, L] and their probabilities (1)."""
    V = P.shape[0]
    seqs = torch.tensor(list(itertools.product(range(V), repeat=L)), dtype=torch.long)
    p = pi0[seqs[:, 0]] * P[seqs[:, :-1], seqs[:, 1:]].prod(1)
    return seqs, p


def reference_conditionals(P, pi0, x, mask_id):
    """(3) one position at a time, with torch.linalg.matrix_power: [B, L, V]."""
    B, L = x.shape
    V = P.shape[0]
    out = torch.zeros(B, L, V, dtype=torch.float64)
    for b in range(B):
        known = [i for i in range(L) if x[b, i] != mask_id]
        for i in range(L):
            if x[b, i] != mask_id:
                out[b, i, x[b, i]] = 1
                continue
            left = [j for j in known if j < i]
            right = [k for k in known if k > i]
            if left:
                lf = torch.linalg.matrix_power(P, i - left[-1])[x[b, left[-1]]]
            else:
                lf = pi0 @ torch.linalg.matrix_power(P, i)
            if right:
                rf = torch.linalg.matrix_power(P, right[0] - i)[:, x[b, right[0]]]
            else:
                rf = torch.ones(V, dtype=torch.float64)
            out[b, i] = lf * rf / (lf * rf).sum()
    return out


# ----------------------------------------------------------------------------------------------
# The conditionals
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("table_bytes", [64 << 20, 0])   # every power / the two-level table
def test_conditionals_equal_brute_force_enumeration(table_bytes):
    """L = 5, V = 3: for every mask pattern and several unmasked contents, each masked position's
    prediction is its marginal given the unmasked positions, summed over all 243 sequences."""
    L, V = 5, 3
    P, pi0 = random_chain(V, seed=1)
    oracle = MarkovTokenOracle(P, pi0, length=L, table_bytes=table_bytes)
    seqs, p = enumerate_chain(P, pi0, L)
    truth = oracle.sample(4, generator=gen(2))
    checked = 0
    for pattern in itertools.product([False, True], repeat=L):
        masked = torch.tensor(pattern)
        for x0 in truth:
            x = torch.where(masked, torch.full_like(x0, oracle.mask_id), x0)[None]
            got = oracle.probs_fn(x)[0]
            consistent = (seqs[:, ~masked] == x0[~masked]).all(1)
            w = p * consistent
            for i in torch.nonzero(masked).flatten().tolist():
                expected = torch.zeros(V, dtype=torch.float64).index_add_(0, seqs[:, i], w) / w.sum()
                torch.testing.assert_close(got[i], expected, rtol=1e-12, atol=1e-12)
                checked += 1
            for i in torch.nonzero(~masked).flatten().tolist():
                assert got[i].tolist() == torch.nn.functional.one_hot(x0[i], V).double().tolist()
    assert checked == 4 * L * 2 ** (L - 1)


@pytest.mark.parametrize("table_bytes", [64 << 20, 0])
def test_vectorised_conditionals_equal_a_per_position_reference(table_bytes):
    L, V = 150, 6
    P, pi0 = random_chain(V, seed=3, zeros=True)
    oracle = MarkovTokenOracle(P, pi0, length=L, table_bytes=table_bytes)
    x0 = oracle.sample(5, generator=gen(4))
    rate = torch.tensor([0.0, 0.3, 0.8, 0.97, 1.0])[:, None]
    masked = torch.rand(5, L, generator=gen(5)) < rate
    x = torch.where(masked, torch.full_like(x0, oracle.mask_id), x0)
    got = oracle.probs_fn(x)
    torch.testing.assert_close(got, reference_conditionals(P, pi0, x, oracle.mask_id), rtol=1e-10, atol=1e-12)


def test_the_two_tables_agree_at_image_length():
    oracle = MarkovTokenOracle.ar1(16, rho=0.95, sigma=1.5, floor=1e-7)
    two_level = MarkovTokenOracle(oracle.transition, length=1024, table_bytes=0)
    assert oracle._step == 1024 and two_level._step == 32
    x0 = oracle.sample(3, generator=gen(6))
    masked = torch.rand(3, 1024, generator=gen(7)) < torch.tensor([[0.5], [0.99], [1.0]])
    x = torch.where(masked, torch.full_like(x0, oracle.mask_id), x0)
    p_full, p_two = oracle.probs_fn(x), two_level.probs_fn(x)
    assert p_full.shape == (3, 1024, 16) and p_full.dtype == torch.float64
    torch.testing.assert_close(p_full, p_two, rtol=1e-9, atol=1e-14)
    torch.testing.assert_close(p_full.sum(-1), torch.ones(3, 1024, dtype=torch.float64), rtol=0, atol=1e-12)
    assert (p_full[~masked].argmax(-1) == x0[~masked]).all()


def test_masked_samplers_with_the_oracle_sample_the_chain():
    """A masked sampler driven by exact conditionals draws exact samples: the first-hitting sampler of
    minimal/masked_fhs.py on L = 4, V = 3 reproduces all 81 sequence probabilities (chi-square)."""
    from minimal.masked_fhs import fhs_sample
    L, V, n = 4, 3, 6000
    P, pi0 = random_chain(V, seed=8)
    oracle = MarkovTokenOracle(P, pi0, length=L)
    out = fhs_sample(oracle.probs_fn, (n, L), oracle.mask_id, generator=gen(9))
    x = out[0] if isinstance(out, tuple) else out
    seqs, p = enumerate_chain(P, pi0, L)
    counts = torch.bincount((x * V ** torch.arange(L - 1, -1, -1)).sum(1), minlength=V ** L).double()
    expected = n * p
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 80 + 4 * math.sqrt(2 * 80), chi2    # 80 degrees of freedom, 4 sigma


# ----------------------------------------------------------------------------------------------
# Exact references
# ----------------------------------------------------------------------------------------------

def test_exact_references_equal_enumeration():
    L, V = 5, 3
    P, pi0 = random_chain(V, seed=10)
    oracle = MarkovTokenOracle(P, pi0, length=L)
    seqs, p = enumerate_chain(P, pi0, L)
    assert abs(p.sum().item() - 1) < 1e-12
    torch.testing.assert_close(oracle.log_prob(seqs).exp(), p, rtol=1e-12, atol=1e-15)
    marg = torch.stack([torch.zeros(V, dtype=torch.float64).index_add_(0, seqs[:, i], p) for i in range(L)])
    torch.testing.assert_close(oracle.marginals(), marg, rtol=1e-12, atol=1e-15)
    freq = torch.stack([torch.bincount(s, minlength=V).double() / L for s in seqs])    # [V^L, V]
    torch.testing.assert_close(oracle.token_distribution(), p @ freq, rtol=1e-12, atol=1e-15)
    assert abs(oracle.entropy() - (-(p * p.log()).sum().item() / L)) < 1e-12
    for threshold in (0.05, 0.2, 0.5):
        assert abs(oracle.rare_transition_mass(threshold)
                   - (p * oracle.rare_transition_fraction(seqs, threshold)).sum().item()) < 1e-12
        dist = oracle.token_distribution()
        assert oracle.rare_token_mass(threshold) == pytest.approx(dist[dist < threshold].sum().item(), abs=1e-15)
    torch.testing.assert_close(oracle.token_frequencies(seqs[:2]), torch.cat([freq[0:1], freq[1:2]]).mean(0))


def test_stationary_start_gives_the_same_marginal_everywhere():
    P, _ = random_chain(7, seed=11)
    oracle = MarkovTokenOracle(P, length=300)
    pi = oracle.stationary()
    torch.testing.assert_close(pi @ P, pi, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(oracle.marginals(), pi.expand(300, 7), rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(oracle.token_distribution(), pi, rtol=1e-10, atol=1e-13)


def test_ancestral_samples_follow_the_chain():
    V, L, n = 4, 1024, 64
    P, pi0 = random_chain(V, seed=12)
    oracle = MarkovTokenOracle(P, pi0, length=L)
    x = oracle.sample(n, generator=gen(13))
    assert x.shape == (n, L) and x.dtype == torch.long
    counts = torch.bincount((x[:, :-1] * V + x[:, 1:]).flatten(), minlength=V * V).reshape(V, V).double()
    rows = counts.sum(1, keepdim=True)
    se = (P * (1 - P) / rows).sqrt()
    assert ((counts / rows - P).abs() < 5 * se + 1e-9).all()
    refit = MarkovTokenOracle.fit(x, V, smoothing=0.0)
    assert (refit.transition - P).abs().max() < 0.05
    # -log p / L of exact samples is close to the exact entropy per token
    nll = -oracle.log_prob(x).mean().item() / L
    assert abs(nll - oracle.entropy()) < 0.02


def test_fit_counts_pairs_with_smoothing():
    tokens = torch.tensor([[0, 1, 1, 2], [2, 2, 0, 1]])
    oracle = MarkovTokenOracle.fit(tokens, 4, smoothing=0.5, initial="first")
    counts = torch.tensor([[0, 2, 0, 0], [0, 1, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]], dtype=torch.float64) + 0.5
    torch.testing.assert_close(oracle.transition, counts / counts.sum(1, keepdim=True))
    torch.testing.assert_close(oracle.initial, torch.tensor([1.5, 0.5, 1.5, 0.5], dtype=torch.float64) / 4)
    assert oracle.length == 4 and oracle.mask_id == 4 and oracle.vocab_size == 4
    with pytest.raises(ValueError, match="smoothing"):
        MarkovTokenOracle.fit(tokens, 4, smoothing=0.0)    # token 3 has no successor


def test_ar1_chain_has_rare_tokens():
    oracle = MarkovTokenOracle.ar1(32, rho=0.9, sigma=1.0, floor=1e-8)
    dist = oracle.token_distribution()
    assert abs(dist.sum().item() - 1) < 1e-12
    assert 0 < oracle.rare_token_mass(1e-4) < 1e-3       # the extreme levels are rare
    assert oracle.rare_transition_mass(1e-6) > 0


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------

def test_bad_input_is_rejected():
    P, pi0 = random_chain(3)
    with pytest.raises(TypeError, match="transition"):
        MarkovTokenOracle(P.numpy())
    with pytest.raises(ValueError, match="transition"):
        MarkovTokenOracle(P[:2])
    with pytest.raises(ValueError, match="transition must sum to 1"):
        MarkovTokenOracle(P * 2)
    with pytest.raises(ValueError, match="initial"):
        MarkovTokenOracle(P, pi0[:2])
    with pytest.raises(ValueError, match="mask_id"):
        MarkovTokenOracle(P, mask_id=2)
    with pytest.raises(TypeError, match="length"):
        MarkovTokenOracle(P, length=5.0)
    oracle = MarkovTokenOracle(P, length=6)
    with pytest.raises(TypeError, match="x must be an integer"):
        oracle.probs_fn(torch.zeros(2, 6))
    with pytest.raises(ValueError, match=r"x must have shape \[B, L\] with L = 6"):
        oracle.probs_fn(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="x must hold tokens"):
        oracle.probs_fn(torch.full((2, 6), 7))
    with pytest.raises(ValueError, match="x must hold tokens"):
        oracle.log_prob(torch.full((2, 6), oracle.mask_id))    # complete sequences only
    with pytest.raises(ValueError, match="threshold"):
        oracle.rare_token_mass(-1.0)
    with pytest.raises(TypeError, match="generator"):
        oracle.sample(2, generator=0)
    P0 = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)   # alternating: 0 then 0 is impossible
    with pytest.raises(ValueError, match="probability 0"):
        MarkovTokenOracle(P0, length=3).probs_fn(torch.tensor([[0, 2, 1]]))


# ----------------------------------------------------------------------------------------------
# Devices (CPU only here: the CUDA path runs the same operations where the tables are)
# ----------------------------------------------------------------------------------------------

def masked_batch(oracle, B=3, seed=0):
    x = oracle.sample(B, generator=gen(seed))
    x[torch.rand(x.shape, generator=gen(seed + 1)) < 0.6] = oracle.mask_id
    return x


@pytest.mark.parametrize("table_bytes", [64 << 20, 0])
def test_an_explicit_cpu_device_gives_identical_results(table_bytes):
    P, pi0 = random_chain(5)
    default = MarkovTokenOracle(P, pi0, length=40, table_bytes=table_bytes)
    x = masked_batch(default)
    full = default.sample(4, generator=gen(3))
    for other in (MarkovTokenOracle(P, pi0, length=40, table_bytes=table_bytes, device="cpu"),
                  MarkovTokenOracle(P, pi0, length=40, table_bytes=table_bytes, device=torch.device("cpu")),
                  default.to("cpu")):
        assert other.device == torch.device("cpu")
        assert torch.equal(other.probs_fn(x), default.probs_fn(x))          # bit for bit
        assert torch.equal(other.sample(4, generator=gen(3)), full)
        assert torch.equal(other.log_prob(full), default.log_prob(full))
        # LAPACK's least squares may differ in the last bit between two calls, on one device too
        assert torch.allclose(other.stationary(), default.stationary(), rtol=0, atol=1e-15)
        assert other.entropy() == default.entropy()
    assert default.to("cpu") is default                                       # nothing to move


def test_to_moves_a_copy_and_results_come_back_on_the_inputs_device():
    oracle = MarkovTokenOracle.ar1(6, length=16, device="cpu")
    x = masked_batch(oracle)
    meta = oracle.to("meta")                       # a device without data: only where tensors live is checked
    assert meta is not oracle and oracle.device.type == "cpu" and oracle.transition.device.type == "cpu"
    assert meta.device.type == "meta" and all(getattr(meta, n).device.type == "meta" for n in meta._TENSORS)
    assert "device=meta" in repr(meta) and "device=cpu" in repr(oracle)
    for out in (oracle.probs_fn(x), oracle.log_prob(oracle.sample(2)), oracle.rare_transition_fraction(
            oracle.sample(2), 1e-3), oracle.token_frequencies(oracle.sample(2))):
        assert out.device == x.device


def test_a_bad_device_is_rejected_by_name():
    P, _ = random_chain(3)
    with pytest.raises(TypeError, match="device must be a str or a torch.device"):
        MarkovTokenOracle(P, device=0)
    with pytest.raises(ValueError, match="device must name a torch device.*'gpu'"):
        MarkovTokenOracle(P, device="gpu")
    oracle = MarkovTokenOracle(P, length=4)
    with pytest.raises(ValueError, match="device must name"):
        oracle.to("nowhere")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            MarkovTokenOracle.ar1(4, length=4, device="cuda")
    with pytest.raises(ValueError, match="generator is on cpu but the oracle is on meta"):
        oracle.to("meta").sample(2, generator=gen())
