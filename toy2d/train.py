"""One training loop for every toy model: AdamW, cosine learning-rate decay, seeded batches.

The loss is the caller's: ``loss_fn(model, x_batch)`` (or ``loss_fn(model, x_batch, y_batch)`` when
labels are given) returns a scalar tensor. The loop only draws batches and steps the optimiser,
so the same loop trains an eps-, x0-, score- or potential-network with whatever objective a lesson
derives.

Reproducibility: batches come from a generator seeded with ``seed``, and the loop runs inside
``torch.random.fork_rng`` with the global generators seeded by ``seed`` too, so a loss that draws its
noise with ``torch.randn`` is reproducible as well, and the caller's global random state is left as
it was.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import nn
from tqdm import tqdm

__all__ = ["train"]


def train(model: nn.Module, loss_fn: Callable[..., torch.Tensor], x: torch.Tensor, *,
          y: Optional[torch.Tensor] = None, steps: int, batch_size: int = 256, lr: float = 1e-3,
          weight_decay: float = 0.0, grad_clip: Optional[float] = None, seed: int = 0,
          progress: bool = True) -> list[float]:
    """Train ``model`` on the rows of ``x`` [n, D] (labels ``y`` [n] optional) for ``steps`` steps.

    Each step draws ``batch_size`` rows without replacement within an epoch (reshuffled every
    epoch), moves them to the model's device and takes one AdamW step on ``loss_fn``. The learning
    rate decays from ``lr`` to 0 along a half cosine. The model is left in eval mode. Returns the loss of
    every step (floats).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty tensor of shape [n, D], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if y is not None and (not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],)):
        raise ValueError(f"y must be None or a tensor of shape [n] = [{x.shape[0]}], got "
                         f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
    for name, value in (("steps", steps), ("batch_size", batch_size), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed" else 1):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'seed' else 'positive'} int, got {value!r}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a non-negative number, got {weight_decay!r}")
    if grad_clip is not None and not (isinstance(grad_clip, (int, float)) and grad_clip > 0):
        raise ValueError(f"grad_clip must be None or a positive number, got {grad_clip!r}")

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model must have trainable parameters")
    device = params[0].device
    n = x.shape[0]
    batch_size = min(batch_size, n)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    batches = torch.Generator().manual_seed(seed)
    fork_devices = [device.index or 0] if device.type == "cuda" else []

    losses: list[float] = []
    model.train()
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        order, position = torch.randperm(n, generator=batches), 0
        bar = tqdm(range(steps), disable=not progress, desc="train", mininterval=0.5)
        for _ in bar:
            if position + batch_size > n:  # new epoch
                order, position = torch.randperm(n, generator=batches), 0
            index = order[position:position + batch_size]
            position += batch_size
            x_batch = x[index.to(x.device)].to(device)
            if y is None:
                loss = loss_fn(model, x_batch)
            else:
                loss = loss_fn(model, x_batch, y[index.to(y.device)].to(device))
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise ValueError("loss_fn must return a scalar tensor")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if progress and len(losses) % 50 == 0:
                bar.set_postfix(loss=f"{sum(losses[-50:]) / 50:.4f}", refresh=False)
    model.eval()
    return losses
