"""toy2d: the 1D/2D laboratory of the course.

Seeded datasets (Gaussian mixtures on a line, a grid and a rotated grid, the 9-Gaussian mixture,
two rings, a checkerboard, moons), the *exact* denoiser and score of a Gaussian mixture under the
forward process x_t = a x_0 + s eps (a perfect model to compare every learned one with), a small
MLP, a training loop, metrics and plots. The notebook harness lives in :mod:`toy2d.notebook`.
"""
from .datasets import checkerboard, grid, mixture_1d, moons, nine_gaussians, sample_balanced, two_rings
from .mixture import ClassConditionalMixture, GaussianMixture

__all__ = [
    "GaussianMixture", "ClassConditionalMixture",
    "mixture_1d", "grid", "nine_gaussians", "two_rings", "checkerboard", "moons", "sample_balanced",
]
