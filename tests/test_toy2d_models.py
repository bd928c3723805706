"""The MLP and the training loop: a few seconds of training gets close to the exact denoiser."""
import math

import pytest
import torch

import toy2d
from toy2d import MLP


def vp_levels(t):
    """A variance-preserving schedule for the tests: a = cos(pi t / 2), s = sin(pi t / 2)."""
    t = torch.as_tensor(t, dtype=torch.float32)
    return torch.cos(math.pi / 2 * t), torch.sin(math.pi / 2 * t)


def x0_loss(model, x0):
    """E_t w(t) ||x0_hat(x_t, t) - x0||^2, t ~ U(0, 1), with w = min(1 / s^2, 10): the denoising loss
    of an x0-prediction model, weighted up at low noise (like the eps loss) so those levels train too."""
    t = torch.rand(x0.shape[0])
    a, s = vp_levels(t)
    x_t = a[:, None] * x0 + s[:, None] * torch.randn_like(x0)
    weight = torch.clamp(1 / s ** 2, max=10.0)
    return (weight * ((model(x_t, t) - x0) ** 2).sum(1)).mean()


def denoising_losses(model, mixture, levels, n=20_000):
    """Per noise level: (the model's E||x0_hat - x0||^2, the exact denoiser's), on the same x_t."""
    g = torch.Generator().manual_seed(123)
    x0 = mixture.sample(n, generator=g)
    out = []
    for t in levels:
        a, s = (v.item() for v in vp_levels(t))
        x_t = a * x0 + s * torch.randn(x0.shape, generator=g)
        with torch.no_grad():
            learned = ((model(x_t, t) - x0) ** 2).sum(1).mean().item()
        exact = ((mixture.denoise(x_t, a, s) - x0) ** 2).sum(1).mean().item()
        out.append((learned, exact))
    return out


def test_trained_mlp_denoises_within_1_25x_of_the_exact_denoiser():
    """A few seconds of training: at every noise level from t = 0.1 (close to the data, where the exact
    denoiser is a staircase) to t = 0.7, the learned E||x0_hat - x0||^2 is within 1.25x of the
    Bayes-optimal one (it reaches about 1.08x; an untrained network is far off)."""
    x, mixture = toy2d.nine_gaussians(20_000, seed=0)
    levels = (0.1, 0.2, 0.3, 0.5, 0.7)
    torch.manual_seed(0)
    untrained = denoising_losses(MLP(2, hidden=64, depth=2, output="x0"), mixture, levels)
    assert untrained[0][0] > 3 * untrained[0][1]  # the check below can fail
    torch.manual_seed(0)
    model = MLP(2, hidden=64, depth=2, output="x0")
    losses = toy2d.train(model, x0_loss, x, steps=800, batch_size=1024, lr=1e-2, seed=0, progress=False)
    assert len(losses) == 800 and sum(losses[-100:]) / 100 < 0.6 * sum(losses[:10]) / 10
    for t, (learned, exact) in zip(levels, denoising_losses(model, mixture, levels)):
        print(f"t={t}: learned {learned:.4f}, exact {exact:.4f}, ratio {learned / exact:.3f}")
        assert learned < 1.25 * exact, (t, learned, exact)
        assert learned > 0.97 * exact  # nothing beats the Bayes-optimal denoiser (up to sampling noise)


def test_train_is_reproducible_and_leaves_the_global_generator_alone():
    x, _ = toy2d.grid(500, k=3, seed=0)

    def run():
        torch.manual_seed(1)  # the same initial weights
        model = MLP(2, hidden=16, depth=1, output="x0")
        losses = toy2d.train(model, x0_loss, x, steps=20, batch_size=64, seed=5, progress=False)
        return losses, next(model.parameters()).detach().clone()

    (l1, p1), (l2, p2) = run(), run()
    assert l1 == l2 and torch.equal(p1, p2)
    model = MLP(2, hidden=8, depth=1)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    toy2d.train(model, x0_loss, x, steps=3, progress=False)  # x0_loss draws from the global generator
    assert torch.equal(torch.rand(3), expected)  # ... inside train's own fork: the caller's stream is untouched


class Scalar(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


def test_train_steps_adamw_with_cosine_decay_and_passes_labels():
    """With a constant gradient, each Adam step moves w by exactly the current learning rate,
    so the trajectory of w reads off the schedule lr_k = lr (1 + cos(pi k / steps)) / 2."""
    x = torch.zeros(300, 2)
    y = torch.arange(300) % 2
    trajectory, label_shapes = [], []

    def loss_fn(model, xb, yb):
        trajectory.append(model.w.item())
        label_shapes.append(tuple(yb.shape))
        return model.w.sum()  # d loss / dw = 1

    model = Scalar()
    toy2d.train(model, loss_fn, x, y=y, steps=8, batch_size=100, lr=0.1, progress=False)
    trajectory.append(model.w.item())
    steps = [trajectory[k] - trajectory[k + 1] for k in range(8)]
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)]
    assert all(abs(a - b) < 1e-6 for a, b in zip(steps, expected)), (steps, expected)
    assert label_shapes == [(100,)] * 8


def test_mlp_output_shapes_and_time_forms():
    x = torch.randn(5, 2)
    for output in ("eps", "x0", "score"):
        assert MLP(2, output=output)(x, 0.3).shape == (5, 2)
    model = MLP(1, hidden=16)
    x1 = torch.randn(5, 1)
    out_float = model(x1, 0.3)
    torch.testing.assert_close(model(x1, torch.full((5,), 0.3)), out_float)
    torch.testing.assert_close(model(x1, torch.full((5, 1), 0.3)), out_float)
    torch.testing.assert_close(model(x1, torch.tensor(0.3)), out_float)
    assert not torch.allclose(model(x1, 0.301), out_float)  # one DDPM step (1/1000) is resolved
    phi = MLP(2, output="potential")(x, 0.3)
    assert phi.shape == (5,)


def test_a_shared_time_is_detected_from_its_values_and_embedded_once(monkeypatch):
    model = MLP(2, hidden=16)
    x = torch.randn(6, 2)
    t = torch.full((6,), 0.2)  # what minimal/hallucination.py's sampler passes: a plain [B] tensor
    reference = model.network(x, model.condition(t, None))  # the network itself: one embedding per row
    rows_seen = []
    monkeypatch.setattr(model.time_mlp, "forward",
                        lambda f, inner=model.time_mlp.forward: rows_seen.append(f.shape[0]) or inner(f))
    torch.testing.assert_close(model(x, t), reference)
    torch.testing.assert_close(model(x, torch.full((1,), 0.2).expand(6)), reference)  # a stride-0 view too
    torch.testing.assert_close(model(x, 0.2), reference)
    assert rows_seen == [1, 1, 1]
    model(x, torch.linspace(0.1, 0.6, 6))  # different times: one embedding per row
    assert rows_seen[-1] == 6
    # a time that needs its gradient (the Fokker-Planck residual) keeps one embedding per row
    t = torch.full((1,), 0.2, requires_grad=True)
    (dt,) = torch.autograd.grad(model(x, t.expand(6)).sum(), t)
    assert rows_seen[-1] == 6 and bool(dt != 0)
    # so do per-row classes
    conditional = MLP(2, hidden=16, num_classes=3)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    per_row = conditional.network(x, conditional.condition(torch.full((6,), 0.2), y))
    torch.testing.assert_close(conditional(x, 0.2, y), per_row)


def test_a_large_batch_goes_through_in_chunks_with_the_same_answer(monkeypatch):
    import toy2d.mlp

    model = MLP(2, hidden=16, num_classes=3)
    x, t, y = torch.randn(50, 2), torch.rand(50), torch.randint(0, 4, (50,))
    whole = model(x, t, y)
    passes = []
    monkeypatch.setattr(model, "network", lambda xs, c, inner=model.network: passes.append(len(xs)) or inner(xs, c))
    monkeypatch.setattr(toy2d.mlp, "CHUNK_ELEMENTS", 16 * 7)  # 7 rows a pass: 8 passes, the last short
    torch.testing.assert_close(model(x, t, y), whole)
    assert passes == [7] * 7 + [1]
    potential = MLP(2, hidden=16, output="potential")
    assert potential.score(x, 0.5).shape == (50, 2)  # the gradient flows through the chunks
    torch.testing.assert_close(potential.score(x, 0.5), potential.score(x, torch.full((50,), 0.5)))


def test_sinusoidal_features():
    f = toy2d.sinusoidal_features(torch.tensor([0.0, 0.5]), 8)
    assert f.shape == (2, 8)
    torch.testing.assert_close(f[0], torch.tensor([0.0] * 4 + [1.0] * 4))


def test_potential_score_is_the_gradient_of_phi():
    torch.manual_seed(0)
    model = MLP(2, hidden=32, depth=2, output="potential").double()
    x = torch.randn(6, 2, dtype=torch.float64)
    t = torch.rand(6, dtype=torch.float64)
    model.eval()
    with torch.no_grad():  # works at sampling time, detached
        score = model.score(x, t)
    assert not score.requires_grad
    h = 1e-6  # central differences of phi
    fd = torch.stack([(model(x + h * e, t) - model(x - h * e, t)) / (2 * h)
                      for e in torch.eye(2, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(score, fd.detach(), rtol=1e-6, atol=1e-7)
    model.train()  # while training, the score carries a graph back to the parameters
    score = model.score(x, t)
    assert score.requires_grad
    score.pow(2).sum().backward()
    assert model.out.weight.grad is not None and model.out.weight.grad.abs().sum() > 0


def test_potential_has_time_derivative_and_laplacian_by_autograd():
    """What a Fokker-Planck residual needs (lesson 02): d phi / dt and the Laplacian of phi, exactly."""
    torch.manual_seed(0)
    model = MLP(2, hidden=32, depth=2, output="potential").double()
    x = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    t = torch.rand(4, dtype=torch.float64, requires_grad=True)
    phi = model(x, t)
    dphi_dt, grad_x = torch.autograd.grad(phi.sum(), (t, x), create_graph=True)
    laplacian = sum(torch.autograd.grad(grad_x[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(2))
    h = 1e-5
    with torch.no_grad():
        fd_t = (model(x, t + 1e-7) - model(x, t - 1e-7)) / 2e-7  # small step: time features go up to 1000 rad
        fd_lap = sum((model(x + h * e, t) - 2 * model(x, t) + model(x - h * e, t)) / h ** 2
                     for e in torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(dphi_dt, fd_t, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(laplacian, fd_lap, rtol=1e-3, atol=1e-3)


def test_class_conditioning_and_the_null_class():
    torch.manual_seed(0)
    model = MLP(2, hidden=16, num_classes=3)
    x = torch.randn(4, 2)
    null = torch.full((4,), 3, dtype=torch.long)
    torch.testing.assert_close(model(x, 0.5), model(x, 0.5, null))
    assert not torch.allclose(model(x, 0.5, torch.zeros(4, dtype=torch.long)), model(x, 0.5, null))


BAD_INPUTS = [
    (lambda: MLP(0), "dim"),
    (lambda: MLP(2, output="velocity"), "output"),
    (lambda: MLP(2, time_features=7), "time_features"),
    (lambda: MLP(2, num_classes=0), "num_classes"),
    (lambda: MLP(2)(torch.zeros(3, 1), 0.1), "x"),
    (lambda: MLP(2)(torch.zeros(3, 2), torch.zeros(2)), "t"),
    (lambda: MLP(2)(torch.zeros(3, 2), 0.1, torch.zeros(3, dtype=torch.long)), "y"),
    (lambda: MLP(2, num_classes=2)(torch.zeros(3, 2), 0.1, torch.tensor([0, 1, 3])), "y"),
    (lambda: MLP(2, num_classes=2)(torch.zeros(3, 2), 0.1, torch.zeros(3)), "y"),
    (lambda: MLP(2, output="eps").score(torch.zeros(3, 2), 0.1), "score"),
    (lambda: toy2d.train(MLP(2), x0_loss, torch.zeros(10), steps=1), "x"),
    (lambda: toy2d.train(MLP(2), x0_loss, torch.zeros(10, 2), steps=0), "steps"),
    (lambda: toy2d.train(MLP(2), x0_loss, torch.zeros(10, 2), steps=1, lr=-1.0), "lr"),
    (lambda: toy2d.train(MLP(2), x0_loss, torch.zeros(10, 2), y=torch.zeros(9), steps=1), "y"),
    (lambda: toy2d.train(MLP(2), "loss", torch.zeros(10, 2), steps=1), "loss_fn"),
]


@pytest.mark.parametrize("call,name", BAD_INPUTS)
def test_bad_input_raises_naming_the_argument(call, name):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert str(info.value).split()[0] == name, str(info.value)
