"""cifar.momentum_sweep: the paper's magnitude score in pixel space, and the sweep on the exact model."""
import pytest
import torch

from cifar.data import load_dataset
from cifar.empirical_mixture import DDPMExact, EmpiricalMixture
from cifar.momentum_sweep import channel_stats, magnitude_score, rms_error, sweep
from minimal import momentum as mm


def test_magnitude_score_follows_the_official_definition():
    mean, std = torch.zeros(3), torch.ones(3)
    x = torch.full((2, 3, 32, 32), 2.9)                       # every cell below tau = 3: score 0
    x[1, 2, 5, 7] = -11.0                                     # one pixel, one channel, |z| = 11
    score = magnitude_score(x, mean, std)
    assert score.dtype == torch.float64 and score.shape == (2,)
    assert score[0] == 0 and score[1] == pytest.approx(11 / 256)   # mean over the 16 x 16 cells
    # normalisation per channel: the same pixel in a channel with std 4 falls below tau
    assert magnitude_score(x, mean, torch.tensor([1.0, 1.0, 4.0]))[1] == 0
    assert magnitude_score(x, mean, std, tau=2.5)[0] == pytest.approx(2.9)


def test_channel_stats_of_uint8_pixels_are_in_model_space():
    images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    images[:2] = 255
    mean, std = channel_stats(images)
    assert torch.allclose(mean, torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(std, torch.full((3,), (16 / 15) ** 0.5, dtype=torch.float64))


def test_bad_inputs_are_refused_before_any_work():
    x, m, s = torch.zeros(1, 3, 4, 4), torch.zeros(3), torch.ones(3)
    with pytest.raises(TypeError, match="x must be"):
        magnitude_score(x[0], m, s)
    with pytest.raises(ValueError, match="mean and std"):
        magnitude_score(x, torch.zeros(2), s)
    with pytest.raises(ValueError, match="std must be > 0"):
        magnitude_score(x, m, torch.zeros(3))
    with pytest.raises(ValueError, match="same shape"):
        rms_error(x, x[:, :2])
    with pytest.raises(TypeError, match="sample must be callable"):
        sweep(None, ["DDIM"], [6], [1.5], {1.5: x}, m, s)
    with pytest.raises(ValueError, match="missing \\[3.0\\]"):
        sweep(lambda name, n, g: x, ["DDIM"], [6], [1.5, 3.0], {1.5: x}, m, s)


def test_on_the_exact_model_plms4_diverges_at_few_steps_and_high_guidance_and_hb_helps():
    """The paper's claim at small scale: 70 Simple Shapes, 4 samples, 6 steps, guidance 15."""
    torch.set_num_threads(1)
    images, labels = load_dataset(dict(name="shapes", n=70, seed=0))
    mixture = EmpiricalMixture(images, labels, dtype=torch.float32)
    betas = mm.linear_beta_schedule()
    exact = DDPMExact(mixture, betas)
    x_T, y = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3)), torch.arange(4) % 7

    def sample(name, n, s):
        return mm.sample_by_name(name, exact, x_T, betas, n, guidance=s, cond=y)

    reference = {15.0: sample("DDIM", 60, 15.0)}
    mean, std = channel_stats(images)
    grid = sweep(sample, ["DDIM", "PLMS4", "PLMS4 + HB 0.8"], [6], [15.0], reference, mean, std)
    floor = magnitude_score(mixture.images(torch.arange(70)), mean, std).mean().item()
    ddim, plms4, hb = (grid.at(name, 6, 15.0) for name in grid.names)
    assert ddim[0] < 1.5 * floor and ddim[1] < 0.2            # DDIM stays on the data, near the reference
    assert plms4[0] > 10 * floor                              # PLMS4 diverges
    assert hb[0] < plms4[0] and hb[1] < plms4[1]              # Heavy Ball lowers score and error
    assert grid.outputs["PLMS4", 6, 15.0].shape == x_T.shape
