"""W2 (exact and sliced), MMD and the support test, against closed forms."""
import math

import pytest
import torch

import toy2d


def cloud(n, seed, dim=2):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_exact_w2_of_a_translation_is_the_squared_shift():
    x = cloud(300, 0)
    v = torch.tensor([0.7, -1.2], dtype=torch.float64)
    assert abs(toy2d.w2_squared(x, x + v, method="exact") - (v ** 2).sum().item()) < 1e-9


def test_exact_w2_finds_the_optimal_assignment():
    # brute force over all 5! permutations
    import itertools
    x, y = cloud(5, 1), cloud(5, 2)
    cost = torch.cdist(x, y) ** 2
    best = min(sum(cost[i, p[i]].item() for i in range(5)) / 5 for p in itertools.permutations(range(5)))
    assert abs(toy2d.w2_squared(x, y, method="exact") - best) < 1e-12
    assert toy2d.w2_squared(x, x.flip(0), method="exact") < 1e-12  # a reordering costs nothing


def test_exact_w2_between_gaussian_samples_approaches_the_closed_form():
    """W2^2(N(m1, s1^2 I), N(m2, s2^2 I)) = |m1 - m2|^2 + D (s1 - s2)^2, up to sampling error."""
    x = cloud(800, 3)
    y = 1.5 + 2.0 * cloud(800, 4)
    closed = 2 * 1.5 ** 2 + 2 * (2.0 - 1.0) ** 2
    assert abs(toy2d.w2_squared(x, y) - closed) < 0.1 * closed


def test_sliced_w2_is_exact_for_translations_and_a_lower_bound_otherwise():
    x = cloud(400, 5)
    v = torch.tensor([0.5, 1.0], dtype=torch.float64)
    assert abs(toy2d.w2_squared(x, x + v, method="sliced") - 1.25) < 1e-9
    # a shift plus an isotropic scaling: sliced ~= exact (equal in expectation over directions)
    y = 1.5 + 2.0 * cloud(400, 6)
    exact, sliced = toy2d.w2_squared(x, y, method="exact"), toy2d.w2_squared(x, y, method="sliced")
    assert sliced <= exact and sliced > 0.9 * exact, (sliced, exact)
    # two rotation-invariant-looking sets: sliced is a (here loose) lower bound on exact
    a, _ = toy2d.nine_gaussians(500, seed=0)
    b = toy2d.two_rings(500, seed=0)
    exact, sliced = toy2d.w2_squared(a, b, method="exact"), toy2d.w2_squared(a, b, method="sliced")
    assert 0 < sliced <= exact, (sliced, exact)


def test_sliced_w2_handles_unequal_sizes_and_auto_picks_it():
    x = cloud(3000, 6)
    y = cloud(1000, 7) + torch.tensor([1.0, 0.0], dtype=torch.float64)
    value = toy2d.w2_squared(x, y)  # unequal sizes: auto -> sliced
    assert abs(value - 1.0) < 0.15
    assert toy2d.w2_squared(x, y, seed=1) != value  # the projections depend on the seed


def test_w2_of_one_dimensional_sets_is_the_sorted_difference():
    x, y = cloud(200, 8, dim=1), cloud(200, 9, dim=1) * 3
    sorted_sq = ((x.sort(0).values - y.sort(0).values) ** 2).mean().item()
    assert abs(toy2d.w2_squared(x, y, method="exact") - sorted_sq) < 1e-9
    assert abs(toy2d.w2_squared(x, y, method="sliced", n_projections=3) - sorted_sq) < 1e-9


def test_sliced_w2_of_unequal_sizes_is_exact_in_one_dimension():
    # {0, 1} against {0, 0.5, 1}: the quantile functions differ by 0.5 on (1/3, 1/2) and on (1/2, 2/3)
    x = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([[0.0], [0.5], [1.0]])
    expected = 2 * (1 / 6) * 0.5 ** 2
    assert abs(toy2d.w2_squared(x, y, method="sliced", n_projections=1) - expected) < 1e-12
    # a copy of x repeated twice is the same measure
    assert toy2d.w2_squared(x, torch.cat([x, x]), method="sliced", n_projections=1) < 1e-12


def test_mmd_is_zero_for_identical_sets_and_grows_with_a_shift():
    x = cloud(500, 10)
    assert toy2d.mmd(x, x) < 1e-12
    same_law = toy2d.mmd(x, cloud(500, 11))
    shifted = [toy2d.mmd(x, cloud(500, 11) + d) for d in (0.5, 1.0, 2.0)]
    assert same_law < shifted[0] < shifted[1] < shifted[2]
    assert same_law < 0.01


def test_mmd_matches_the_kernel_formula_with_a_given_bandwidth():
    x, y, h = cloud(7, 12), cloud(5, 13), 0.8
    k = lambda a, b: torch.exp(-torch.cdist(a, b) ** 2 / (2 * h ** 2)).mean()  # noqa: E731
    expected = (k(x, x) + k(y, y) - 2 * k(x, y)).item()
    assert abs(toy2d.mmd(x, y, bandwidth=h) - expected) < 1e-12


def test_median_bandwidth_is_the_median_pairwise_distance():
    x, y = cloud(20, 14), cloud(30, 15)
    pooled = torch.cat([x, y])
    assert abs(toy2d.median_bandwidth(x, y) - torch.pdist(pooled).median().item()) < 1e-12


def test_in_support_uses_standard_deviations_of_each_component():
    mixture = toy2d.GaussianMixture(None, [[0.0, 0.0], [10.0, 0.0]], stds=[0.1, 1.0])
    x = torch.tensor([[0.45, 0.0], [0.55, 0.0], [10.0, 4.9], [10.0, 5.1], [4.0, 0.0]])
    assert toy2d.in_support(x, mixture, k_std=5).tolist() == [True, False, True, False, False]
    x_true, gm = toy2d.grid(5000, seed=0)
    assert toy2d.in_support(x_true, gm).all()
    # anisotropic: Mahalanobis distance
    aniso = toy2d.GaussianMixture(None, [[0.0, 0.0]], torch.tensor([[[4.0, 0.0], [0.0, 0.01]]]))
    assert toy2d.in_support(torch.tensor([[9.0, 0.0], [0.0, 0.6]]), aniso, k_std=5).tolist() == [True, False]


BAD_INPUTS = [
    (lambda: toy2d.w2_squared(torch.zeros(3), torch.zeros(3, 1)), "x"),
    (lambda: toy2d.w2_squared(torch.zeros(3, 2), torch.zeros(3, 1)), "y"),
    (lambda: toy2d.w2_squared(torch.zeros(3, 2), torch.zeros(4, 2), method="exact"), "method='exact'"),
    (lambda: toy2d.w2_squared(torch.zeros(3, 2), torch.zeros(3, 2), method="emd"), "method"),
    (lambda: toy2d.w2_squared(torch.zeros(3, 2), torch.zeros(3, 2), n_projections=0), "n_projections"),
    (lambda: toy2d.w2_squared(torch.zeros(0, 2), torch.zeros(3, 2)), "x"),
    (lambda: toy2d.mmd(torch.zeros(3, 2), torch.zeros(3, 2), bandwidth=0.0), "bandwidth"),
    (lambda: toy2d.mmd(torch.full((3, 2), math.nan), torch.zeros(3, 2)), "x"),
    (lambda: toy2d.in_support(torch.zeros(3, 1), toy2d.grid(5)[1]), "x"),
    (lambda: toy2d.in_support(torch.zeros(3, 2), toy2d.grid(5)[1], k_std=-1), "k_std"),
    (lambda: toy2d.in_support(torch.zeros(3, 2), "grid"), "mixture"),
]


@pytest.mark.parametrize("call,name", BAD_INPUTS)
def test_bad_input_raises_naming_the_argument(call, name):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert str(info.value).startswith(name), str(info.value)
