"""Tests for minimal/hallucination.py: the DDPM pieces, the paper's claims at small size, bad input."""
import math
from collections import deque

import numpy as np
import pytest
import torch

import toy2d
from minimal.hallucination import (ddpm_loss, ddpm_sample, filter_by_variance, filter_tradeoff,
                                   linear_beta_schedule, trajectory_variance)

T = 100
BETAS = linear_beta_schedule(T, 1e-3, 0.2)
ALPHAS_CUMPROD = torch.cumprod(1 - BETAS, 0)


def halluc_mask(samples, mixture, k_std=4.0, std=0.05):
    return mixture.nearest_mode_distance(samples) > k_std * std


# ------------------------------------------------------------------ the DDPM pieces
def test_linear_beta_schedule_endpoints_and_final_signal():
    betas = linear_beta_schedule()                              # DDPM's: T = 1000, 1e-4 .. 0.02
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
    best = ddpm_loss(mixture.ddpm_eps_model(BETAS), x0, BETAS, generator=gen).item()
    zero = ddpm_loss(lambda x, t: torch.zeros_like(x), x0, BETAS, generator=gen).item()
    assert best == pytest.approx(ALPHAS_CUMPROD.mean().item(), abs=0.01)
    assert zero == pytest.approx(1.0, abs=0.01)


def test_ddpm_sample_follows_the_ancestral_recursion_exactly_for_gaussian_data():
    # x_0 ~ N(m, s^2): the exact eps is linear in x_t, so each step (4) is x_{t-1} = A_t x_t + c_t + sqrt(beta_t) z
    # and the sample's mean and variance follow a scalar recursion from (0, 1) at t = T.
    m, s2 = 1.5, 0.3 ** 2

    def eps_model(x_t, t):
        abar = ALPHAS_CUMPROD[torch.round(t * T).long() - 1].to(x_t.dtype)[:, None]
        return (1 - abar).sqrt() * (x_t - abar.sqrt() * m) / (abar * s2 + 1 - abar)

    traj = []
    samples = ddpm_sample(eps_model, (20_000, 1), BETAS, generator=torch.Generator().manual_seed(0),
                          dtype=torch.float64, trajectory=traj)
    mean, var = 0.0, 1.0
    for t in range(T, 0, -1):
        beta, abar = BETAS[t - 1].item(), ALPHAS_CUMPROD[t - 1].item()
        A = (1 - beta / (abar * s2 + 1 - abar)) / math.sqrt(1 - beta)
        c = beta * math.sqrt(abar) * m / ((abar * s2 + 1 - abar) * math.sqrt(1 - beta))
        mean, var = A * mean + c, A * A * var + (beta if t > 1 else 0.0)
    assert len(traj) == T and traj[0].shape == (20_000, 1)
    assert samples.mean().item() == pytest.approx(mean, abs=4 * math.sqrt(var / 20_000))
    assert samples.var().item() == pytest.approx(var, rel=0.04)
    assert mean == pytest.approx(m, abs=0.01) and math.sqrt(var) == pytest.approx(0.3, rel=0.06)
    # the last step adds no noise and sigma_1^2 = beta_1 = 1 - abar_1, so the sample is x0hat at t = 1
    assert torch.allclose(samples, traj[-1], atol=1e-9)


def test_a_trajectory_list_or_deque_records_x0hat_without_changing_the_samples():
    model = lambda x, t: 0.1 * x + t[:, None]                  # any deterministic eps_model
    full, last = [], deque(maxlen=10)
    plain = ddpm_sample(model, (7, 2), BETAS, generator=torch.Generator().manual_seed(3))
    with_list = ddpm_sample(model, (7, 2), BETAS, generator=torch.Generator().manual_seed(3), trajectory=full)
    with_deque = ddpm_sample(model, (7, 2), BETAS, generator=torch.Generator().manual_seed(3), trajectory=last)
    assert len(full) == T and len(last) == 10 and full[0].shape == (7, 2)
    assert all(torch.equal(a, b) for a, b in zip(last, full[-10:]))
    assert torch.equal(plain, with_list) and torch.equal(plain, with_deque)
    assert torch.equal(trajectory_variance(last, last_k=10), trajectory_variance(torch.stack(full), last_k=10))


def test_the_model_sees_the_true_step_over_T_as_a_plain_batch_tensor():
    seen = []

    def model(x, t):
        seen.append(t.clone())
        return torch.zeros_like(x)

    ddpm_sample(model, (3, 1), BETAS, timesteps=[90, 40, 7, 1])
    assert [tuple(t.shape) for t in seen] == [(3,)] * 4 and all(t.stride() == (1,) for t in seen)
    assert [t[0].item() for t in seen] == pytest.approx([0.9, 0.4, 0.07, 0.01])
    seen.clear()
    ddpm_sample(model, (3, 1), BETAS)
    assert [t[0].item() for t in seen] == pytest.approx([t / T for t in range(T, 0, -1)])


def test_all_timesteps_is_plain_ddpm_and_a_subsequence_is_improved_ddpm_respacing():
    model = lambda x, t: torch.tanh(2 * x - 1) * t[:, None]
    kwargs = dict(dtype=torch.float64)
    default = ddpm_sample(model, (16, 1), BETAS, generator=torch.Generator().manual_seed(0), **kwargs)
    listed = ddpm_sample(model, (16, 1), BETAS, generator=torch.Generator().manual_seed(0),
                         timesteps=torch.arange(T, 0, -1), **kwargs)
    torch.testing.assert_close(default, listed, rtol=1e-12, atol=1e-12)
    # respacing by hand, as improved DDPM builds it: the kept steps' abar define new betas, and a model
    # on the new clock that maps step t' back to the kept training step
    kept = [100, 80, 61, 40, 22, 9, 3, 1]
    abar_kept = ALPHAS_CUMPROD[torch.tensor(kept[::-1]) - 1]                          # ascending steps
    respaced = 1 - abar_kept / torch.cat([torch.ones(1, dtype=torch.float64), abar_kept[:-1]])
    on_new_clock = lambda x, t: model(x, torch.tensor(kept[::-1], dtype=x.dtype)[torch.round(t * 8).long() - 1] / T)
    by_hand = ddpm_sample(on_new_clock, (16, 1), respaced, generator=torch.Generator().manual_seed(1), **kwargs)
    built_in = ddpm_sample(model, (16, 1), BETAS, timesteps=kept, generator=torch.Generator().manual_seed(1), **kwargs)
    torch.testing.assert_close(built_in, by_hand, rtol=1e-10, atol=1e-10)


def test_trajectory_variance_is_the_population_variance_of_the_last_steps_averaged_over_dims():
    traj = torch.randn(30, 5, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = np.var(traj.numpy()[-10:], axis=0).reshape(5, -1).mean(axis=1)
    np.testing.assert_allclose(trajectory_variance(traj, last_k=10).numpy(), expected, rtol=1e-12)
    constant_tail = traj.clone()
    constant_tail[-4:] = 7.0
    assert torch.all(trajectory_variance(constant_tail, last_k=4) == 0)


def test_filter_by_variance_keeps_the_lowest_scores_in_order():
    samples = torch.arange(6.0)[:, None]
    scores = torch.tensor([0.5, 0.1, 0.9, 0.1, 0.3, 0.7])
    kept, mask = filter_by_variance(samples, scores, keep=3)
    assert mask.tolist() == [False, True, False, True, True, False]
    assert kept[:, 0].tolist() == [1.0, 3.0, 4.0]                  # order preserved
    assert filter_by_variance(samples, scores, keep=0)[0].shape == (0, 1)


def test_filter_tradeoff_counts_removed_and_kept_for_every_rank():
    scores = torch.tensor([0.5, 0.1, 0.9, 0.2, 0.3, 0.7])
    halluc = torch.tensor([False, False, True, False, False, True])
    removed, kept, thresholds = filter_tradeoff(scores, halluc)
    assert thresholds.tolist() == sorted(scores.tolist())
    assert kept.tolist() == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    assert removed.tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0, 0.5, 0.0])


# ------------------------------------------------------------------ the paper's claims, small
def test_sampling_with_the_exact_denoiser_does_not_hallucinate():
    """The control: the true (staircase) denoiser puts no sample between the modes."""
    x, mixture = toy2d.mixture_1d(10, seed=0)
    samples = ddpm_sample(mixture.ddpm_eps_model(BETAS), (4_000, 1), BETAS, generator=torch.Generator().manual_seed(0))
    # the sampler's modes come out a few % wider than the data's, so a rare sample passes 4 std
    assert halluc_mask(samples, mixture).float().mean().item() <= 1e-3
    assert bool((mixture.nearest_mode_distance(samples) < 0.3).all())     # none near a midpoint


@pytest.fixture(scope="module")
def trained_1d():
    """A small DDPM on the official 1D mixture (means 1, 2, 3, std 0.05), and 8,000 of its samples."""
    x, mixture = toy2d.mixture_1d(2_000, seed=0)
    torch.manual_seed(0)
    model = toy2d.MLP(1, hidden=64)
    toy2d.train(model, lambda m, xb: ddpm_loss(m, xb, BETAS), x, steps=1_500, batch_size=256,
                lr=3e-3, progress=False)
    traj = deque(maxlen=10)
    samples = ddpm_sample(model, (8_000, 1), BETAS, generator=torch.Generator().manual_seed(1), trajectory=traj)
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
    # filter_tradeoff at the same rank rule gives the same pair
    removed_all, kept_all, _ = filter_tradeoff(scores, halluc)
    i = int(0.95 * len(samples)) - 1
    assert removed_all[i].item() == pytest.approx(removed) and kept_all[i].item() == pytest.approx(kept)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("wrong", [lambda x, t: x[:, :1], lambda x, t: x[:1], lambda x, t: x.sum()])
def test_a_model_output_of_the_wrong_shape_is_an_error_not_a_broadcast(wrong):
    # x[:, :1] [B, 1] and x[:1] [1, D] broadcast against eps [B, D] silently; x.sum() is a scalar
    with pytest.raises(ValueError, match=r"eps_model returned shape .*expected \(4, 3\)"):
        ddpm_loss(wrong, torch.zeros(4, 3), BETAS)
    with pytest.raises(ValueError, match=r"eps_model returned shape .*expected \(4, 3\)"):
        ddpm_sample(wrong, (4, 3), BETAS)


def test_an_empty_batch_of_trajectories_scores_to_an_empty_tensor():
    assert trajectory_variance(torch.zeros(5, 0, 2), last_k=3).shape == (0,)


def test_bad_input_raises_naming_the_argument():
    traj = torch.zeros(5, 3, 1)
    with pytest.raises(ValueError, match="x0_traj"):
        trajectory_variance(traj, last_k=6)
    with pytest.raises(ValueError, match="x0_traj"):
        trajectory_variance(list(traj), last_k=6)
    with pytest.raises(TypeError, match="last_k"):
        trajectory_variance(traj, last_k=2.0)
    with pytest.raises(TypeError, match="x0_traj"):
        trajectory_variance(np.zeros((5, 3)), last_k=2)
    samples, scores = torch.zeros(4, 2), torch.zeros(4)
    with pytest.raises(ValueError, match="scores"):
        filter_by_variance(samples, torch.zeros(3), keep=2)
    with pytest.raises(ValueError, match="keep"):
        filter_by_variance(samples, scores, keep=5)
    with pytest.raises(TypeError, match="keep"):
        filter_by_variance(samples, scores, keep=2.0)
    with pytest.raises(ValueError, match="T"):
        linear_beta_schedule(0, 1e-3, 0.2)
    with pytest.raises(ValueError, match="beta_T"):
        linear_beta_schedule(10, 1e-3, 1.5)
    with pytest.raises(ValueError, match="beta_T"):
        linear_beta_schedule(10, 0.2, 1e-3)
    model = lambda x, t: x
    with pytest.raises(ValueError, match="shape"):
        ddpm_sample(model, (4,), BETAS)
    with pytest.raises(TypeError, match="trajectory"):
        ddpm_sample(model, (4, 1), BETAS, trajectory=torch.zeros(3))
    for bad in ([5, 7, 1], [5, 5, 1], [T + 1, 1], [3, 0], []):
        with pytest.raises(ValueError, match="timesteps"):
            ddpm_sample(model, (4, 1), BETAS, timesteps=bad)
    with pytest.raises(TypeError, match="timesteps"):
        ddpm_sample(model, (4, 1), BETAS, timesteps=[5.0, 1.0])
    with pytest.raises(ValueError, match="betas"):
        ddpm_sample(model, (4, 1), torch.tensor([0.1, 1.0]))
    with pytest.raises(TypeError, match="generator"):
        ddpm_sample(model, (4, 1), BETAS, generator=0)
    with pytest.raises(TypeError, match="eps_model"):
        ddpm_sample("not a model", (4, 1), BETAS)
    with pytest.raises(ValueError, match="x0"):
        ddpm_loss(model, torch.zeros(4), BETAS)
    with pytest.raises(ValueError, match="x0"):
        ddpm_loss(model, torch.zeros(0, 1), BETAS)
    with pytest.raises(ValueError, match="betas"):
        ddpm_loss(model, torch.zeros(4, 1), torch.tensor([0.5, 0.0]))
    with pytest.raises(TypeError, match="generator"):
        ddpm_loss(model, torch.zeros(4, 1), BETAS, generator="seed")
    with pytest.raises(ValueError, match="hallucinated"):
        filter_tradeoff(torch.zeros(3), torch.zeros(3, dtype=torch.bool))
