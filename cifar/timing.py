"""Where a sampler's wall time goes: inside the network, or outside it (categorical draws and the rest).

:class:`TimedProbs` wraps a token network as the ``probs_fn`` of lesson 04's samplers and adds up the
time spent in its calls; :func:`time_sampler` runs a sampler once around it and splits its wall time.
On CUDA both synchronise before reading the clock, so asynchronous GPU work is charged where it runs.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import torch

__all__ = ["TimedProbs", "time_sampler"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check_device(device) -> torch.device:
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or a torch.device such as 'cpu' or 'cuda', "
                        f"got {type(device).__name__}")
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda', got {device!r}") from error


class TimedProbs:
    """``probs_fn`` around a network: tokens [B, L] -> float32 probabilities [B, L, V], timed.

    The network runs under bf16 autocast on CUDA (as trained) and its logits become probabilities in
    float32, as MDLM's code forms them. ``seconds`` and ``calls`` add up over the calls.

    Args:
        network: a callable, tokens [B, L] int64 -> logits [B, L, V].
        device: where the network runs; the tokens are moved there.
    """

    def __init__(self, network: Callable[[torch.Tensor], torch.Tensor], device: torch.device | str):
        if not callable(network):
            raise TypeError(f"network must be callable, got {type(network).__name__}")
        self.network, self.device = network, _check_device(device)
        self.seconds, self.calls = 0.0, 0

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _sync(self.device)
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            logits = self.network(x.to(self.device))
        probs = torch.softmax(logits.float(), dim=-1)
        _sync(self.device)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return probs


def time_sampler(run: Callable[[TimedProbs], object], network: Callable[[torch.Tensor], torch.Tensor],
                 device: torch.device | str) -> dict[str, float]:
    """Run ``run(probs_fn)`` once with a fresh :class:`TimedProbs` and split its wall time.

    Args:
        run: calls a sampler with the ``probs_fn`` it is given, e.g. ``lambda p: fhs_sample(p, ...)``.
        network: tokens [B, L] -> logits [B, L, V].
        device: where the network runs.

    Returns:
        ``total`` (seconds of the whole run), ``network`` (seconds inside network calls), ``other``
        (``total - network``: the categorical draws and the rest) and ``nfe`` (the number of calls).
        On CUDA the device is synchronised before each clock reading, so queued work is counted.
    """
    if not callable(run):
        raise TypeError(f"run must be callable, got {type(run).__name__}")
    probs = TimedProbs(network, device)
    _sync(probs.device)
    start = time.perf_counter()
    run(probs)
    _sync(probs.device)
    total = time.perf_counter() - start
    return dict(total=total, network=probs.seconds, other=total - probs.seconds, nfe=probs.calls)
