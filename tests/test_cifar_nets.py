"""cifar nets: output shapes with and without class or time input, bad input, and overfitting a tiny batch."""
import pytest
import torch
import torch.nn.functional as F

from cifar.transformer import make_transformer
from cifar.unet import PRESETS, count_parameters, drop_labels, make_unet


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_unet_shapes_with_and_without_classes(preset):
    torch.manual_seed(0)
    x, t = torch.randn(3, 3, 32, 32), torch.rand(3)
    plain = make_unet(preset)
    assert plain(x, t).shape == (3, 3, 32, 32)
    assert plain(x, 0.5).shape == (3, 3, 32, 32)  # a scalar time is broadcast
    assert plain.null_class is None
    cond = make_unet(preset, num_classes=10, out_channels=6)
    y = torch.tensor([0, 9, 3])
    assert cond(x, t, y).shape == (3, 6, 32, 32)
    assert cond(x, t).shape == (3, 6, 32, 32) and cond.null_class == 10
    # the null class is an ordinary embedding row: y=None is the same as passing it explicitly
    with torch.no_grad():
        cond.head[-1].weight.normal_()  # the head starts at zero; make the output depend on the input
        assert torch.equal(cond(x, t), cond(x, t, torch.full((3,), 10)))
        assert not torch.allclose(cond(x, t, y), cond(x, t))


def test_unet_default_size_and_bad_input():
    assert 5e6 < count_parameters(make_unet("default")) < 10e6
    net = make_unet("tiny")
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match="unconditional"):
        net(x, torch.rand(2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="t / T"):
        net(x, torch.tensor([3, 4]))
    with pytest.raises(ValueError, match="x must have shape"):
        net(torch.randn(2, 1, 32, 32), torch.rand(2))
    with pytest.raises(ValueError, match="preset"):
        make_unet("huge")
    with pytest.raises(ValueError, match="num_classes"):
        make_unet("tiny", num_classes=0)
    y = torch.arange(1000) % 7
    dropped = drop_labels(y, 0.3, null_class=7, generator=torch.Generator().manual_seed(0))
    frac = (dropped == 7).float().mean().item()
    assert 0.25 < frac < 0.35 and torch.equal(dropped[dropped != 7], y[dropped != 7])
    assert set(PRESETS) == {"tiny", "small", "default"}


def test_transformer_shapes_with_and_without_time():
    torch.manual_seed(0)
    net = make_transformer("tiny", vocab_size=16, length=64)
    tokens = torch.randint(0, 17, (5, 64))  # 16 is the mask id
    assert net(tokens).shape == (5, 64, 16) and net.mask_id == 16
    timed = make_transformer("tiny", vocab_size=16, length=64, time_conditioning=True)
    assert timed(tokens, torch.rand(5)).shape == (5, 64, 16)
    with pytest.raises(ValueError, match="pass t"):
        timed(tokens)
    with pytest.raises(ValueError, match="tokens must have shape"):
        net(tokens[:, :10])
    with pytest.raises(TypeError, match="integer"):
        net(tokens.float())
    with pytest.raises(ValueError, match="divisible"):
        make_transformer("tiny", vocab_size=16, length=64, d_model=66, n_heads=4)
    assert 12e6 < count_parameters(make_transformer("default", vocab_size=256, length=1024)) < 16e6


def test_unet_overfits_a_tiny_batch():
    torch.manual_seed(0)
    net = make_unet("tiny", channels=8, num_classes=2)
    x0 = torch.rand(4, 3, 16, 16) * 2 - 1
    noisy = x0 + 0.5 * torch.randn_like(x0)
    t, y = torch.rand(4), torch.tensor([0, 1, 0, 1])
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = F.mse_loss(net(noisy, t, y), x0).item()
    for _ in range(150):
        loss = F.mse_loss(net(noisy, t, y), x0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * first, (first, loss.item())


def test_transformer_overfits_a_tiny_batch():
    torch.manual_seed(0)
    net = make_transformer("tiny", vocab_size=8, length=16)
    target = torch.randint(0, 8, (4, 16))
    masked = target.clone()
    masked[:, ::2] = 8  # half the positions masked
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(150):
        loss = F.cross_entropy(net(masked).flatten(0, 1), target.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05, loss.item()
    assert torch.equal(net(masked).argmax(-1), target)
