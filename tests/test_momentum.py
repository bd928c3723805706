"""Lesson 03: the momentum paper's claims at small size, and bad input (minimal/momentum.py)."""
import collections
import math

import numpy as np
import pytest
import torch

from minimal.momentum import (
    PAPER_NAMES, dpm_solver_pp_sample, ghvb_coeffs, is_stable, linear_beta_schedule, lmm_polynomials,
    lmm_sample, lmm_solve, momentum_number, official_timesteps, real_stability_interval, sample_by_name,
    stability_boundary, uniform_timesteps,
)

# ---------------------------------------------------------------------------------------------
# Stability regions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order, end", [(1, -2.0), (2, -1.0), (3, -6 / 11), (4, -3 / 10)])
def test_adams_bashforth_real_interval_ends(order, end):
    assert real_stability_interval("ab", order) == pytest.approx(end, abs=1e-8)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("beta", [0.9, 0.8, 0.5])
def test_heavy_ball_stretches_the_interval_by_two_minus_beta_over_beta(order, beta):
    ab = real_stability_interval("ab", order)
    hb = real_stability_interval("hb", order, beta)
    assert hb / ab == pytest.approx((2 - beta) / beta, rel=1e-7)


@pytest.mark.parametrize("beta", [0.9, 0.8, 0.5])
def test_ghvb_interval_lies_between_neighbouring_orders_and_below_hb(beta):
    # GHVB 2: -(2 - beta) exactly; GHVB 4 at 0.8: -0.353 (the fact sheet); always less than HB's.
    assert real_stability_interval("ghvb", 2, beta) == pytest.approx(-(2 - beta), abs=1e-8)
    for r in (2, 3, 4):
        g = real_stability_interval("ghvb", r, beta)
        assert real_stability_interval("ab", r) > g > real_stability_interval("ab", r - 1)
        assert g > real_stability_interval("hb", r, beta)
    assert real_stability_interval("ghvb", 4, 0.8) == pytest.approx(-0.353, abs=5e-4)


def test_is_stable_matches_the_interval_and_the_boundary_locus():
    assert is_stable(-1.99, "ab", 1) and not is_stable(-2.01, "ab", 1)
    assert is_stable(-0.29, "ab", 4) and not is_stable(-0.31, "ab", 4)
    assert is_stable(-0.44, "hb", 4, 0.8) and not is_stable(-0.46, "hb", 4, 0.8)
    assert not is_stable(0.1, "ab", 2)                        # growing solutions are not damped
    # Euler's region is the unit disc about -1, and its boundary locus is that circle.
    z = np.array([-1 + 0.9j, -1 + 1.1j, -0.05, -1.95])
    assert is_stable(z, "ab", 1).tolist() == [True, False, True, True]
    s = stability_boundary("ab", 1, n=64)
    assert np.allclose(np.abs(s + 1), 1)
    # On every boundary point some root of the characteristic polynomial has modulus 1.
    for method, order, beta in [("ab", 3, 1.0), ("hb", 2, 0.7), ("ghvb", 4, 0.6)]:
        a, b = lmm_polynomials(method, order, beta)
        for zz in stability_boundary(method, order, beta, n=37)[::6]:
            roots = np.roots(a - zz * b)        # highest power of zeta first
            assert np.min(np.abs(np.abs(roots) - 1)) < 1e-8


def test_ghvb_coefficients_sum_to_beta_and_reduce_to_adams_bashforth():
    for r in (1, 2, 3, 4):
        for beta in (0.3, 0.8, 1.0):
            assert sum(ghvb_coeffs(r, beta)) == pytest.approx(beta)
        a_g, b_g = lmm_polynomials("ghvb", r, 1.0)
        a, b = lmm_polynomials("ab", r)
        pad = lambda p: np.pad(p, (0, 6 - len(p)))
        assert np.allclose(pad(b_g), pad(b)) and np.allclose(pad(a_g), pad(a))   # 1 - (1 - beta) w = 1


# ---------------------------------------------------------------------------------------------
# The paper's App. C toy: x' = [[0, 1], [-9, -10]] x, 26 steps on [0, 3]
# ---------------------------------------------------------------------------------------------

M = torch.tensor([[0.0, 1.0], [-9.0, -10.0]], dtype=torch.float64)
FACT_SHEET_X3 = {  # x(3) from the fact sheet (computed with the official code's warm-up)
    ("ab", 1, 1.0): (-0.0464, 0.0464), ("ab", 2, 1.0): (0.102, -1.373),
    ("hb", 2, 0.8): (-0.0515, 0.0515), ("hb", 2, 0.9): (-0.0543, 0.0537),
    ("ghvb", 2, 0.8): (-0.0567, 0.0557), ("ghvb", 2, 0.9): (-0.0514, 0.0090),
}


@pytest.mark.parametrize("spec", list(FACT_SHEET_X3), ids=str)
def test_appendix_c_toy_reproduces_the_fact_sheet(spec):
    x = lmm_solve(lambda x, t: M @ x, torch.tensor([-1.0, 0.0], dtype=torch.float64),
                  torch.linspace(0, 3, 27, dtype=torch.float64), *spec)
    assert x.tolist() == pytest.approx(FACT_SHEET_X3[spec], abs=6e-4)


def test_appendix_c_ab2_diverges_while_momentum_converges():
    ts = torch.linspace(0, 3, 27, dtype=torch.float64)
    x0 = torch.tensor([-1.0, 0.0], dtype=torch.float64)
    norm = lambda *spec: lmm_solve(lambda x, t: M @ x, x0, ts, *spec).norm().item()
    exact = math.sqrt(2) * 9 / 8 * math.exp(-3)
    assert norm("ab", 2) > 10 * exact
    assert abs(norm("hb", 2, 0.8) - exact) < 0.2 * exact
    assert abs(norm("ghvb", 2, 0.8) - exact) < 0.1 * exact
    # z = delta * (-9) = -27/26 is just outside AB2's interval [-1, 0] and inside the others'.
    z = -27 / 26
    assert not is_stable(z, "ab", 2) and is_stable(z, "hb", 2, 0.8) and is_stable(z, "ghvb", 2, 0.8)


# ---------------------------------------------------------------------------------------------
# Orders of convergence on a smooth ODE (logistic growth)
# ---------------------------------------------------------------------------------------------

def _logistic(t, x0=0.2):
    return torch.tensor([1 / (1 + (1 / x0 - 1) * math.exp(-t))], dtype=torch.float64)


def _observed_order(method, order, beta, Ns, exact_start):
    errs = []
    for N in Ns:
        ts = torch.linspace(0, 2, N + 1, dtype=torch.float64)
        x = lmm_solve(lambda x, t: x * (1 - x), _logistic(0.0), ts, method, order, beta,
                      start=_logistic if exact_start else None)
        errs.append((x - _logistic(2.0)).abs().item())
    return -np.polyfit(np.log(Ns), np.log(errs), 1)[0]


@pytest.mark.parametrize("spec, expected", [
    (("ab", 4, 1.0), 4), (("ghvb", 2, 0.5), 2), (("ghvb", 3, 0.5), 3), (("ghvb", 4, 0.8), 4),
    (("hb", 4, 0.8), 1), (("hb", 2, 0.5), 1), (("ghvb", 1, 0.5), 1),
])
def test_orders_of_convergence_from_exact_starting_values(spec, expected):
    Ns = [20, 40, 80] if expected > 1 else [80, 160, 320]
    assert _observed_order(*spec, Ns, exact_start=True) == pytest.approx(expected, abs=0.25)


@pytest.mark.parametrize("spec", [("ab", 4, 1.0), ("ghvb", 4, 0.8)])
def test_lower_order_warm_up_caps_the_observed_order_at_two(spec):
    assert _observed_order(*spec, [20, 40, 80], exact_start=False) == pytest.approx(2, abs=0.25)


@pytest.mark.parametrize("method, order, beta", [("hb", 3, 0.7), ("ghvb", 3, 0.7), ("ghvb", 4, 0.4)])
def test_velocity_form_obeys_the_x_only_recurrence(method, order, beta):
    # After the warm-up, the official code's v-form and the polynomials (7) are the same method.
    g = torch.Generator().manual_seed(0)
    J = torch.randn(3, 3, generator=g, dtype=torch.float64)
    f = lambda x, t: J @ x + math.sin(t)
    ts = torch.linspace(0, 1, 21, dtype=torch.float64)
    trajectory = []
    x_end = lmm_solve(f, torch.ones(3, dtype=torch.float64), ts, method, order, beta, trajectory=trajectory)
    xs = [torch.ones(3, dtype=torch.float64)] + trajectory
    assert len(trajectory) == len(ts) - 1 and torch.equal(trajectory[-1], x_end)
    a, b = lmm_polynomials(method, order, beta)
    K, delta = len(a) - 1, ts[1] - ts[0]
    for n in range(order + 2, len(ts) - 1):
        lhs = sum(a[j] * xs[n + 1 - j] for j in range(K + 1))
        rhs = delta * sum(b[j] * f(xs[n + 1 - j], ts[n + 1 - j].item()) for j in range(1, K + 1))
        assert torch.allclose(lhs, rhs, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Diffusion sampling
# ---------------------------------------------------------------------------------------------

BETAS = linear_beta_schedule()
ABAR = torch.cumprod(1 - BETAS, 0)
T = len(BETAS)


def _abar_at(t):
    """abar at the model's time input t / T, a float tensor [B] -> [B, 1]."""
    return ABAR[(t * T).round().long() - 1].reshape(-1, 1)


def _gaussian_eps(mu, s):
    """Exact eps of 1-D data N(mu, s^2): x_t ~ N(a mu, a^2 s^2 + 1 - a^2)."""
    def eps(x, t, cond):
        a2 = _abar_at(t)
        return (1 - a2).sqrt() * (x - a2.sqrt() * mu) / (a2 * s**2 + 1 - a2)
    return eps


def _sampler(name):
    method, order, beta = PAPER_NAMES[name]
    if method == "dpm++":
        return lambda *args, **kw: dpm_solver_pp_sample(*args, beta, **kw)
    return lambda *args, **kw: lmm_sample(*args, method, order, beta, **kw)


@pytest.mark.parametrize("name, tol", [("DDIM", 4e-2), ("PLMS4", 1e-3), ("PLMS4 + HB 0.9", 1e-2),
                                       ("GHVB 3.8", 1e-3), ("DPM-Solver++", 2e-2), ("DPM-Solver++ w/ HB 0.8", 2e-2)])
def test_samplers_reach_the_exact_flow_map_of_a_gaussian(name, tol):
    # For Gaussian data the ODE (2) keeps (xbar - mu) / sqrt(s^2 + sigma^2) fixed: x_0 is known exactly.
    mu, s = 1.5, 0.5
    x_T = torch.linspace(-2, 2, 9, dtype=torch.float64).reshape(-1, 1)
    steps = list(range(1000, 0, -9))                      # 1000, 991, ..., 1: equal spacing
    a2 = ABAR[steps[0] - 1]
    xbar_T, sigma_T = x_T / a2.sqrt(), ((1 - a2) / a2).sqrt()
    exact = mu + s * (xbar_T - mu) / (s**2 + sigma_T**2).sqrt()
    x0 = _sampler(name)(_gaussian_eps(mu, s), x_T, BETAS, steps)
    assert (x0 - exact).abs().max() < tol


@pytest.mark.parametrize("name", ["PLMS4", "GHVB 3.8", "DPM-Solver++ w/ HB 0.8"])
def test_model_sees_t_over_T_and_the_trajectory_holds_each_step(name):
    seen, steps = [], [901, 500, 37]

    def eps(x, t, cond):
        seen.append(t)
        return torch.zeros_like(x)

    trajectory, last2 = [], collections.deque(maxlen=2)
    x_T = torch.ones(3, 2, dtype=torch.float64)
    x0 = _sampler(name)(eps, x_T, BETAS, steps, trajectory=trajectory)
    assert all(t.dtype == torch.float64 and t.shape == (3,) for t in seen)
    seen.clear()                                          # half-precision states: t stays float32
    _sampler(name)(eps, x_T.to(torch.bfloat16), BETAS, steps)
    assert all(t.dtype == torch.float32 for t in seen) and seen[0][0].item() == pytest.approx(0.901)
    assert [t[0].item() for t in seen] == pytest.approx([0.901, 0.5, 0.037])
    assert len(trajectory) == 3 and torch.equal(trajectory[-1], x0)
    _sampler(name)(eps, x_T, BETAS, steps, trajectory=last2)
    assert len(last2) == 2 and torch.equal(last2[-1], x0)


def test_guidance_costs_two_evaluations_per_step_and_mixes_them():
    calls = []

    def eps(x, t, cond):
        calls.append(cond)
        return torch.zeros_like(x) if cond is None else torch.ones_like(x)

    x_T = torch.zeros(4, 2, dtype=torch.float64)
    y = torch.zeros(4, dtype=torch.long)
    lmm_sample(eps, x_T, BETAS, uniform_timesteps(5), guidance=1.0, cond=y)
    assert len(calls) == 5
    calls.clear()
    # eps = 0 + 3 (1 - 0) = 3 everywhere: DDIM gives xbar_N = xbar_0 + (0 - sigma_0) 3.
    x0 = lmm_sample(eps, x_T, BETAS, uniform_timesteps(5), guidance=3.0, cond=y)
    assert len(calls) == 10 and calls.count(None) == 5
    sigma0 = ((1 - ABAR[-1]) / ABAR[-1]).sqrt()
    assert torch.allclose(x0, torch.full_like(x0, -3 * sigma0.item()))


def _mixture_eps(means, labels, std):
    def eps(x, t, y):
        a2 = _abar_at(t)
        a, var = a2.sqrt(), a2 * std**2 + 1 - a2
        logits = -((x[:, None] - a[:, None] * means) ** 2).sum(-1) / (2 * var)
        if y is not None:
            logits = logits.masked_fill(labels[None] != y[:, None], -math.inf)
        score = (logits.softmax(-1)[:, :, None] * (a[:, None] * means - x[:, None])).sum(1) / var
        return -(1 - a2).sqrt() * score
    return eps


MEANS = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, -2.0]], dtype=torch.float64)


def test_heavy_ball_curbs_divergence_of_guided_plms4():
    # Four narrow modes in two classes, exact class-conditional eps, guidance 8, 8 steps.
    eps = _mixture_eps(MEANS, torch.tensor([0, 1, 0, 1]), 0.1)
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(500, 2, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (500,), generator=g)
    off = {}
    for name in ("PLMS4", "PLMS4 + HB 0.8", "DDIM"):
        x0 = sample_by_name(name, eps, x_T, BETAS, 8, guidance=8.0, cond=y)
        off[name] = (torch.cdist(x0, MEANS).min(1).values > 0.5).double().mean().item()
    assert off["PLMS4"] > 0.5 and off["PLMS4 + HB 0.8"] < 0.95 * off["PLMS4"], off
    assert off["DDIM"] < off["PLMS4 + HB 0.8"], off


def test_the_official_grids():
    # DDIM's leading spacing with offset 1: diffusers' indices 951, 901, ..., 1 are DDPM steps 952, ..., 2.
    assert official_timesteps(BETAS, 20, "ddim") == list(range(952, 1, -50))
    # DPM-Solver's logSNR grid: starts at t = T, even in lambda down to (not including) t = 1.
    steps = official_timesteps(BETAS, 10, "dpm-solver")
    lam = (0.5 * torch.log(ABAR / (1 - ABAR)))[torch.tensor(steps) - 1]
    assert steps[0] == T and all(a > b for a, b in zip(steps, steps[1:]))
    assert torch.diff(lam).std() < 0.05 * torch.diff(lam).mean().abs()
    assert uniform_timesteps(4) == [1000, 667, 334, 1]
    for N in (1, 2, 3, 7, 334, 501, 999):                 # every N up to T - 1 gives a valid grid
        for solver in ("ddim", "dpm-solver"):
            steps = official_timesteps(BETAS, N, solver)
            assert len(steps) == N and steps[-1] >= 1 and steps[0] <= T


def test_the_naive_grid_ruins_high_order_solvers_that_the_official_grid_serves():
    # At t = 1 (sigma = 0.01) the naive grid's last model call makes DPM-Solver++(2M) extrapolate
    # across a third of the lambda range; PLMS4 at high guidance diverges. The official grids do not.
    # The toy notebook's data: a 3 x 3 grid of narrow modes, three classes (the columns).
    grid = torch.tensor([[i, j] for i in (-2.0, 0.0, 2.0) for j in (-2.0, 0.0, 2.0)], dtype=torch.float64)
    eps = _mixture_eps(grid, torch.arange(9) // 3, 0.1)
    g = torch.Generator().manual_seed(1)
    x_T = torch.randn(300, 2, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (300,), generator=g)
    for s, name, N, grid in ((1.5, "DPM-Solver++", 10, "dpm-solver"), (7.5, "PLMS4", 20, "ddim")):
        ref = lmm_sample(eps, x_T, BETAS, list(range(1000, 0, -1)), "ab", 4, guidance=s, cond=y)
        err = lambda steps: (_sampler(name)(eps, x_T, BETAS, steps, guidance=s, cond=y) - ref).norm(dim=1).mean()
        naive, official = err(uniform_timesteps(N)), err(official_timesteps(BETAS, N, grid))
        assert official < 0.3 * naive, (name, naive, official)


@pytest.mark.parametrize("method, order", [("ab", 4), ("ghvb", 4), ("dpm++", 2)])
@pytest.mark.parametrize("bad_shape", [(1, 1), (2,), (2, 1, 1)])
def test_samplers_reject_a_model_output_of_the_wrong_shape(method, order, bad_shape):
    # x_T is [2, 1]; a model that returns [1, 1] or [2] would be broadcast silently.
    wrong = lambda x, t, cond: torch.zeros(bad_shape, dtype=x.dtype)
    x_T = torch.zeros(2, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"eps_model returned shape .*expected \(2, 1\)"):
        if method == "dpm++":
            dpm_solver_pp_sample(wrong, x_T, BETAS, [999, 500, 1])
        else:
            lmm_sample(wrong, x_T, BETAS, [999, 500, 1], method, order, 0.8 if method == "ghvb" else 1.0)


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("m, expected", [(3.8, (4, 0.8)), (4, (4, 1.0)), (0.8, (1, 0.8)), (1.5, (2, 0.5))])
def test_momentum_number(m, expected):
    order, beta = momentum_number(m)
    assert order == expected[0] and beta == pytest.approx(expected[1])


def test_paper_names_follow_the_momentum_number():
    for name, (method, order, beta) in PAPER_NAMES.items():
        if name.startswith("GHVB"):
            assert (order, beta) == pytest.approx(momentum_number(float(name.split()[1]))), name
        if "HB" in name and not name.startswith("GHVB"):
            assert beta == float(name.split()[-1]) and method in ("hb", "dpm++"), name


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

F = lambda x, t: -x
X0 = torch.ones(2)
TS = torch.linspace(0, 1, 5)


@pytest.mark.parametrize("kwargs, exc, word", [
    (dict(order=0), ValueError, "order"), (dict(order=5), ValueError, "order"),
    (dict(order=2.0), TypeError, "order"), (dict(method="rk4"), ValueError, "method"),
    (dict(method="hb", beta=0.0), ValueError, "beta"), (dict(method="ghvb", beta=1.5), ValueError, "beta"),
    (dict(beta=0.8), ValueError, "beta"), (dict(ts=[0.0, 0.5, 0.4, 1.0]), ValueError, "ts"),
    (dict(ts=[0.0]), ValueError, "ts"), (dict(ts=3.0), ValueError, "ts"), (dict(ts="abc"), TypeError, "ts"),
    (dict(f=3), TypeError, "f"), (dict(x0=[1.0]), TypeError, "x0"),
])
def test_lmm_solve_rejects_bad_input(kwargs, exc, word):
    args = dict(f=F, x0=X0, ts=TS, method="ab", order=1, beta=1.0) | kwargs
    with pytest.raises(exc, match=word):
        lmm_solve(**args)


def _never(*args):
    raise AssertionError("the model must not be called on bad input")


@pytest.mark.parametrize("kwargs, exc, word", [
    (dict(guidance=7.5), ValueError, "cond"), (dict(order=5), ValueError, "order"),
    (dict(method="hb", beta=0.0), ValueError, "beta"), (dict(eps_model=3), TypeError, "eps_model"),
    (dict(timesteps=[10, 500, 999]), ValueError, "timesteps"), (dict(timesteps=[1001, 1]), ValueError, "timesteps"),
    (dict(timesteps=[999, 0]), ValueError, "timesteps"), (dict(timesteps=[999.0, 1.0]), ValueError, "timesteps"),
    (dict(guidance=-1.0, cond=torch.zeros(2)), ValueError, "guidance"),
    (dict(x_T=torch.zeros(2, dtype=torch.long)), TypeError, "x_T"), (dict(x_T=torch.zeros(0, 1)), ValueError, "x_T"),
    (dict(betas=torch.ones(10)), ValueError, "betas"), (dict(betas=[0.1, 0.2]), TypeError, "betas"),
])
def test_samplers_reject_bad_input_before_any_work(kwargs, exc, word):
    args = dict(eps_model=_never, x_T=torch.zeros(2, 1), betas=BETAS, timesteps=[999, 500, 1],
                method="ab", order=1, beta=1.0) | kwargs
    with pytest.raises(exc, match=word):
        lmm_sample(**args)
    if "order" not in kwargs and "method" not in kwargs:
        with pytest.raises(exc, match=word):
            dpm_solver_pp_sample(**{k: v for k, v in args.items() if k not in ("method", "order")})


@pytest.mark.parametrize("call", [
    lambda: is_stable(-1.0, "ab", 5), lambda: real_stability_interval("hb", 2, 1.2),
    lambda: stability_boundary("ghvb", 0, 0.5), lambda: momentum_number(4.5),
    lambda: sample_by_name("RK45", _never, torch.zeros(2, 1), BETAS, 5),
    lambda: official_timesteps(BETAS, 5, "heun"), lambda: official_timesteps(BETAS, 1000, "ddim"),
    lambda: linear_beta_schedule(1000, 0.02, 1e-4),
])
def test_stability_grids_and_names_reject_bad_input(call):
    with pytest.raises(ValueError):
        call()
