"""The toy datasets: seeded, with the papers' exact parameters."""
import math

import pytest
import torch

import toy2d


def points(result):
    return result[0] if isinstance(result, tuple) else result


DATASETS = {
    "mixture_1d": lambda n, seed: toy2d.mixture_1d(n, seed=seed),
    "grid": lambda n, seed: toy2d.grid(n, seed=seed),
    "grid_rotated": lambda n, seed: toy2d.grid(n, rotated=True, seed=seed),
    "nine_gaussians": lambda n, seed: toy2d.nine_gaussians(n, seed=seed),
    "two_rings": lambda n, seed: toy2d.two_rings(n, seed=seed),
    "checkerboard": lambda n, seed: toy2d.checkerboard(n, seed=seed),
    "moons": lambda n, seed: toy2d.moons(n, seed=seed),
}


@pytest.mark.parametrize("name", list(DATASETS))
def test_same_seed_same_data_other_seed_other_data(name):
    make = DATASETS[name]
    a, b, c = points(make(500, 3)), points(make(500, 3)), points(make(500, 4))
    dim = 1 if name == "mixture_1d" else 2
    assert a.shape == (500, dim) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_seeded_data_does_not_depend_on_the_global_generator():
    torch.manual_seed(0)
    a = toy2d.two_rings(100, seed=1)
    torch.manual_seed(123)
    assert torch.equal(a, toy2d.two_rings(100, seed=1))


def test_mixture_1d_defaults_are_the_papers_and_modes_are_balanced():
    x, gm = toy2d.mixture_1d(3000)
    assert gm.means.flatten().tolist() == [1.0, 2.0, 3.0]
    torch.testing.assert_close(gm.covs.flatten(), torch.full((3,), 0.05 ** 2, dtype=torch.float64))
    nearest = (x - torch.tensor([1.0, 2.0, 3.0])).abs().argmin(1)
    assert torch.bincount(nearest).tolist() == [1000, 1000, 1000]  # round-robin, as in the paper's code
    assert gm.nearest_mode_distance(x).max() < 6 * 0.05


def test_mixture_1d_with_weights_follows_them():
    x, gm = toy2d.mixture_1d(20_000, means=(0.0, 5.0), weights=(0.8, 0.2), std=0.1)
    assert abs((x > 2.5).float().mean().item() - 0.2) < 0.015


@pytest.mark.parametrize("rotated", [False, True])
def test_grid_geometry(rotated):
    k, spacing = 5, 0.7
    x, gm = toy2d.grid(5000, k=k, spacing=spacing, std=0.02, rotated=rotated)
    assert gm.K == 25
    torch.testing.assert_close(gm.means.mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
    dist = torch.cdist(gm.means, gm.means) + 1e9 * torch.eye(25, dtype=torch.float64)
    torch.testing.assert_close(dist.min(1).values, torch.full((25,), spacing, dtype=torch.float64))
    # square grid: every mode's nearest neighbour lies along an axis; diamond: along a diagonal
    offsets = gm.means[dist.argmin(1)] - gm.means
    on_axis = (offsets.abs().min(1).values < 1e-9)
    assert on_axis.all() if not rotated else not on_axis.any()
    assert gm.nearest_mode_distance(x).max() < 6 * 0.02


def test_hallucination_grid_in_model_units():
    _, gm = toy2d.grid(10, spacing=2 / toy2d.datasets.HALLUCINATION_GRID_SCALE,
                       std=0.05 / toy2d.datasets.HALLUCINATION_GRID_SCALE)
    assert abs(toy2d.datasets.HALLUCINATION_GRID_SCALE - 2.8289) < 1e-4
    assert abs(gm.means[:, 0].max().item() - 4 / 2.8289) < 1e-4


def test_nine_gaussians_parameters():
    x, gm = toy2d.nine_gaussians(9000)
    expected = {(1.3, 1.3), (1.3, -1.3), (-1.3, 1.3), (-1.3, -1.3), (0.0, 0.0),
                (2.6, 0.0), (-2.6, 0.0), (0.0, 2.6), (0.0, -2.6)}
    assert {tuple(round(v, 6) for v in m.tolist()) for m in gm.means} == expected
    torch.testing.assert_close(gm.covs, 0.0845 * torch.eye(2, dtype=torch.float64).expand(9, 2, 2))
    torch.testing.assert_close(gm.weights, torch.full((9,), 1 / 9, dtype=torch.float64))
    # the points follow the mixture: mean 0, covariance 0.0845 I + spread of the means
    spread = (gm.means.T @ gm.means / 9)
    torch.testing.assert_close(torch.cov(x.double().T), 0.0845 * torch.eye(2, dtype=torch.float64) + spread,
                               atol=0.08, rtol=0)


def test_two_rings_parameters():
    x = toy2d.two_rings(20_000).double()
    r = x.norm(dim=1)
    inner, outer = r[r < 2.05], r[r >= 2.05]
    assert abs(len(inner) - 10_000) < 50  # equal mass (up to the rare crossings of the split)
    assert abs(inner.mean().item() - 1.3) < 0.01 and abs(outer.mean().item() - 2.8) < 0.01
    assert abs(inner.std().item() - 0.2) < 0.01 and abs(outer.std().item() - 0.2) < 0.01
    angle = torch.atan2(x[:, 1], x[:, 0])
    assert abs(angle.mean().item()) < 0.05 and abs(angle.var().item() - math.pi ** 2 / 3) < 0.1  # uniform


def test_checkerboard_parameters():
    x = toy2d.checkerboard(8000)
    assert x.min() >= -3 and x.max() <= 3
    cell = torch.floor((x + 3) / 1.5).long().clamp(max=3)  # (column, row)
    assert ((cell[:, 0] + cell[:, 1]) % 2 == 0).all()  # only the black cells
    counts = torch.bincount(cell[:, 0] * 4 + cell[:, 1], minlength=16)
    assert sorted(counts[counts > 0].tolist()) == [1000] * 8  # 8 cells, equal mass


def test_moons_is_centred_with_two_half_circles():
    x = toy2d.moons(4000, noise=0.0).double()
    assert x.mean(0).abs().max() < 0.05
    d_upper = (x - torch.tensor([-0.5, -0.25], dtype=torch.float64)).norm(dim=1)
    d_lower = (x - torch.tensor([0.5, 0.25], dtype=torch.float64)).norm(dim=1)
    on_upper, on_lower = (d_upper - 1).abs() < 1e-6, (d_lower - 1).abs() < 1e-6
    assert (on_upper | on_lower).all()
    assert on_upper.sum() == 2000 and on_lower.sum() == 2000
    assert not torch.equal(toy2d.moons(100, noise=0.1), toy2d.moons(100, noise=0.0))


BAD_INPUTS = [
    (lambda: toy2d.mixture_1d(0), "n"),
    (lambda: toy2d.mixture_1d(10, std=0.0), "std"),
    (lambda: toy2d.mixture_1d(10, std=-1.0), "std"),
    (lambda: toy2d.mixture_1d(10, means=()), "means"),
    (lambda: toy2d.mixture_1d(10, weights=(1.0, 2.0)), "weights"),
    (lambda: toy2d.grid(10, k=0), "k"),
    (lambda: toy2d.grid(10, spacing=0.0), "spacing"),
    (lambda: toy2d.grid(10, seed=-1), "seed"),
    (lambda: toy2d.nine_gaussians(2.5), "n"),
    (lambda: toy2d.two_rings(-3), "n"),
    (lambda: toy2d.checkerboard(10, seed="a"), "seed"),
    (lambda: toy2d.moons(10, noise=-0.1), "noise"),
]


@pytest.mark.parametrize("call,name", BAD_INPUTS)
def test_bad_input_raises_naming_the_argument(call, name):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert str(info.value).split()[0] == name, str(info.value)
