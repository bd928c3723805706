r"""A small time-conditioned MLP for 1D/2D diffusion, optionally class-conditioned.

The network reads a point ``x`` [B, D], a time ``t`` [B] (a float; DDPM integer steps pass ``t / T``)
and optionally a class id ``y`` [B]. What its output *means* is set by ``output``, which only fixes
the output's shape; the loss gives it its meaning:

* ``"eps"``: the noise :math:`\epsilon_\theta(x_t, t)` [B, D] (DDPM);
* ``"x0"``: the clean point :math:`\hat x_0(x_t, t)` [B, D];
* ``"score"``: :math:`s_\theta(x_t, t) \approx \nabla\log p_t(x_t)` [B, D];
* ``"potential"``: a scalar :math:`\phi_\theta(x_t, t)` [B] whose gradient is the score,
  :math:`s_\theta = \nabla_x \phi_\theta` (so :meth:`MLP.score` exists; lesson 02's Fokker-Planck
  residual needs :math:`\phi` itself, its time derivative and its Laplacian).

Architecture. The time enters through sinusoidal features :math:`[\sin(\omega_i t), \cos(\omega_i t)]`
with frequencies :math:`\omega_i` spaced geometrically from 1 to ``max_frequency`` (default 1000), so
both t = 1 and one DDPM step t = 1/1000 are resolved. The time features (plus the class embedding)
are mapped to a conditioning vector ``c``, which is added inside every hidden layer:
:math:`h_{l+1} = \mathrm{SiLU}(W_l h_l + V_l c)`.
SiLU is smooth, so the potential's second derivatives exist everywhere.
With ``num_classes = C``, class id ``C`` is the *null class* (no condition); it is used wherever
``y`` is None, and a loss can drop labels to it for classifier-free guidance.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import nn

__all__ = ["MLP", "sinusoidal_features", "OUTPUTS"]

OUTPUTS = ("eps", "x0", "score", "potential")
CHUNK_ELEMENTS = 1 << 22  # a forward pass handles at most this many hidden activations (16 MB) at once


def sinusoidal_features(t: torch.Tensor, num_features: int, max_frequency: float = 1000.0) -> torch.Tensor:
    """[sin(w_i t), cos(w_i t)] with w_i geometric in [1, max_frequency]: t [B] -> [B, num_features]."""
    half = num_features // 2
    freqs = torch.exp(torch.linspace(0.0, math.log(max_frequency), half, device=t.device, dtype=t.dtype))
    angles = t[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def _check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


class MLP(nn.Module):
    """Time- (and optionally class-) conditioned MLP.

    Args:
        dim: data dimension D (1 or 2 in this course; any D >= 1 works).
        hidden: width of the hidden layers.
        depth: number of hidden layers.
        output: "eps" | "x0" | "score" (forward returns [B, D]) or "potential" (forward returns [B]).
        num_classes: C for a class-conditional model; ids 0..C-1 are classes, C is the null class.
        time_features: number of sinusoidal time features (even, >= 2).
        max_frequency: the highest time frequency (rad per unit t). 1000 resolves single DDPM steps
            t = k / 1000; a model that is differentiated in t (a Fokker-Planck residual) is smoother with
            a small one, e.g. 10.
    """

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, output: str = "eps",
                 num_classes: Optional[int] = None, time_features: int = 16, max_frequency: float = 1000.0):
        _check_positive_int(dim, "dim")
        _check_positive_int(hidden, "hidden")
        _check_positive_int(depth, "depth")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if num_classes is not None:
            _check_positive_int(num_classes, "num_classes")
        _check_positive_int(time_features, "time_features", minimum=2)
        if time_features % 2:
            raise ValueError(f"time_features must be even (sin and cos pairs), got {time_features}")
        if isinstance(max_frequency, bool) or not isinstance(max_frequency, (int, float)) or not max_frequency >= 1:
            raise ValueError(f"max_frequency must be a number >= 1, got {max_frequency!r}")
        super().__init__()
        self.dim, self.hidden, self.depth = dim, hidden, depth
        self.output, self.num_classes, self.time_features = output, num_classes, time_features
        self.max_frequency = float(max_frequency)
        self.null_class = num_classes  # None for an unconditional model

        self.time_mlp = nn.Sequential(nn.Linear(time_features, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.class_embedding = nn.Embedding(num_classes + 1, hidden) if num_classes is not None else None
        self.input = nn.Linear(dim, hidden)
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.conditions = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.out = nn.Linear(hidden, 1 if output == "potential" else dim)

    def extra_repr(self) -> str:
        return f"output={self.output!r}, num_classes={self.num_classes}"

    def _check(self, x, t, y):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape [B, {self.dim}], got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape [B, {self.dim}], got {tuple(x.shape)}")
        B = x.shape[0]
        if isinstance(t, bool):
            raise TypeError("t must be a float or a tensor of shape [B], got bool")
        if isinstance(t, (int, float)):
            t = torch.full((1,), float(t), device=x.device, dtype=x.dtype).expand(B)
        elif isinstance(t, torch.Tensor):
            if t.numel() == 1:
                t = t.reshape(1).expand(B)
            elif t.shape in ((B,), (B, 1)):
                t = t.reshape(B)
            else:
                raise ValueError(f"t must be a float or a tensor of shape [B] = [{B}], got {tuple(t.shape)}")
            t = t.to(device=x.device, dtype=x.dtype)
        else:
            raise TypeError(f"t must be a float or a tensor, got {type(t).__name__}")
        if y is not None:
            if self.num_classes is None:
                raise ValueError("y must be None for an unconditional model (num_classes=None)")
            if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.dtype == torch.bool:
                raise TypeError(f"y must be a LongTensor of class ids [B], got {type(y).__name__}"
                                + (f" of dtype {y.dtype}" if isinstance(y, torch.Tensor) else ""))
            if y.shape != (B,):
                raise ValueError(f"y must have shape [B] = [{B}], got {tuple(y.shape)}")
            if ((y < 0) | (y > self.num_classes)).any():
                raise ValueError(f"y must hold class ids in 0..{self.num_classes} ({self.num_classes} = null class)")
        return t, y

    def forward(self, x: torch.Tensor, t: Union[float, torch.Tensor], y: Optional[torch.Tensor] = None):
        """x [B, D], t float or [B], y [B] long or None -> [B, D] (or phi [B] for output="potential")."""
        t, y = self._check(x, t, y)
        if len(x) > self._chunk_rows or self._shared_time(t, y):
            return self._forward_for_samplers(x, t, y)  # the same function, computed faster (see there)
        return self.network(x, self.condition(t, y))

    def condition(self, t: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        """The conditioning vector c [B, hidden] of the times t [B] (and class ids y [B] or None)."""
        c = self.time_mlp(sinusoidal_features(t, self.time_features, self.max_frequency))
        if self.class_embedding is not None:
            if y is None:
                y = torch.full((c.shape[0],), self.null_class, dtype=torch.long, device=c.device)
            c = c + self.class_embedding(y.to(c.device))
        return c

    def network(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The network on points x [B, D] with conditioning c [B, hidden] (or [1, hidden], shared)."""
        h = self.input(x)
        for layer, condition in zip(self.layers, self.conditions):
            h = nn.functional.silu(layer(h) + condition(c))  # h_{l+1} = SiLU(W_l h_l + V_l c)
        out = self.out(h)
        return out.squeeze(1) if self.output == "potential" else out

    # -- speed for samplers: the same function as above, two ways faster -----------------------

    @property
    def _chunk_rows(self) -> int:
        return max(1, CHUNK_ELEMENTS // self.hidden)

    def _shared_time(self, t: torch.Tensor, y: Optional[torch.Tensor]) -> bool:
        """True when every row has the same time (a sampler's step), no class varies and t needs no gradient."""
        return (len(t) > 1 and not t.requires_grad and (self.class_embedding is None or y is None)
                and bool((t == t[0]).all()))

    def _forward_for_samplers(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        """``network(x, condition(t, y))``, faster for what a sampler passes.

        A time shared by the whole batch gives the same conditioning c for every row: it is computed for
        one row and broadcast, which saves 4 of the 7 hidden-by-hidden matmuls (the time MLP's second layer
        and the V_l c), about half of a sampling step. A large batch (a sampler's 100,000 points) goes
        through in chunks of CHUNK_ELEMENTS activations: glibc hands every block above 32 MB straight from
        the OS, so a [100000, 128] activation page-faults fresh memory on every op; in chunks a sampling
        step took 165 ms instead of 320 ms on our CPU.
        """
        shared = self._shared_time(t, y)
        c = self.condition(t[:1], None) if shared else None
        rows = self._chunk_rows
        pieces = []
        for i in range(0, len(x), rows):
            part = slice(i, i + rows)
            c_part = c if shared else self.condition(t[part], None if y is None else y[part])
            pieces.append(self.network(x[part], c_part))
        return torch.cat(pieces)

    def score(self, x: torch.Tensor, t: Union[float, torch.Tensor], y: Optional[torch.Tensor] = None,
              create_graph: Optional[bool] = None) -> torch.Tensor:
        """grad_x phi(x, t, y) [B, D] for output="potential" (the forward itself for output="score").

        ``create_graph`` defaults to ``self.training``: while training, the loss backpropagates
        through the gradient; at sampling time it is detached. Works under ``torch.no_grad()``.
        """
        if self.output == "score":
            return self(x, t, y)
        if self.output != "potential":
            raise ValueError(f"score needs output='potential' or 'score' (an {self.output!r} model needs the "
                             "noise level to turn its output into a score)")
        create_graph = self.training if create_graph is None else create_graph
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            phi = self(x, t, y)
            (grad,) = torch.autograd.grad(phi.sum(), x, create_graph=create_graph)
        return grad
