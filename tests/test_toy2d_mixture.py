"""The Gaussian mixture's exact log-density, denoiser and score, checked against independent routes:
autograd, Monte Carlo posterior means, sampling of the forward process, and sub-mixtures."""
import math

import pytest
import torch

from toy2d import ClassConditionalMixture, GaussianMixture


def anisotropic_mixture() -> GaussianMixture:
    """3 components in 2D with full, different covariances and unequal weights."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 2, 2, generator=g, dtype=torch.float64)
    covs = 0.05 * A @ A.transpose(1, 2) + 0.02 * torch.eye(2, dtype=torch.float64)
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.2]], dtype=torch.float64)
    return GaussianMixture([0.5, 0.3, 0.2], means, covs)


def line_mixture() -> GaussianMixture:
    return GaussianMixture(None, [[1.0], [2.0], [3.0]], stds=0.05)


def gaussian_logpdf(x, mean, cov):
    """log N(x; mean, cov) for x [B, D] by a route independent of the mixture code (Cholesky)."""
    dist = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    return dist.log_prob(x)


def test_log_prob_matches_direct_sum_of_gaussians():
    gm = anisotropic_mixture()
    x = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    direct = torch.logsumexp(torch.stack([math.log(gm.weights[k]) + gaussian_logpdf(x, gm.means[k], gm.covs[k])
                                          for k in range(gm.K)], dim=1), dim=1)
    torch.testing.assert_close(gm.log_prob(x), direct, rtol=1e-12, atol=1e-12)


def test_log_prob_integrates_to_one_on_a_line():
    gm = line_mixture()
    x = torch.linspace(0.0, 4.0, 40001, dtype=torch.float64)[:, None]
    mass = torch.trapezoid(gm.log_prob(x).exp(), x[:, 0])
    assert abs(mass.item() - 1.0) < 1e-6


@pytest.mark.parametrize("make", [anisotropic_mixture, line_mixture])
def test_score_equals_autograd_of_log_prob_t(make):
    gm = make()
    g = torch.Generator().manual_seed(2)
    B = 64
    x_t = (2 * torch.randn(B, gm.D, generator=g, dtype=torch.float64)).requires_grad_(True)
    a = torch.rand(B, generator=g, dtype=torch.float64)  # per-sample levels
    s = 0.05 + torch.rand(B, 1, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad(gm.log_prob_t(x_t, a, s).sum(), x_t)
    torch.testing.assert_close(gm.score(x_t.detach(), a, s), grad, rtol=1e-9, atol=1e-9)


def test_score_denoise_and_eps_obey_tweedie():
    gm = anisotropic_mixture()
    x_t = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    a, s = 0.7, 0.4
    score, x0_hat, eps_hat = gm.score(x_t, a, s), gm.denoise(x_t, a, s), gm.eps(x_t, a, s)
    torch.testing.assert_close(score, (a * x0_hat - x_t) / s ** 2, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(eps_hat, (x_t - a * x0_hat) / s, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("make,a,s", [(anisotropic_mixture, 0.8, 0.5), (line_mixture, 0.9, 0.3)])
def test_denoise_equals_monte_carlo_posterior_mean(make, a, s):
    """E[x0 | x_t] by self-normalised importance sampling: draw x0 ~ p0, weight by N(x_t; a x0, s^2 I)."""
    gm = make()
    g = torch.Generator().manual_seed(4)
    x0 = gm.sample(400_000, generator=g, dtype=torch.float64)                     # [N, D]
    x_t = gm.marginal(a, s).sample(6, generator=g, dtype=torch.float64)           # typical x_t points [6, D]
    log_w = -((x_t[:, None, :] - a * x0[None]) ** 2).sum(-1) / (2 * s ** 2)       # [6, N]
    w = torch.softmax(log_w, dim=1)
    mc_mean = w @ x0                                                               # [6, D]
    ess = 1.0 / (w ** 2).sum(1)                                                    # effective sample size
    mc_var = (w[:, :, None] * (x0[None] - mc_mean[:, None]) ** 2).sum(1)           # posterior variance [6, D]
    stderr = (mc_var / ess[:, None]).sqrt()
    assert (ess > 1000).all(), ess
    err = (gm.denoise(x_t, a, s) - mc_mean).abs()
    assert (err < 5 * stderr + 1e-4).all(), (err, stderr)


def test_denoise_is_a_staircase_at_small_noise():
    """With noise above the mode width but below the spacing, the exact denoiser is nearly flat
    at each mode (slope ~ sigma^2 / (sigma^2 + s^2) = 0.2) and jumps between modes (lesson 01)."""
    gm = line_mixture()  # modes 1, 2, 3, std 0.05
    a, s = 1.0, 0.1
    near_modes = torch.tensor([[0.75], [1.25], [1.75], [2.25], [2.75], [3.25]], dtype=torch.float64)
    nearest = torch.tensor([[1.0], [1.0], [2.0], [2.0], [3.0], [3.0]], dtype=torch.float64)
    assert (gm.denoise(near_modes, a, s) - nearest).abs().max() < 0.06
    jump = gm.denoise(torch.tensor([[1.55]], dtype=torch.float64), a, s) - \
        gm.denoise(torch.tensor([[1.45]], dtype=torch.float64), a, s)
    assert jump.item() > 0.6  # slope > 6 across the midpoint


def test_marginal_matches_log_prob_t_and_forward_samples():
    gm = anisotropic_mixture()
    a, s = 0.6, 0.8
    marg = gm.marginal(a, s)
    x = torch.randn(40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(marg.log_prob(x), gm.log_prob_t(x, a, s), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(marg.means, a * gm.means)
    # the forward process, simulated, has the marginal's mean and covariance
    g = torch.Generator().manual_seed(6)
    x0 = gm.sample(200_000, generator=g, dtype=torch.float64)
    x_t = a * x0 + s * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    mean = (marg.weights[:, None] * marg.means).sum(0)
    second = (marg.weights[:, None, None] * (marg.covs + marg.means[:, :, None] * marg.means[:, None, :])).sum(0)
    cov = second - mean[:, None] * mean[None, :]
    torch.testing.assert_close(x_t.mean(0), mean, atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(x_t.T), cov, atol=0.015, rtol=0)


def test_sample_reproduces_with_a_seed_and_follows_the_weights():
    gm = anisotropic_mixture()
    x1, l1 = gm.sample(50_000, generator=torch.Generator().manual_seed(7), return_labels=True)
    x2, l2 = gm.sample(50_000, generator=torch.Generator().manual_seed(7), return_labels=True)
    assert x1.dtype == torch.float32 and x1.shape == (50_000, 2) and l1.shape == (50_000,)
    assert torch.equal(x1, x2) and torch.equal(l1, l2)
    freq = torch.bincount(l1, minlength=3).double() / 50_000
    torch.testing.assert_close(freq, gm.weights, atol=0.01, rtol=0)
    for k in range(3):  # each component's samples have that component's covariance
        torch.testing.assert_close(torch.cov(x1[l1 == k].double().T), gm.covs[k], atol=0.01, rtol=0)


def test_posterior_sums_to_one_and_picks_the_nearest_mode_at_low_noise():
    gm = line_mixture()
    x_t = torch.tensor([[1.05], [2.9]])
    r = gm.posterior(x_t, 1.0, 0.05)
    torch.testing.assert_close(r.sum(1), torch.ones(2))
    assert r.argmax(1).tolist() == [0, 2]


def test_class_conditional_denoise_equals_the_sub_mixture():
    gm = anisotropic_mixture()
    cc = gm.class_conditional([0, 1, 0])
    assert isinstance(cc, ClassConditionalMixture) and cc.num_classes == 2
    x_t = torch.randn(30, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    a, s = 0.9, 0.3
    for c in range(2):
        sub = cc.mixture(c)
        y = torch.full((30,), c, dtype=torch.long)
        torch.testing.assert_close(cc.denoise(x_t, a, s, y), sub.denoise(x_t, a, s), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(cc.score(x_t, a, s, y), sub.score(x_t, a, s), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(cc.mixture(0).weights, torch.tensor([0.5, 0.2], dtype=torch.float64) / 0.7)
    # the null class and y=None are the full mixture; a mixed batch is row-wise the same
    null = torch.full((30,), 2, dtype=torch.long)
    torch.testing.assert_close(cc.denoise(x_t, a, s, null), gm.denoise(x_t, a, s))
    torch.testing.assert_close(cc.denoise(x_t, a, s, None), gm.denoise(x_t, a, s))
    mixed = torch.arange(30) % 3
    out = cc.denoise(x_t, a, s, mixed)
    torch.testing.assert_close(out[mixed == 1], cc.mixture(1).denoise(x_t[mixed == 1], a, s))


def test_class_conditional_sample_respects_classes():
    gm = GaussianMixture(None, [[-5.0], [0.0], [5.0]], stds=0.1)
    cc = gm.class_conditional([1, 0, 1])
    y = torch.tensor([0, 1, 0, 1] * 50)
    x, y_out = cc.sample(200, y=y, generator=torch.Generator().manual_seed(9))
    assert torch.equal(y_out, y)
    assert (x[y == 0].abs() < 1).all() and (x[y == 1].abs() > 4).all()


def test_nearest_mode_distance_matches_brute_force():
    gm = anisotropic_mixture()
    x = torch.randn(20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    brute = torch.tensor([min(torch.linalg.norm(p - m).item() for m in gm.means) for p in x], dtype=torch.float64)
    torch.testing.assert_close(gm.nearest_mode_distance(x), brute)
    assert gm.nearest_mode_distance(gm.means).abs().max() < 1e-12


def test_chunked_evaluation_matches_one_pass(monkeypatch):
    import toy2d.mixture

    gm = anisotropic_mixture()
    cc = gm.class_conditional([0, 1, 0])
    g = torch.Generator().manual_seed(11)
    x = torch.randn(50, 2, generator=g, dtype=torch.float64)
    a, s = torch.rand(50, generator=g, dtype=torch.float64), 0.1 + torch.rand(50, generator=g, dtype=torch.float64)
    y = torch.arange(50) % 3
    calls = (lambda: gm.log_prob_t(x, a, s), lambda: gm.posterior(x, a, s), lambda: gm.denoise(x, a, s),
             lambda: cc.score(x, a, s, y), lambda: gm.log_prob(x))
    whole = [f() for f in calls]
    monkeypatch.setattr(toy2d.mixture, "CHUNK", 7)
    for f, expected in zip(calls, whole):
        torch.testing.assert_close(f(), expected, rtol=1e-14, atol=1e-14)
    assert gm.denoise(torch.zeros(0, 2), 1.0, 0.5).shape == (0, 2)


def test_stds_forms_agree():
    means = [[0.0, 0.0], [1.0, 1.0]]
    by_keyword = GaussianMixture(None, means, stds=0.3)
    for other in (GaussianMixture(None, means, 0.3), GaussianMixture(None, means, stds=[0.3, 0.3]),
                  GaussianMixture(None, means, 0.09 * torch.eye(2).expand(2, 2, 2))):
        torch.testing.assert_close(other.covs, by_keyword.covs)


def test_outputs_keep_the_input_dtype():
    gm = anisotropic_mixture()
    x = torch.randn(4, 2)
    for out in (gm.denoise(x, 0.5, 0.5), gm.score(x, 0.5, 0.5), gm.log_prob_t(x, 0.5, 0.5), gm.log_prob(x)):
        assert out.dtype == torch.float32


@pytest.mark.parametrize("x", [1e155, -1e155, 1e300])
def test_huge_x_t_gives_the_nearest_outer_component_in_closed_form(x):
    # Far beyond the modes, component K (or 1) explains x_t: E[x_0 | x_t] = mu + g (x - a mu) with the
    # gain g = a lam / (a^2 lam + s^2), computed here in plain float64 arithmetic. |x_t - a mu|^2 overflows.
    gm, a, s = line_mixture(), 1.0, 1.0
    mu = 3.0 if x > 0 else 1.0
    gain = a * 0.05 ** 2 / (a * a * 0.05 ** 2 + s * s)
    x_t = torch.tensor([[x]], dtype=torch.float64)
    expected = mu + gain * (x - a * mu)
    torch.testing.assert_close(gm.denoise(x_t, a, s), torch.tensor([[expected]], dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(gm.eps(x_t, a, s), torch.tensor([[(x - a * expected) / s]], dtype=torch.float64),
                               rtol=1e-12, atol=0)
    torch.testing.assert_close(gm.score(x_t, a, s), -gm.eps(x_t, a, s) / s)
    r = gm.posterior(x_t, a, s)
    assert torch.isfinite(r).all() and r.sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("s", [1e160, 1e300])
def test_huge_noise_forgets_x_t(s):
    # s -> infinity: x_t says nothing, so r_k = w_k, E[x_0 | x_t] = sum_k w_k mu_k, eps = x_t / s (a = 1).
    gm = anisotropic_mixture()
    x_t = torch.tensor([[1.5, -0.5], [1e150, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(gm.posterior(x_t, 1.0, s), gm.weights.expand(2, 3))
    prior_mean = (gm.weights[:, None] * gm.means).sum(0).expand(2, 2)
    torch.testing.assert_close(gm.denoise(x_t, 1.0, s), prior_mean)
    # to rounding relative to each row's size (the covariances' rotations mix the coordinates)
    torch.testing.assert_close(gm.eps(x_t, 1.0, s), (x_t - prior_mean) / s, rtol=1e-12, atol=1e-12 * 1e150 / s)
    log_p = gm.log_prob_t(x_t, 1.0, s)
    assert torch.isfinite(log_p).all()
    assert log_p[0].item() == pytest.approx(-2 * math.log(s) - math.log(2 * math.pi), rel=1e-12)


def test_huge_inputs_in_two_dimensions_stay_finite_and_match_float64_at_moderate_size():
    gm = anisotropic_mixture()
    x_t = torch.tensor([[1e200, -3e199], [2.0, 1.0]], dtype=torch.float64)
    for what in (gm.denoise, gm.score, gm.eps, gm.posterior):
        assert torch.isfinite(what(x_t, 0.7, 0.2)).all(), what.__name__
    # the second row is moderate: the same answer as the direct formula r_k ~ w_k N(x; a mu_k, C_k)
    a, s = 0.7, 0.2
    covs_t = a * a * gm.covs + s * s * torch.eye(2, dtype=torch.float64)
    log_r = torch.log(gm.weights) + torch.stack([gaussian_logpdf(x_t[1:], a * gm.means[k], covs_t[k])
                                                 for k in range(3)], dim=1)
    torch.testing.assert_close(gm.posterior(x_t, a, s)[1:], torch.softmax(log_r, dim=1))


BAD_INPUTS = [
    (lambda: GaussianMixture([1.0], torch.zeros(0, 2), stds=0.1), "means"),
    (lambda: GaussianMixture([1.0, 1.0], [[0.0], [1.0], [2.0]], stds=0.1), "weights"),
    (lambda: GaussianMixture([0.0, 0.0], [[0.0], [1.0]], stds=0.1), "weights"),
    (lambda: GaussianMixture([1.0, -1.0], [[0.0], [1.0]], stds=0.1), "weights"),
    (lambda: GaussianMixture(None, [[0.0], [1.0]], stds=0.0), "stds"),
    (lambda: GaussianMixture(None, [[0.0], [1.0]], stds=[0.1, -0.1]), "stds"),
    (lambda: GaussianMixture(None, [[0.0], [1.0]]), "covs"),
    (lambda: GaussianMixture(None, [[0.0, 0.0]], torch.eye(3)[None]), "covs"),
    (lambda: GaussianMixture(None, [[0.0, 0.0]], -torch.eye(2)[None]), "covs"),
    (lambda: line_mixture().denoise(torch.zeros(4), 1.0, 0.1), "x_t"),
    (lambda: line_mixture().denoise(torch.zeros(4, 2), 1.0, 0.1), "x_t"),
    (lambda: line_mixture().score(torch.zeros(4, 1), 1.0, 0.0), "s"),
    (lambda: line_mixture().score(torch.zeros(4, 1), 1.0, -0.5), "s"),
    (lambda: line_mixture().log_prob_t(torch.zeros(4, 1), torch.ones(3), 0.1), "a"),
    (lambda: line_mixture().marginal(1.0, 0.0), "s"),
    (lambda: line_mixture().sample(-1), "n"),
    (lambda: line_mixture().sample(5, generator="seed"), "generator"),
    (lambda: line_mixture().class_conditional([0, 1, 1]).sample(3, generator=5), "generator"),
    (lambda: line_mixture().log_prob(torch.zeros(4, 3)), "x"),
    (lambda: line_mixture().class_conditional([0, 1]), "labels"),
    (lambda: line_mixture().class_conditional([0, 2, 2]), "labels"),
    (lambda: line_mixture().class_conditional([0, 1, 1]).denoise(torch.zeros(4, 1), 1.0, 0.1,
                                                                   torch.tensor([0, 1, 2, 3])), "y"),
    (lambda: line_mixture().class_conditional([0, 1, 1]).mixture(5), "c"),
]


@pytest.mark.parametrize("call,name", BAD_INPUTS)
def test_bad_input_raises_naming_the_argument(call, name):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert str(info.value).split()[0].startswith(name), str(info.value)
