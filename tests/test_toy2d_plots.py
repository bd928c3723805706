"""The plots draw what they are given (checked on the artists they create) and reject bad input."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import toy2d  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_plot_samples_scatters_points_and_marks_modes():
    x, gm = toy2d.grid(100, k=3, seed=0)
    ax = toy2d.plot_samples(x, mixture=gm, title="grid")
    points, modes = ax.collections
    np.testing.assert_allclose(points.get_offsets(), x.numpy(), rtol=1e-6)
    np.testing.assert_allclose(modes.get_offsets(), gm.means.numpy())
    assert ax.get_title() == "grid"


def test_plot_samples_of_1d_points_is_a_histogram():
    x, gm = toy2d.mixture_1d(300, seed=0)
    _, ax = plt.subplots()
    assert toy2d.plot_samples(x, ax=ax, mixture=gm, bins=30) is ax
    assert len(ax.patches) == 30 and len(ax.lines) == 3  # 30 bars, one dotted line per mode


def test_plot_log_histogram_1d_draws_the_true_density_on_a_log_axis():
    x, gm = toy2d.mixture_1d(1000, seed=0)
    ax = toy2d.plot_log_histogram_1d(x, lambda g: gm.log_prob(g).exp(), bins=50, range=(0.5, 3.5))
    assert ax.get_yscale() == "log" and len(ax.patches) == 50
    grid, density = ax.lines[0].get_data()
    np.testing.assert_allclose(density, gm.log_prob(torch.tensor(grid)[:, None]).exp().numpy(), rtol=1e-12)


def test_plot_trajectories_in_2d_and_1d():
    traj = torch.cumsum(torch.randn(10, 7, 2, generator=torch.Generator().manual_seed(0)), dim=0)
    ax = toy2d.plot_trajectories(traj, max_paths=5)
    assert len(ax.lines) == 5
    np.testing.assert_allclose(ax.lines[0].get_xydata(), traj[:, 0].numpy(), rtol=1e-6)
    ax1 = toy2d.plot_trajectories(traj[:, :, :1])
    assert len(ax1.lines) == 7


def test_plot_vector_field_evaluates_fn_on_the_grid():
    _, gm = toy2d.grid(10, k=2, seed=0)
    ax = toy2d.plot_vector_field(lambda p: gm.score(p, 1.0, 0.3), (-2, 2), (-1, 1), n=5)
    quiver = ax.collections[0]
    assert quiver.N == 25
    np.testing.assert_allclose(quiver.U, gm.score(torch.tensor(quiver.get_offsets(), dtype=torch.float32),
                                                  1.0, 0.3)[:, 0].numpy(), rtol=1e-5)


def test_plot_density_2d_shows_the_density():
    _, gm = toy2d.grid(10, k=2, seed=0)
    ax = toy2d.plot_density_2d(gm.log_prob, (-1, 1), (-1, 1), n=20)
    image = ax.images[0].get_array()
    assert image.shape == (20, 20) and image.min() >= 0
    log_ax = toy2d.plot_density_2d(gm.log_prob, (-1, 1), (-1, 1), n=20, log=True)
    np.testing.assert_allclose(np.exp(log_ax.images[0].get_array()), image, rtol=1e-9)


BAD_INPUTS = [
    (lambda: toy2d.plot_samples(torch.zeros(5, 3)), "x"),
    (lambda: toy2d.plot_samples([[0.0, 1.0]]), "x"),
    (lambda: toy2d.plot_log_histogram_1d(torch.zeros(5, 2), None), "samples"),
    (lambda: toy2d.plot_log_histogram_1d(torch.zeros(5), None, bins=0), "bins"),
    (lambda: toy2d.plot_trajectories(torch.zeros(5, 2)), "traj"),
    (lambda: toy2d.plot_vector_field(lambda p: p, (1, -1), (0, 1)), "xlim"),
    (lambda: toy2d.plot_vector_field(lambda p: p[:, :1], (-1, 1), (0, 1), n=3), "fn"),
    (lambda: toy2d.plot_density_2d(lambda p: p[:, 0], (-1, 1), (1, 1)), "ylim"),
]


@pytest.mark.parametrize("call,name", BAD_INPUTS)
def test_bad_input_raises_naming_the_argument(call, name):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert str(info.value).split()[0] == name, str(info.value)
