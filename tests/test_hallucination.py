"""Tests for minimal/hallucination.py: the DDPM pieces, the paper's claims at small size, bad input."""
import math

import numpy as np
import pytest
import torch

import toy2d
from minimal.hallucination import (ddpm_loss, ddpm_sample, filter_by_variance, linear_beta_schedule,
                                   trajectory_variance)

T = 100
BETAS = linear_beta_schedule(T, 1e-3, 0.2)
ALPHAS_CUMPROD = torch.cumprod(1 - BETAS, 0)


def exact_eps_model(mixture):
    """eps*(x_t, t/T) of a toy2d mixture: the minimiser of the DDPM loss, as an eps_model callable."""
    def eps_model(x_t, t):
        index = torch.round(t * T).long() - 1                  # t / T -> step t -> row t - 1
        abar = ALPHAS_CUMPROD[index].to(x_t.dtype)
        return mixture.eps(x_t, abar.sqrt(), (1 - abar).sqrt())
    return eps_model


def halluc_mask(samples, mixture, k_std=4.0, std=0.05):
    return mixture.nearest_mode_distance(samples) > k_std * std


# ------------------------------------------------------------------ the DDPM pieces
def test_linear_beta_schedule_endpoints_and_final_signal():
    betas = linear_beta_schedule(1000, 1e-4, 0.02)
    assert betas.shape == (1000,) and betas.dtype == torch.float64
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert bool((betas[1:] > betas[:-1]).all())
    # DDPM's standard schedule and this course's (T=100, beta 1e-3..0.2) both end in pure noise
    assert torch.cumprod(1 - betas, 0)[-1].item() < 1e-4 and ALPHAS_CUMPROD[-1].item() < 1e-4


def test_ddpm_loss_of_the_exact_model_is_the_irreducible_loss():
    # x_0 ~ N(0, 1): x_t ~ N(0, 1) and E[eps | x_t] = sqrt(1 - abar) x_t, so the best loss is E_t[abar_t]
    mixture = toy2d.GaussianMixture(torch.ones(1), torch.zeros(1, 1), stds=1.0)
    x0 = torch.randn(200_000, 1, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    best = ddpm_loss(exact_eps_model(mixture), x0, ALPHAS_CUMPROD, generator=gen).item()
    zero = ddpm_loss(lambda x, t: torch.zeros_like(x), x0, ALPHAS_CUMPROD, generator=gen).item()
    assert best == pytest.approx(ALPHAS_CUMPROD.mean().item(), abs=0.01)
    assert zero == pytest.approx(1.0, abs=0.01)


def test_ddpm_sample_follows_the_ancestral_recursion_exactly_for_gaussian_data():
    # x_0 ~ N(m, s^2): the exact eps is linear in x_t, so each step (4) is x_{t-1} = A_t x_t + c_t + sqrt(beta_t) z
    # and the sample's mean and variance follow a scalar recursion from (0, 1) at t = T.
    m, s2 = 1.5, 0.3 ** 2

    def eps_model(x_t, t):
        abar = ALPHAS_CUMPROD[torch.round(t * T).long() - 1].to(x_t.dtype)[:, None]
        return (1 - abar).sqrt() * (x_t - abar.sqrt() * m) / (abar * s2 + 1 - abar)

    samples, traj = ddpm_sample(eps_model, (20_000, 1), BETAS, generator=torch.Generator().manual_seed(0),
                                dtype=torch.float64)
    mean, var = 0.0, 1.0
    for t in range(T, 0, -1):
        beta, abar = BETAS[t - 1].item(), ALPHAS_CUMPROD[t - 1].item()
        A = (1 - beta / (abar * s2 + 1 - abar)) / math.sqrt(1 - beta)
        c = beta * math.sqrt(abar) * m / ((abar * s2 + 1 - abar) * math.sqrt(1 - beta))
        mean, var = A * mean + c, A * A * var + (beta if t > 1 else 0.0)
    assert traj.shape == (T, 20_000, 1)
    assert samples.mean().item() == pytest.approx(mean, abs=4 * math.sqrt(var / 20_000))
    assert samples.var().item() == pytest.approx(var, rel=0.04)
    assert mean == pytest.approx(m, abs=0.01) and math.sqrt(var) == pytest.approx(0.3, rel=0.06)
    # the last step adds no noise and sigma_1^2 = beta_1 = 1 - abar_1, so the sample is x0hat at t = 1
    assert torch.allclose(samples, traj[-1], atol=1e-9)


def test_record_x0_int_keeps_the_last_steps_of_the_same_trajectory():
    model = lambda x, t: 0.1 * x + t[:, None]                  # any deterministic eps_model
    full_s, full = ddpm_sample(model, (7, 2), BETAS, generator=torch.Generator().manual_seed(3))
    last_s, last = ddpm_sample(model, (7, 2), BETAS, generator=torch.Generator().manual_seed(3), record_x0=10)
    none_s, none = ddpm_sample(model, (7, 2), BETAS, generator=torch.Generator().manual_seed(3), record_x0=False)
    assert last.shape == (10, 7, 2) and none is None
    assert torch.equal(last, full[-10:]) and torch.equal(full_s, last_s) and torch.equal(full_s, none_s)


def test_trajectory_variance_is_the_population_variance_of_the_last_steps_averaged_over_dims():
    traj = torch.randn(30, 5, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = np.var(traj.numpy()[-10:], axis=0).reshape(5, -1).mean(axis=1)
    np.testing.assert_allclose(trajectory_variance(traj, last_k=10).numpy(), expected, rtol=1e-12)
    constant_tail = traj.clone()
    constant_tail[-4:] = 7.0
    assert torch.all(trajectory_variance(constant_tail, last_k=4) == 0)


def test_filter_by_variance_rank_and_threshold_rules():
    samples = torch.arange(6.0)[:, None]
    scores = torch.tensor([0.5, 0.1, 0.9, 0.1, 0.3, 0.7])
    kept, mask = filter_by_variance(samples, scores, keep=3)
    assert mask.tolist() == [False, True, False, True, True, False]
    assert kept[:, 0].tolist() == [1.0, 3.0, 4.0]                  # order preserved
    kept, mask = filter_by_variance(samples, scores, threshold=0.6)
    assert mask.tolist() == [True, True, False, True, True, False]
    assert filter_by_variance(samples, scores, keep=0)[0].shape == (0, 1)


# ------------------------------------------------------------------ the paper's claims, small
def test_sampling_with_the_exact_denoiser_does_not_hallucinate():
    """The control: the true (staircase) denoiser puts no sample between the modes."""
    x, mixture = toy2d.mixture_1d(10, seed=0)
    samples, _ = ddpm_sample(exact_eps_model(mixture), (4_000, 1), BETAS,
                             generator=torch.Generator().manual_seed(0), record_x0=False)
    # the sampler's modes come out a few % wider than the data's, so a rare sample passes 4 std
    assert halluc_mask(samples, mixture).float().mean().item() <= 1e-3
    assert bool((mixture.nearest_mode_distance(samples) < 0.3).all())     # none near a midpoint


@pytest.fixture(scope="module")
def trained_1d():
    """A small DDPM on the official 1D mixture (means 1, 2, 3, std 0.05), and 8,000 of its samples."""
    x, mixture = toy2d.mixture_1d(2_000, seed=0)
    torch.manual_seed(0)
    model = toy2d.MLP(1, hidden=64)
    toy2d.train(model, lambda m, xb: ddpm_loss(m, xb, ALPHAS_CUMPROD), x, steps=1_500, batch_size=256,
                lr=3e-3, progress=False)
    with torch.no_grad():
        samples, traj = ddpm_sample(model, (8_000, 1), BETAS, generator=torch.Generator().manual_seed(1),
                                    record_x0=10)
    return mixture, samples, traj


def test_a_learned_model_hallucinates_between_neighbouring_modes(trained_1d):
    mixture, samples, _ = trained_1d
    halluc = halluc_mask(samples, mixture)
    assert halluc.float().mean().item() > 0.002                # the exact denoiser gives 0 (test above)
    # mode interpolation: the out-of-support samples lie between two modes, not beyond the outer ones
    assert bool(((samples[halluc] > 1.0) & (samples[halluc] < 3.0)).float().mean() > 0.8)


def test_trajectory_variance_flags_hallucinations(trained_1d):
    mixture, samples, traj = trained_1d
    halluc = halluc_mask(samples, mixture)
    scores = trajectory_variance(traj, last_k=5)
    assert scores[halluc].median() > 4 * scores[~halluc].median()
    # dropping the 5% highest-variance samples removes far more than 5% of the hallucinations
    _, mask = filter_by_variance(samples, scores, keep=int(0.95 * len(samples)))
    removed = (~mask[halluc]).float().mean().item()
    kept = mask[~halluc].float().mean().item()
    assert removed > 0.25 and kept > 0.95, (removed, kept)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("wrong", [lambda x, t: x[:, :1], lambda x, t: x[:1], lambda x, t: x.sum()])
def test_a_model_output_of_the_wrong_shape_is_an_error_not_a_broadcast(wrong):
    # x[:, :1] [B, 1] and x[:1] [1, D] broadcast against eps [B, D] silently; x.sum() is a scalar
    with pytest.raises(ValueError, match=r"eps_model returned shape .*expected \(4, 3\)"):
        ddpm_loss(wrong, torch.zeros(4, 3), ALPHAS_CUMPROD)
    with pytest.raises(ValueError, match=r"eps_model returned shape .*expected \(4, 3\)"):
        ddpm_sample(wrong, (4, 3), BETAS)


def test_an_empty_batch_of_trajectories_scores_to_an_empty_tensor():
    assert trajectory_variance(torch.zeros(5, 0, 2), last_k=3).shape == (0,)


def test_bad_input_raises_naming_the_argument():
    traj = torch.zeros(5, 3, 1)
    with pytest.raises(ValueError, match="last_k"):
        trajectory_variance(traj, last_k=6)
    with pytest.raises(TypeError, match="last_k"):
        trajectory_variance(traj, last_k=2.0)
    with pytest.raises(TypeError, match="x0_traj"):
        trajectory_variance(np.zeros((5, 3)), last_k=2)
    samples, scores = torch.zeros(4, 2), torch.zeros(4)
    with pytest.raises(ValueError, match="scores"):
        filter_by_variance(samples, torch.zeros(3), keep=2)
    with pytest.raises(ValueError, match="keep"):
        filter_by_variance(samples, scores, keep=5)
    with pytest.raises(ValueError, match="keep and threshold"):
        filter_by_variance(samples, scores, keep=2, threshold=0.1)
    with pytest.raises(ValueError, match="keep and threshold"):
        filter_by_variance(samples, scores)
    with pytest.raises(TypeError, match="threshold"):
        filter_by_variance(samples, scores, threshold=math.nan)
    with pytest.raises(ValueError, match="T"):
        linear_beta_schedule(0, 1e-3, 0.2)
    with pytest.raises(ValueError, match="beta_T"):
        linear_beta_schedule(10, 1e-3, 1.5)
    with pytest.raises(ValueError, match="beta_T"):
        linear_beta_schedule(10, 0.2, 1e-3)
    model = lambda x, t: x
    with pytest.raises(ValueError, match="shape"):
        ddpm_sample(model, (4,), BETAS)
    with pytest.raises(ValueError, match="record_x0"):
        ddpm_sample(model, (4, 1), BETAS, record_x0=T + 1)
    with pytest.raises(ValueError, match="betas"):
        ddpm_sample(model, (4, 1), torch.tensor([0.1, 1.0]))
    with pytest.raises(TypeError, match="eps_model"):
        ddpm_sample("not a model", (4, 1), BETAS)
    with pytest.raises(ValueError, match="x0"):
        ddpm_loss(model, torch.zeros(4), ALPHAS_CUMPROD)
    with pytest.raises(ValueError, match="alphas_cumprod"):
        ddpm_loss(model, torch.zeros(4, 1), torch.tensor([0.5, 0.0]))
