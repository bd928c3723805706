"""The empirical mixture's exact denoiser and score: against toy2d's GaussianMixture (the same formula),
against a brute-force softmax, chunk by chunk, in bounded memory, at extreme inputs, per class, and as a
drop-in DDPM / VP model whose samples are copies of training images."""
import math

import pytest
import torch
from torch.utils._pytree import tree_leaves
from torch.utils._python_dispatch import TorchDispatchMode

from cifar.empirical_mixture import DDPMExact, EmpiricalMixture, VPExact
from toy2d import GaussianMixture


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def float_set(n=7, d=5, seed=0):
    """n training points in [-1, 1]^d, float64."""
    return torch.rand(n, d, generator=gen(seed), dtype=torch.float64) * 2 - 1


def uint8_set(n, shape=(3, 8, 8), seed=0):
    return torch.randint(0, 256, (n, *shape), generator=gen(seed), dtype=torch.uint8)


def brute_force_xbar(X, x, a, s, sigma=0.0):
    """sum_i r_i x^(i) with r = softmax(-|x - a x^(i)|^2 / (2 v)), via a full [B, N, D] difference."""
    v = a ** 2 * sigma ** 2 + s ** 2
    logits = -((x[:, None, :] - a * X[None]) ** 2).sum(-1) / (2 * v)
    return torch.softmax(logits, dim=1) @ X


def linear_betas(T=1000):
    return torch.linspace(1e-4, 0.02, T, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------
# The formula
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sigma", [0.02, 0.1, 0.5])
@pytest.mark.parametrize("chunk", [1, 3, 100])
def test_matches_toy2d_gaussian_mixture(sigma, chunk):
    X = float_set()
    em = EmpiricalMixture(X, sigma_data=sigma, chunk_size=chunk)
    gm = GaussianMixture(None, X, stds=sigma)
    x = torch.randn(13, 5, generator=gen(1), dtype=torch.float64)
    a = torch.rand(13, generator=gen(2), dtype=torch.float64)             # one noise level per sample
    s = 0.05 + torch.rand(13, generator=gen(3), dtype=torch.float64)
    for name in ("denoise", "score", "eps"):
        torch.testing.assert_close(getattr(em, name)(x, a, s), getattr(gm, name)(x, a, s), rtol=1e-10, atol=1e-10)
    for a0, s0 in ((0.99, 0.1), (0.3, 0.95)):                              # scalar levels too
        torch.testing.assert_close(em.denoise(x, a0, s0), gm.denoise(x, a0, s0), rtol=1e-10, atol=1e-10)


def test_dirac_components_match_a_brute_force_softmax_and_tweedie():
    X = float_set(9, 6)
    em = EmpiricalMixture(X, chunk_size=4)
    x = torch.randn(5, 6, generator=gen(1), dtype=torch.float64)
    a, s = 0.8, 0.6
    xbar = brute_force_xbar(X, x, a, s)
    torch.testing.assert_close(em.denoise(x, a, s), xbar, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(em.score(x, a, s), (a * xbar - x) / s ** 2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(em.eps(x, a, s), (x - a * xbar) / s, rtol=1e-12, atol=1e-12)
    # a tiny sigma_data is the Dirac case up to O(sigma^2 / s^2)
    close = EmpiricalMixture(X, sigma_data=1e-6)
    torch.testing.assert_close(close.denoise(x, a, s), xbar, rtol=0, atol=1e-10)


def test_score_is_the_gradient_of_the_log_density():
    """(7) by autograd of log p_t(x) = logsumexp_i log N(x; a x^(i), v I) - log N."""
    X = float_set(6, 4)
    sigma, a, s = 0.2, 0.7, 0.4
    v = a ** 2 * sigma ** 2 + s ** 2
    x = torch.randn(3, 4, generator=gen(5), dtype=torch.float64, requires_grad=True)
    log_p = torch.logsumexp(-((x[:, None] - a * X[None]) ** 2).sum(-1) / (2 * v), dim=1)
    grad, = torch.autograd.grad(log_p.sum(), x)
    em = EmpiricalMixture(X, sigma_data=sigma)
    torch.testing.assert_close(em.score(x.detach(), a, s), grad, rtol=1e-10, atol=1e-10)


def test_chunk_size_does_not_change_the_result():
    images = uint8_set(23)
    x = torch.randn(6, 3, 8, 8, generator=gen(1), dtype=torch.float64)
    ref = EmpiricalMixture(images, chunk_size=23)
    for chunk in (1, 4, 7, 22, 50):
        em = EmpiricalMixture(images, chunk_size=chunk)
        for a, s in ((0.95, 0.2), (0.5, 0.8), (1.0, 0.02)):
            torch.testing.assert_close(em.denoise(x, a, s), ref.denoise(x, a, s), rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(em.eps(x, a, s), ref.eps(x, a, s), rtol=1e-12, atol=1e-12)
            i_c, w_c = em.responsibility(x, a, s)
            i_r, w_r = ref.responsibility(x, a, s)
            assert torch.equal(i_c, i_r)
            torch.testing.assert_close(w_c, w_r, rtol=1e-12, atol=1e-12)


def test_uint8_images_are_read_in_model_space():
    images = uint8_set(10)
    x = torch.randn(4, 3, 8, 8, generator=gen(2), dtype=torch.float64)
    as_float = images.double() / 127.5 - 1
    torch.testing.assert_close(EmpiricalMixture(images).denoise(x, 0.9, 0.3),
                               EmpiricalMixture(as_float).denoise(x, 0.9, 0.3), rtol=1e-12, atol=1e-12)
    assert EmpiricalMixture(images).images(torch.tensor([3])).shape == (1, 3, 8, 8)


def test_float32_compute_is_close_at_moderate_noise():
    images = uint8_set(40)
    x = torch.randn(5, 3, 8, 8, generator=gen(3))
    f64 = EmpiricalMixture(images).denoise(x, 0.7, 0.7)
    f32 = EmpiricalMixture(images, dtype=torch.float32).denoise(x, 0.7, 0.7)
    assert f32.dtype == torch.float32
    torch.testing.assert_close(f32, f64, rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# Memory and numerics
# ----------------------------------------------------------------------------------------------

class LargestTensor(TorchDispatchMode):
    """Records the largest tensor (in elements) that any aten op returns while active, and every dimension size."""

    def __init__(self):
        super().__init__()
        self.largest, self.sizes = 0, set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.largest = max(self.largest, leaf.numel())
                self.sizes.update(leaf.shape)
        return out


def test_no_intermediate_of_size_batch_by_images_by_pixels():
    """Every tensor any op builds during a call is at most chunk x D, and none has a dimension of size N:
    nothing of size B x N x D or B x N. The same probe catches the one-line broadcast implementation."""
    B, N, chunk = 16, 600, 50
    images = uint8_set(N, (3, 16, 16))
    D = 3 * 16 * 16
    em = EmpiricalMixture(images, chunk_size=chunk)
    x = torch.randn(B, 3, 16, 16, generator=gen(1))
    bound = max(chunk * D, B * D)                    # 38,400 elements, vs B * N * D = 7,372,800
    for call in (lambda: em.denoise(x, 0.9, 0.3), lambda: em.score(x, 0.9, 0.3), lambda: em.eps(x, 0.9, 0.3),
                 lambda: em.responsibility(x, 0.9, 0.3), lambda: em.nearest_image(x)):
        with LargestTensor() as probe:
            call()
        assert 0 < probe.largest <= bound, probe.largest
        assert N not in probe.sizes, probe.sizes
    X = images.double().reshape(N, D) / 127.5 - 1
    with LargestTensor() as probe:
        brute_force_xbar(X, x.double().reshape(B, D), 0.9, 0.3)
    assert probe.largest >= B * N * D and N in probe.sizes


@pytest.mark.parametrize("sigma", [0.0, 0.05])
def test_extreme_inputs_give_no_nan(sigma):
    images = uint8_set(30)
    em = EmpiricalMixture(images, sigma_data=sigma, chunk_size=7)
    g = gen(4)
    for scale, a, s in ((1e6, 0.9, 0.5), (1e100, 0.9, 1e-3), (1e150, 1.0, 1e-150), (1.0, 0.999, 1e-200),
                        (1.0, 1.0, 1e-300), (1e-300, 1e-300, 1.0), (3.0, 0.0, 1.0)):
        x = scale * torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)
        x0, eps, score = em.denoise(x, a, s), em.eps(x, a, s), em.score(x, a, s)
        assert torch.isfinite(x0).all() and torch.isfinite(eps).all(), (scale, a, s)
        assert not torch.isnan(score).any(), (scale, a, s)   # may overflow to inf where |score| > 1e308
        index, weight = em.responsibility(x, a, s)
        assert torch.isfinite(weight).all() and (weight > 0).all() and (weight <= 1 + 1e-12).all()
    # tiny noise: the posterior picks the right image; with sigma = 0, eps is exactly the noise that was added
    noise = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)
    idx = torch.tensor([0, 5, 17, 29])
    clean = em.images(idx).double()
    for s in (1e-3, 1e-8, 1e-100):
        x_t = clean + s * noise
        shrink = sigma ** 2 / (sigma ** 2 + s ** 2)   # (6) with xbar = the clean image: clean + shrink * s * noise
        torch.testing.assert_close(em.denoise(x_t, 1.0, s), clean + shrink * s * noise, rtol=0, atol=1e-6)
        if sigma == 0 and s > 1e-10:               # (below 1e-16 relative, x_t == clean in float64)
            torch.testing.assert_close(em.eps(x_t, 1.0, s), noise, rtol=0, atol=1e-6)
    # a = 0: x_t says nothing about x_0, so the denoiser is the mean image
    if sigma == 0:
        mean = em.images(torch.arange(30)).double().mean(0, keepdim=True).expand(4, -1, -1, -1)
        torch.testing.assert_close(em.denoise(noise, 0.0, 1.0), mean, rtol=1e-12, atol=1e-12)


def test_output_keeps_the_input_shape_dtype_and_accepts_flat_points():
    em = EmpiricalMixture(uint8_set(5))
    x = torch.randn(3, 3, 8, 8)
    out = em.denoise(x, 0.9, 0.3)
    assert out.shape == x.shape and out.dtype == torch.float32
    flat = em.denoise(x.reshape(3, -1), 0.9, 0.3)
    assert flat.shape == (3, 192)
    torch.testing.assert_close(flat.reshape(3, 3, 8, 8), out)


# ----------------------------------------------------------------------------------------------
# Classes
# ----------------------------------------------------------------------------------------------

def test_class_conditional_equals_the_mixture_of_that_class_only():
    images = uint8_set(20)
    labels = torch.arange(20) % 3
    em = EmpiricalMixture(images, labels, chunk_size=6)
    x = torch.randn(6, 3, 8, 8, generator=gen(7), dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    a, s = 0.9, 0.5
    for name in ("denoise", "score", "eps"):
        got = getattr(em, name)(x, a, s, y)
        for c in range(3):
            sub = EmpiricalMixture(images[labels == c], chunk_size=6)
            rows = y == c
            torch.testing.assert_close(got[rows], getattr(sub, name)(x[rows], a, s), rtol=1e-12, atol=1e-12)
        null = torch.full((6,), 3)                  # the null class = unconditional
        torch.testing.assert_close(getattr(em, name)(x, a, s, null), getattr(em, name)(x, a, s), rtol=1e-12, atol=1e-12)
    index, _ = em.responsibility(x, a, s, y)
    assert torch.equal(labels[index], y)
    index, _ = em.nearest_image(x, y)
    assert torch.equal(labels[index], y)


def test_class_conditional_sigma_matches_toy2d_class_mixture():
    X = float_set(8, 3)
    labels = torch.tensor([0, 1, 1, 0, 2, 2, 1, 0])
    em = EmpiricalMixture(X, labels, sigma_data=0.1, chunk_size=3)
    cm = GaussianMixture(None, X, stds=0.1).class_conditional(labels.tolist())
    x = torch.randn(9, 3, generator=gen(8), dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0])
    torch.testing.assert_close(em.denoise(x, 0.8, 0.3, y), cm.denoise(x, 0.8, 0.3, y), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(em.score(x, 0.8, 0.3, y), cm.score(x, 0.8, 0.3, y), rtol=1e-10, atol=1e-10)


def test_sample_draws_training_images_of_the_class():
    images = uint8_set(12)
    labels = torch.arange(12) % 4
    em = EmpiricalMixture(images, labels)
    x, index = em.sample(20, torch.full((20,), 2), generator=gen(0))
    assert (labels[index] == 2).all()
    torch.testing.assert_close(x, em.images(index))
    _, dist = em.nearest_image(x)
    assert dist.max() < 1e-5


# ----------------------------------------------------------------------------------------------
# Drop-in models
# ----------------------------------------------------------------------------------------------

def ddim(model, shape, betas, steps, y=None, generator=None):
    """Deterministic DDIM on the given integer steps (decreasing), ending with x0hat at the last one."""
    T = betas.numel()
    abar = torch.cumprod(1 - betas, 0)
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    weights = []
    for k, step in enumerate(steps):
        t = torch.full((shape[0],), step / T, dtype=torch.float64)
        eps = model(x, t, y)
        a, s = abar[step - 1].sqrt(), (1 - abar[step - 1]).sqrt()
        x0 = (x - s * eps) / a
        weights.append(model.mixture.responsibility(x, a, s, y)[1])
        if k + 1 < len(steps):
            nxt = abar[steps[k + 1] - 1]
            x = nxt.sqrt() * x0 + (1 - nxt).sqrt() * eps
        else:
            x = x0
    return x, weights


def test_ddim_with_the_exact_model_lands_on_training_images():
    """20 deterministic steps on 8 images of 3x32x32: every sample is a copy of one training image."""
    images = uint8_set(8, (3, 32, 32))
    em = EmpiricalMixture(images, chunk_size=3)
    model = DDPMExact(em, linear_betas())
    steps = torch.linspace(1000, 1, 20).round().long().tolist()
    x0, weights = ddim(model, (12, 3, 32, 32), linear_betas(), steps, generator=gen(0))
    index, dist = em.nearest_image(x0)
    assert dist.max() / math.sqrt(3 * 32 * 32) < 1e-6
    assert index.unique().numel() >= 4               # it reaches several images, not one
    assert weights[0].max() < 0.9                     # at t = T the posterior is spread out
    assert weights[-1].min() > 1 - 1e-9               # at t = 1 it has committed to one image


def test_guided_ddim_per_class_lands_in_the_class():
    images = uint8_set(9, (3, 32, 32), seed=3)
    labels = torch.arange(9) % 3
    model = DDPMExact(EmpiricalMixture(images, labels), linear_betas())
    y = torch.tensor([0, 1, 2, 2, 1, 0])

    class Guided:
        mixture = model.mixture

        def __call__(self, x, t, y):
            e_u, e_c = model(x, t, None), model(x, t, y)
            return e_u + 3.0 * (e_c - e_u)

    x0, _ = ddim(Guided(), (6, 3, 32, 32), linear_betas(), list(range(1000, 0, -100)) + [1], y, gen(1))
    index, dist = model.mixture.nearest_image(x0)
    assert torch.equal(labels[index], y)
    assert dist.max() < 1e-3


def test_ddpm_and_vp_wrappers_use_their_noise_levels():
    em = EmpiricalMixture(uint8_set(6))
    x = torch.randn(4, 3, 8, 8, generator=gen(2))
    betas = linear_betas(50)
    model = DDPMExact(em, betas)
    steps = torch.tensor([1, 10, 30, 50])
    abar = torch.cumprod(1 - betas, 0)[steps - 1]
    t = steps.float() / 50
    torch.testing.assert_close(model(x, t), em.eps(x, abar.sqrt(), (1 - abar).sqrt()))
    torch.testing.assert_close(model.x0(x, t), em.denoise(x, abar.sqrt(), (1 - abar).sqrt()))
    with pytest.raises(ValueError, match="t must hold step / T"):
        model(x, torch.full((4,), 0.013))
    with pytest.raises(ValueError, match="t must hold step / T"):
        model(x, torch.zeros(4))

    vp = VPExact(em)
    tt = torch.tensor([1e-3, 0.2, 0.5, 1.0], dtype=torch.float64)
    B_int = 0.1 * tt + 0.5 * 19.9 * tt ** 2
    a, s = torch.exp(-B_int / 2), torch.sqrt(1 - torch.exp(-B_int))
    torch.testing.assert_close(vp(x, tt), em.eps(x, a, s))
    torch.testing.assert_close(vp.score(x, tt), em.score(x, a, s))
    torch.testing.assert_close(vp.score(x, tt), -vp(x, tt) / s.float().view(4, 1, 1, 1), rtol=1e-5, atol=1e-5)
    ou = VPExact(em, marginal=lambda t: (torch.exp(-t), torch.sqrt(0.5 * (1 - torch.exp(-2 * t)))))
    a, s = torch.exp(-tt), torch.sqrt(0.5 * (1 - torch.exp(-2 * tt)))
    torch.testing.assert_close(ou.x0(x, tt), em.denoise(x, a, s))


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------

def test_bad_input_is_rejected_before_any_work():
    images = uint8_set(4)
    with pytest.raises(TypeError, match="images"):
        EmpiricalMixture(images.numpy())
    with pytest.raises(TypeError, match="images"):
        EmpiricalMixture(images.long())
    with pytest.raises(ValueError, match="model space"):
        EmpiricalMixture(images.float())           # 0..255 floats are not model space
    with pytest.raises(ValueError, match="images"):
        EmpiricalMixture(images[0])
    with pytest.raises(ValueError, match="labels"):
        EmpiricalMixture(images, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="labels"):
        EmpiricalMixture(images, torch.zeros(4))
    with pytest.raises(ValueError, match="every class"):
        EmpiricalMixture(images, torch.tensor([0, 0, 2, 2]))
    with pytest.raises(ValueError, match="sigma_data"):
        EmpiricalMixture(images, sigma_data=-0.1)
    with pytest.raises(TypeError, match="chunk_size"):
        EmpiricalMixture(images, chunk_size=2.0)
    with pytest.raises(ValueError, match="chunk_size"):
        EmpiricalMixture(images, chunk_size=0)
    with pytest.raises(TypeError, match="dtype"):
        EmpiricalMixture(images, dtype=torch.float16)
    em = EmpiricalMixture(images, torch.tensor([0, 1, 0, 1]))
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="x_t"):
        em.denoise(torch.randn(2, 3, 8, 9), 0.9, 0.3)
    with pytest.raises(TypeError, match="x_t"):
        em.denoise(x.long(), 0.9, 0.3)
    with pytest.raises(ValueError, match="x_t"):
        em.denoise(x * float("nan"), 0.9, 0.3)
    with pytest.raises(ValueError, match="s must be > 0"):
        em.denoise(x, 0.9, 0.0)
    with pytest.raises(ValueError, match="a must be"):
        em.denoise(x, torch.ones(3), 0.3)
    with pytest.raises(TypeError, match="a must be"):
        em.denoise(x, "0.9", 0.3)
    with pytest.raises(TypeError, match="y must be"):
        em.denoise(x, 0.9, 0.3, torch.zeros(2))
    with pytest.raises(ValueError, match="y must hold"):
        em.denoise(x, 0.9, 0.3, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="no labels"):
        EmpiricalMixture(images).denoise(x, 0.9, 0.3, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="mixture"):
        DDPMExact(images, linear_betas())
    with pytest.raises(ValueError, match="betas"):
        DDPMExact(em, torch.ones(10, dtype=torch.float64))
    with pytest.raises(TypeError, match="t must be"):
        DDPMExact(em, linear_betas())(x, 5)
    with pytest.raises(TypeError, match="marginal"):
        VPExact(em, marginal=3)
