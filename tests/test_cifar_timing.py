"""cifar/timing.py: the probs_fn wrapper returns the network's softmax and charges its time to the network."""
import time

import pytest
import torch

from cifar.timing import TimedProbs, time_sampler


class SlowNetwork:
    """Logits [B, L, V] from tokens [B, L]; sleeps ``pause`` seconds per call."""

    def __init__(self, vocab=5, pause=0.0):
        self.vocab, self.pause = vocab, pause

    def __call__(self, x):
        time.sleep(self.pause)
        return torch.arange(self.vocab, dtype=torch.float32).expand(*x.shape, self.vocab) * (x[..., None] + 1)


def test_timed_probs_is_the_softmax_of_the_logits_and_counts_calls():
    net = SlowNetwork()
    probs_fn = TimedProbs(net, "cpu")
    x = torch.tensor([[0, 3], [1, 2]])
    out = probs_fn(x)
    assert out.dtype == torch.float32 and out.shape == (2, 2, 5)
    assert torch.allclose(out, torch.softmax(net(x), dim=-1)) and torch.allclose(out.sum(-1), torch.ones(2, 2))
    probs_fn(x)
    assert probs_fn.calls == 2 and probs_fn.seconds >= 0


def test_time_sampler_splits_the_wall_time_between_network_and_the_rest():
    """Lower bounds only (sleep guarantees at least its pause): no timing assert can fail on a busy machine."""
    def run(probs_fn):
        for _ in range(3):
            probs_fn(torch.zeros(1, 4, dtype=torch.long))
        time.sleep(0.02)  # work outside the network, like categorical draws

    t = time_sampler(run, SlowNetwork(pause=0.01), "cpu")
    assert t["nfe"] == 3
    assert t["network"] >= 0.03 and t["other"] >= 0.02
    assert t["total"] == pytest.approx(t["network"] + t["other"])


def test_bad_arguments_are_rejected():
    with pytest.raises(TypeError, match="network"):
        TimedProbs(None, "cpu")
    with pytest.raises(TypeError, match="run"):
        time_sampler(3, SlowNetwork(), "cpu")
    with pytest.raises(TypeError, match="device"):
        TimedProbs(SlowNetwork(), 0)
    with pytest.raises(ValueError, match="device"):
        time_sampler(lambda p: None, SlowNetwork(), "gpu")


def test_on_cuda_the_clock_waits_for_the_device(monkeypatch):
    """No GPU needed: a run that never calls the network still synchronises CUDA around the clock."""
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(torch.device(device)))
    t = time_sampler(lambda p: None, SlowNetwork(), "cuda")
    assert t["nfe"] == 0 and synced == [torch.device("cuda")] * 2
    time_sampler(lambda p: None, SlowNetwork(), "cpu")
    assert len(synced) == 2  # the CPU never synchronises
