"""toy2d: the 1D/2D laboratory of the course.

Seeded datasets (Gaussian mixtures on a line, a grid and a rotated grid, the 9-Gaussian mixture,
two rings, a checkerboard, moons), the *exact* denoiser and score of a Gaussian mixture under the
forward process x_t = a x_0 + s eps (a perfect model to compare every learned one with), a small
time-conditioned MLP, one training loop, metrics (exact/sliced W2, MMD, support) and plots.
The notebook harness lives in the course package (course/notebook.py); this laboratory never imports it.
"""
from .datasets import checkerboard, grid, mixture_1d, moons, nine_gaussians, sample_balanced, two_rings
from .metrics import in_support, median_bandwidth, mmd, w2_squared
from .mixture import ClassConditionalMixture, GaussianMixture
from .mlp import MLP, sinusoidal_features
from .plots import plot_density_2d, plot_log_histogram_1d, plot_samples, plot_trajectories, plot_vector_field
from .train import train

__all__ = [
    # mixtures: exact log-density, denoiser, score
    "GaussianMixture", "ClassConditionalMixture",
    # datasets
    "mixture_1d", "grid", "nine_gaussians", "two_rings", "checkerboard", "moons", "sample_balanced",
    # models and training
    "MLP", "sinusoidal_features", "train",
    # metrics
    "w2_squared", "mmd", "in_support", "median_bandwidth",
    # plots
    "plot_samples", "plot_log_histogram_1d", "plot_trajectories", "plot_vector_field", "plot_density_2d",
]
