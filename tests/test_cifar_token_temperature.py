"""cifar.token_temperature: the tempered chain, its expected negative log-likelihood, the fitted temperature."""
import math

import pytest
import torch

from cifar.token_oracle import MarkovTokenOracle
from cifar.token_temperature import fit_temperature, tempered_chain, tempered_nll, token_statistics


@pytest.fixture(scope="module")
def oracle():
    return MarkovTokenOracle.ar1(8, rho=0.8, sigma=1.0, floor=1e-2, length=64)


def test_tau_one_is_the_chain_and_its_entropy(oracle):
    P, pi0 = tempered_chain(oracle.transition, oracle.initial, 1.0)
    assert torch.allclose(P, oracle.transition, atol=1e-12) and torch.allclose(pi0, oracle.initial, atol=1e-12)
    assert tempered_nll(oracle.transition, oracle.initial, 1.0, oracle.length) == pytest.approx(oracle.entropy(), rel=1e-9)


def test_tempered_rows_are_distributions_and_cold_rows_are_peaked(oracle):
    P, _ = tempered_chain(oracle.transition, oracle.initial, 0.1)
    assert torch.allclose(P.sum(1), torch.ones(8, dtype=torch.float64))
    assert (P.amax(1) > oracle.transition.amax(1)).all()


def test_tempered_nll_matches_samples_of_the_tempered_chain(oracle):
    """(2) against Monte Carlo: sample the tempered chain, score under the true one."""
    for tau in (0.5, 2.0):
        P, pi0 = tempered_chain(oracle.transition, oracle.initial, tau)
        x = MarkovTokenOracle(P, pi0, length=oracle.length).sample(4000, generator=torch.Generator().manual_seed(1))
        nll = -oracle.log_prob(x) / oracle.length
        se = nll.std().item() / math.sqrt(len(nll))
        assert abs(nll.mean().item() - tempered_nll(oracle.transition, oracle.initial, tau, oracle.length)) < 4 * se


def test_fit_temperature_inverts_the_nll_and_reads_samples(oracle):
    args = (oracle.transition, oracle.initial)
    values = [tempered_nll(*args, tau, oracle.length) for tau in (0.3, 0.6, 1.0, 1.5)]
    assert values == sorted(values)
    for tau in (0.3, 0.7, 1.0, 1.8):
        assert fit_temperature(*args, tempered_nll(*args, tau, oracle.length), oracle.length) == pytest.approx(tau, rel=1e-3)
    P, pi0 = tempered_chain(*args, 0.6)
    x = MarkovTokenOracle(P, pi0, length=oracle.length).sample(2000, generator=torch.Generator().manual_seed(2))
    fitted = fit_temperature(*args, (-oracle.log_prob(x) / oracle.length).mean().item(), oracle.length)
    assert fitted == pytest.approx(0.6, abs=0.03)


def test_token_statistics_of_exact_samples_match_the_truth(oracle):
    x = oracle.sample(4000, generator=torch.Generator().manual_seed(3))
    thr = 0.05
    stats = token_statistics(oracle, x, thr)
    assert set(stats) == {"rare", "rare_transitions", "nll"} and all(v.shape == (4000,) for v in stats.values())
    assert oracle.rare_token_mass(thr) > 0.01 and oracle.rare_transition_mass(thr) > 0.01
    for key, truth in (("rare", oracle.rare_token_mass(thr)), ("rare_transitions", oracle.rare_transition_mass(thr)),
                       ("nll", oracle.entropy())):
        se = stats[key].std().item() / math.sqrt(4000)
        assert abs(stats[key].mean().item() - truth) < 4 * se, key


def test_bad_input():
    P, pi0 = torch.full((3, 3), 1 / 3, dtype=torch.float64), torch.full((3,), 1 / 3, dtype=torch.float64)
    with pytest.raises(TypeError, match="transition"):
        tempered_nll([[1.0]], pi0, 1.0)
    with pytest.raises(ValueError, match="transition must have shape"):
        tempered_nll(P[:2], pi0, 1.0)
    with pytest.raises(ValueError, match="tau"):
        tempered_chain(P, pi0, 0.0)
    with pytest.raises(TypeError, match="tau"):
        tempered_chain(P, pi0, "1")
    with pytest.raises(ValueError, match="length"):
        tempered_nll(P, pi0, 1.0, 0)
    with pytest.raises(ValueError, match="outside"):
        fit_temperature(P, pi0, 5.0, 8)  # a uniform chain's nll is log 3 at every tau
    with pytest.raises(TypeError, match="oracle"):
        token_statistics(object(), torch.zeros(1, 4, dtype=torch.long))


def test_statistics_with_an_explicit_cpu_oracle_are_identical(oracle):
    """The oracle computes where its tables are and hands results back on x's device (here both the CPU)."""
    default = MarkovTokenOracle(oracle.transition, oracle.initial, length=oracle.length)
    on_cpu = MarkovTokenOracle(oracle.transition, oracle.initial, length=oracle.length, device="cpu")
    x = default.sample(16, generator=torch.Generator().manual_seed(2))
    a, b = token_statistics(default, x), token_statistics(on_cpu, x)
    assert all(torch.equal(a[k], b[k]) and a[k].device == x.device for k in a)
    nll = a["nll"].mean().item()
    assert fit_temperature(on_cpu.transition, on_cpu.initial, nll, 64) == \
        fit_temperature(default.transition, default.initial, nll, 64)
