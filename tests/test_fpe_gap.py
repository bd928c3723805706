"""Tests for minimal/fpe_gap.py: the Fokker-Planck residuals vanish on exact densities and scores and
only there, the two samplers agree when the score is exact, the regulariser lowers the residual, and
bad input is refused before any work."""
import math

import pytest
import torch

from minimal.fpe_gap import (OU, VP, dsm_loss, log_fp_residual, pf_ode_sample, regularised_loss,
                             reverse_sde_sample, sample_collocation, score_fp_residual,
                             score_from_potential, time_grid)

DT = torch.float64
MEANS = torch.tensor([[1.3, 1.3], [-1.3, 0.0], [0.5, -1.5]], dtype=DT)
LOG_W = torch.log(torch.tensor([0.5, 0.3, 0.2], dtype=DT))
STD0 = 0.3


def mixture_log_p(sde, perturb=0.0):
    """The exact log-density phi(x, t) of a Gaussian mixture (std STD0) diffused by ``sde``;
    ``perturb`` adds a smooth term that breaks the Fokker-Planck equation."""
    def phi(x, t):
        a, s = sde.marginal(t)
        var = (a ** 2 * STD0 ** 2 + s ** 2)[:, None]                          # [B, 1]
        d2 = ((x[:, None, :] - a[:, None, None] * MEANS) ** 2).sum(-1)        # [B, K]
        out = torch.logsumexp(LOG_W - 0.5 * d2 / var - torch.log(2 * math.pi * var), dim=1)
        return out + perturb * torch.sin(x[:, 0]) * torch.exp(-t)
    return phi


def points(sde, n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, t = sample_collocation(sde, n, 2, box=3.0, generator=g, dtype=DT)
    return x, t.clamp_min(0.05 * sde.T)       # mid-range: where Lai et al.'s finite difference in t is accurate


@pytest.mark.parametrize("sde", [OU(), VP()], ids=["OU", "VP"])
def test_marginals_solve_the_moment_equations(sde):
    # X_t | X_0 ~ N(a X_0, s^2 I) for dX = -k X dt + g dW means da/dt = -k a and d(s^2)/dt = -2 k s^2 + g^2
    t = torch.linspace(0.01, sde.T, 50, dtype=DT).requires_grad_(True)
    a, s = sde.marginal(t)
    da, ds2 = (torch.autograd.grad(v.sum(), t, retain_graph=True)[0] for v in (a, s ** 2))
    torch.testing.assert_close(da, -sde.k(t) * a)
    torch.testing.assert_close(ds2, -2 * sde.k(t) * s ** 2 + sde.g(t) ** 2)


@pytest.mark.parametrize("sde", [OU(), VP()], ids=["OU", "VP"])
def test_log_residual_vanishes_on_exact_log_density_only(sde):
    x, t = points(sde)
    exact = log_fp_residual(mixture_log_p(sde), sde, x, t)
    assert exact.shape == (300,)
    assert exact.abs().max() < 1e-9, exact.abs().max()
    perturbed = log_fp_residual(mixture_log_p(sde, perturb=0.1), sde, x, t)
    assert perturbed.pow(2).mean().sqrt() > 1e-2


def test_log_residual_of_a_flat_potential_is_minus_div_f():
    # phi = 0: every derivative vanishes and R = div f = -D for the OU process (D = 2), -beta(t) D / 2 for VP
    x = torch.randn(7, 2, dtype=DT)
    flat = lambda x, t: 0.0 * x.sum(1) + 0.0 * t
    torch.testing.assert_close(log_fp_residual(flat, OU(), x, 0.3), torch.full((7,), -2.0, dtype=DT))
    vp = VP()
    torch.testing.assert_close(log_fp_residual(flat, vp, x, 0.5), torch.full((7,), -vp.beta_min - 0.5 * (vp.beta_max - vp.beta_min), dtype=DT))


@pytest.mark.parametrize("sde", [OU(), VP()], ids=["OU", "VP"])
def test_score_residual_vanishes_on_exact_score(sde):
    x, t = points(sde, n=200)
    score = score_from_potential(mixture_log_p(sde), create_graph=True)
    bad = score_from_potential(mixture_log_p(sde, perturb=0.1), create_graph=True)
    r = score_fp_residual(score, sde, x, t, divergence="exact")
    assert r.shape == x.shape
    bad_rms = score_fp_residual(bad, sde, x, t, divergence="exact").pow(2).mean().sqrt()
    # what is left is the O(h^2) error of the finite difference in t (largest for VP at small t)
    assert r.pow(2).mean().sqrt() < 0.01 * bad_rms and bad_rms > 1e-2, (r.pow(2).mean().sqrt(), bad_rms)
    # one Hutchinson probe is unbiased: averaged over many probes the residual vanishes too
    reps = 400
    g = torch.Generator().manual_seed(1)
    r_h = score_fp_residual(score, sde, x[:5].repeat(reps, 1), t[:5].repeat(reps), generator=g).reshape(reps, 5, 2)
    standard_error = r_h.std(0) / math.sqrt(reps)
    assert ((r_h.mean(0) - r[:5]).abs() < 4 * standard_error + 1e-6).all()
    assert r_h.std(0).max() > 1e-3                                    # and a single probe is noisy


@pytest.mark.parametrize("sde", [OU(), VP()], ids=["OU", "VP"])
def test_score_residual_of_an_exact_score_vanishes_down_to_t_min(sde):
    # a sharp mixture (std 0.02) at t_min and just above: Lai et al.'s stencil called the model at
    # t - 1e-3 < t_min (t = 0 for VP: the residual of this exact score was ~1e6; NaN for OU)
    std = 0.02

    def phi(x, t):
        a, s = sde.marginal(t)
        var = (a ** 2 * std ** 2 + s ** 2)[:, None]
        d2 = ((x[:, None, :] - a[:, None, None] * MEANS) ** 2).sum(-1)
        return torch.logsumexp(LOG_W - 0.5 * d2 / var - torch.log(2 * math.pi * var), dim=1)

    g = torch.Generator().manual_seed(0)
    x = MEANS[torch.arange(60) % 3] + 0.03 * torch.randn(60, 2, generator=g, dtype=DT)   # near the data
    score = score_from_potential(phi, create_graph=True)
    for t in (sde.t_min, 1.5 * sde.t_min, 3 * sde.t_min, 1e-3 + sde.t_min):
        r = score_fp_residual(score, sde, x, t, divergence="exact")
        assert torch.isfinite(r).all() and r.abs().max() < 1e-6, (t, r.abs().max())


def lai_stencil_residual(score_fn, sde, x, t, h_s=1e-3, h_d=5e-4):
    """Lai et al.'s formulation (sony/fp-diffusion): d_t s by the three-point stencil {t - h_s, t, t + h_d},
    exact divergence; an independent reference for the mid-range."""
    x = x.detach().requires_grad_(True)
    s = score_fn(x, t)
    ds_dt = (h_s ** 2 * score_fn(x, t + h_d) + (h_d ** 2 - h_s ** 2) * s - h_d ** 2 * score_fn(x, t - h_s)) / (h_s * h_d * (h_d + h_s))
    div = sum(torch.autograd.grad(s[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1]))
    g2, f = sde.g(t) ** 2, sde.drift(x, t)
    pot = 0.5 * g2 * (div + (s ** 2).sum(1)) - (f * s).sum(1) - sde.div_drift(x, t)
    return ds_dt - torch.autograd.grad(pot.sum(), x, create_graph=True)[0]


@pytest.mark.parametrize("sde", [OU(), VP()], ids=["OU", "VP"])
def test_score_residual_matches_the_official_stencil_mid_range(sde):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2)).to(DT)
    score = lambda x, t: net(torch.cat([x, t[:, None] / sde.T], 1))
    x, t = points(sde, n=50)
    ours = score_fp_residual(score, sde, x, t, divergence="exact")
    torch.testing.assert_close(ours, lai_stencil_residual(score, sde, x, t), atol=1e-5, rtol=1e-4)


def test_score_residual_is_the_gradient_of_the_log_residual():
    # for s = grad phi, eq. (7) is grad_x of eq. (6): check on a random smooth potential network
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)).to(DT)
    phi = lambda x, t: net(torch.cat([x, t[:, None]], 1)).squeeze(1)
    sde = OU()
    x, t = points(sde, n=50)
    xr = x.clone().requires_grad_(True)
    (grad_R,) = torch.autograd.grad(log_fp_residual(phi, sde, xr, t).sum(), xr)
    r = score_fp_residual(score_from_potential(phi, create_graph=True), sde, x, t, divergence="exact")
    torch.testing.assert_close(r, grad_R, atol=1e-5, rtol=1e-4)


def gaussian_score(sde, m, std):
    """Exact score of N(m, std^2 I) data diffused by ``sde``."""
    def score(x, t):
        a, s = sde.marginal(t)
        return -(x - a[:, None] * m) / (a ** 2 * std ** 2 + s ** 2)[:, None]
    return score


@pytest.mark.parametrize("sde", [OU(), VP()], ids=["OU", "VP"])
def test_samplers_with_the_exact_score_reach_the_data(sde):
    m, std = torch.tensor([1.0, -0.5], dtype=DT), 0.4
    score = gaussian_score(sde, m, std)
    ts = time_grid(sde, nfe=100, refine_last=5)
    x_T = sde.prior_sample((2000, 2), generator=torch.Generator().manual_seed(0), dtype=DT)
    for x in (pf_ode_sample(score, sde, x_T, ts),
              reverse_sde_sample(score, sde, x_T, ts, generator=torch.Generator().manual_seed(1))):
        assert x.shape == x_T.shape
        assert (x.mean(0) - m).abs().max() < 0.05
        assert (x.std(0) - std).abs().max() < 0.03


def test_samplers_are_shape_agnostic_and_seeded():
    sde = VP()
    score = lambda x, t: -x                                          # any callable [B, *S] -> [B, *S]
    x_T = sde.prior_sample((3, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    ts = torch.linspace(1.0, 0.0, 11)
    assert pf_ode_sample(score, sde, x_T, ts).shape == (3, 1, 4, 4)
    a = reverse_sde_sample(score, sde, x_T, ts, generator=torch.Generator().manual_seed(5))
    b = reverse_sde_sample(score, sde, x_T, ts, generator=torch.Generator().manual_seed(5))
    assert a.shape == (3, 1, 4, 4) and torch.equal(a, b)


def test_time_grid_matches_the_official_code():
    ts = time_grid(OU(), nfe=800)
    assert ts.numel() == 891 and ts[0] == 10.0 and ts[-1] == 0.0   # 790 steps of 0.0125, then 100 of 0.00125
    steps = ts[:-1] - ts[1:]
    torch.testing.assert_close(steps[:790], torch.full((790,), 0.0125, dtype=DT))
    torch.testing.assert_close(steps[790:], torch.full((100,), 0.00125, dtype=DT))


def test_dsm_loss_prefers_the_exact_score():
    sde = OU()
    g = torch.Generator().manual_seed(0)
    m, std = torch.tensor([1.0, -0.5], dtype=DT), 0.4
    x0 = m + std * torch.randn(20000, 2, generator=g, dtype=DT)
    exact = dsm_loss(gaussian_score(sde, m, std), sde, x0, generator=torch.Generator().manual_seed(1), weighting="sigma2")
    wrong = dsm_loss(gaussian_score(sde, m + 0.5, std), sde, x0, generator=torch.Generator().manual_seed(1), weighting="sigma2")
    assert exact < wrong


def test_regulariser_lowers_the_residual():
    # 80 steps on a 2-Gaussian data set: w_R = 1 leaves a much smaller residual than w_R = 0
    sde = OU()
    g = torch.Generator().manual_seed(0)
    data = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])[torch.randint(0, 2, (4096,), generator=g)] + 0.3 * torch.randn(4096, 2, generator=g)
    xc, tc = sample_collocation(sde, 2000, 2, generator=torch.Generator().manual_seed(9))
    residual = {}
    for w_R in (0.0, 1.0):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.SiLU(), torch.nn.Linear(32, 1))
        phi = lambda x, t: net(torch.cat([x, t[:, None] / sde.T], 1)).squeeze(1) - (x ** 2).sum(1)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        for step in range(80):
            batch = data[torch.randint(0, 4096, (128,), generator=g)]
            loss = regularised_loss(phi, sde, batch, w_R, generator=g, weighting="sigma2")
            opt.zero_grad()
            loss.backward()
            opt.step()
        residual[w_R] = log_fp_residual(phi, sde, xc, tc).pow(2).mean().item()
    assert residual[1.0] < 0.2 * residual[0.0], residual


def test_regularised_loss_parts_and_score_kind():
    sde = VP()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.SiLU(), torch.nn.Linear(16, 2))
    score = lambda x, t: net(torch.cat([x, t[:, None]], 1))
    x0 = torch.randn(64, 2)
    loss, dsm, pen = regularised_loss(score, sde, x0, 0.5, kind="score", generator=torch.Generator().manual_seed(0), return_parts=True)
    torch.testing.assert_close(loss.detach(), dsm + 0.5 * pen)
    assert pen > 0
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    plain = regularised_loss(score, sde, x0, 0.0, kind="score", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(plain, dsm_loss(score, sde, x0, generator=torch.Generator().manual_seed(0)))


# ---- bad input ---------------------------------------------------------------------------------

def test_bad_time_grids_are_refused():
    sde, score, x_T = OU(), (lambda x, t: -x), torch.zeros(4, 2)
    with pytest.raises(ValueError, match="ts"):
        pf_ode_sample(score, sde, x_T, torch.tensor([10.0, 5.0, 7.0, 0.0]))         # not monotone
    with pytest.raises(ValueError, match="ts"):
        reverse_sde_sample(score, sde, x_T, torch.linspace(0.0, 10.0, 5))           # increasing
    with pytest.raises(ValueError, match="ts"):
        pf_ode_sample(score, sde, x_T, torch.linspace(12.0, 0.0, 5))                # beyond T
    with pytest.raises(ValueError, match="ts"):
        pf_ode_sample(score, sde, x_T, torch.tensor([1.0]))                         # a single time


def test_a_score_of_the_wrong_shape_is_refused():
    sde, ts = OU(), torch.linspace(10.0, 0.0, 5)
    wrong = lambda x, t: x[:, :1]
    with pytest.raises(ValueError, match="score_fn"):
        pf_ode_sample(wrong, sde, torch.zeros(4, 2), ts)
    with pytest.raises(ValueError, match="score_fn"):
        reverse_sde_sample(wrong, sde, torch.zeros(4, 2), ts)
    with pytest.raises(ValueError, match="score_fn"):
        score_fp_residual(wrong, sde, torch.zeros(4, 2), 1.0)
    with pytest.raises(ValueError, match="score_fn"):
        dsm_loss(wrong, sde, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="phi_fn"):
        log_fp_residual(lambda x, t: x, sde, torch.zeros(4, 2), 1.0)


def test_times_outside_the_range_are_refused():
    phi = mixture_log_p(OU())
    with pytest.raises(ValueError, match=r"t must lie in .*\[0, 10.0\]"):
        log_fp_residual(phi, OU(), torch.zeros(3, 2, dtype=DT), torch.tensor([1.0, 11.0, 2.0], dtype=DT))
    with pytest.raises(ValueError, match="t must lie"):
        score_fp_residual(lambda x, t: -x, VP(), torch.zeros(3, 2), -0.5)
    with pytest.raises(ValueError, match="t must be"):
        log_fp_residual(phi, OU(), torch.zeros(3, 2, dtype=DT), torch.ones(2, dtype=DT))  # wrong batch


def test_other_bad_arguments_are_refused():
    sde, phi = OU(), mixture_log_p(OU())
    x0 = torch.zeros(8, 2)
    with pytest.raises(ValueError, match="w_R"):
        regularised_loss(phi, sde, x0, -1.0)
    with pytest.raises(ValueError, match="kind"):
        regularised_loss(phi, sde, x0, 1.0, kind="density")
    with pytest.raises(ValueError, match="weighting"):
        dsm_loss(lambda x, t: -x, sde, x0, weighting="likelihood")
    with pytest.raises(TypeError, match="sde"):
        pf_ode_sample(lambda x, t: -x, "OU", x0, torch.linspace(1.0, 0.0, 3))
    with pytest.raises(ValueError, match="x_T"):
        pf_ode_sample(lambda x, t: -x, sde, torch.zeros(8), torch.linspace(1.0, 0.0, 3))
    with pytest.raises(ValueError, match="T must"):
        OU(T=-1.0)
    with pytest.raises(ValueError, match="beta_max"):
        VP(beta_min=5.0, beta_max=1.0)
    with pytest.raises(ValueError, match="divergence"):
        score_fp_residual(lambda x, t: -x, sde, x0, 1.0, divergence="trace")


class Counting:
    """A score model that counts its calls: bad input must be refused before the first one."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, t):
        self.calls += 1
        return -x


@pytest.mark.parametrize("bad", [3, "seed", torch.zeros(2)], ids=["int", "str", "tensor"])
def test_a_generator_that_is_not_a_torch_generator_is_refused_before_work(bad):
    sde, score = OU(), Counting()
    calls = {
        "reverse_sde_sample": lambda: reverse_sde_sample(score, sde, torch.zeros(4, 2), torch.linspace(10.0, 0.0, 5), generator=bad),
        "score_fp_residual": lambda: score_fp_residual(score, sde, torch.zeros(4, 2), 1.0, generator=bad),
        "prior_sample": lambda: sde.prior_sample((4, 2), generator=bad),
        "sample_collocation": lambda: sample_collocation(sde, 4, 2, generator=bad),
        "dsm_loss": lambda: dsm_loss(score, sde, torch.zeros(4, 2), generator=bad),
        "regularised_loss": lambda: regularised_loss(score, sde, torch.zeros(4, 2), 1.0, kind="score", generator=bad),
    }
    for name, call in calls.items():
        with pytest.raises(TypeError, match="generator must be a torch.Generator"):
            call()
        assert score.calls == 0, name


def test_empty_batches_are_refused_clearly():
    sde, score, ts = OU(), Counting(), torch.linspace(10.0, 0.0, 5)
    empty = torch.zeros(0, 2)
    for call in (lambda: pf_ode_sample(score, sde, empty, ts), lambda: reverse_sde_sample(score, sde, empty, ts),
                 lambda: score_fp_residual(score, sde, empty, 1.0), lambda: dsm_loss(score, sde, empty),
                 lambda: log_fp_residual(lambda x, t: -(x ** 2).sum(1), sde, empty, 1.0)):
        with pytest.raises(ValueError, match="non-empty"):
            call()
    assert score.calls == 0
    with pytest.raises(ValueError, match="shape"):
        sde.prior_sample((0, 2))


def test_a_potential_that_returns_no_tensor_is_refused():
    sde = OU()
    with pytest.raises(ValueError, match="phi_fn"):
        pf_ode_sample(score_from_potential(lambda x, t: 0.0), sde, torch.zeros(4, 2), torch.linspace(10.0, 0.0, 5))


def test_samplers_return_the_sample_and_record_the_steps_through_trajectory():
    import collections
    sde, score = VP(), gaussian_score(VP(), torch.tensor([1.0, -0.5], dtype=DT), 0.4)
    x_T = sde.prior_sample((16, 2), generator=torch.Generator().manual_seed(0), dtype=DT)
    ts = time_grid(sde, nfe=20, refine_last=2, refine_factor=3)
    steps = ts.numel() - 1
    for sample in (lambda **kw: pf_ode_sample(score, sde, x_T, ts, **kw),
                   lambda **kw: reverse_sde_sample(score, sde, x_T, ts, generator=torch.Generator().manual_seed(1), **kw)):
        plain, trajectory, last = sample(), [], collections.deque(maxlen=3)
        out = sample(trajectory=trajectory)
        assert isinstance(out, torch.Tensor) and torch.equal(out, plain)
        assert len(trajectory) == steps and torch.equal(trajectory[-1], out)
        assert all(x.shape == x_T.shape for x in trajectory)
        sample(trajectory=last)
        assert len(last) == 3 and torch.equal(last[0], trajectory[-3])


def test_a_non_tensor_is_a_type_error_and_a_wrong_shape_names_both_shapes():
    sde, ts = OU(), torch.linspace(10.0, 0.0, 5)
    with pytest.raises(TypeError, match="x_T must be a torch.Tensor"):
        pf_ode_sample(lambda x, t: -x, sde, [[0.0, 0.0]], ts)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        log_fp_residual(mixture_log_p(sde), sde, [[0.0, 0.0]], 1.0)
    with pytest.raises(ValueError, match=r"score_fn returned shape \(1, 2\), expected \(4, 2\)"):
        reverse_sde_sample(lambda x, t: x[:1], sde, torch.zeros(4, 2), ts)
