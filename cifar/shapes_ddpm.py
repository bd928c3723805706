"""The DDPM on grey Simple Shapes that lessons 01 and 02 share: one loss, one cached run.

Lesson 01 samples it as a DDPM (steps t = 1..T, the net reads t / T); lesson 02 reads the same net
as an eps-parameterised VP-SDE model (time t in (0, 1], score = -eps / s(t)), because the VP SDE
with beta_min = 0.1, beta_max = 20 is the continuous limit of DDPM's linear schedule
beta_t = 1e-4 .. 0.02 at T = 1000: the signal and noise scales of the two agree to 1.0e-3 and
1.3e-3 at every t / T (:func:`vp_marginal_gap`; the relative gap in the noise scale is largest at
t = 1 / T, 4.6%, and 2.5% by t = 10 / T).

    run = train_shapes_ddpm(nb.mode, nb.device)     # trains once, then loads from the cache
    eps = run.ema(x_t, t)                           # x_t [B, 1, 32, 32] in [-1, 1], t [B] = step / T

Both lessons hit the same cache entry: the key fingerprints the recipe (lesson 01's, variant
"grey", for the mode and device), the training tensors (the images only, uint8 [N, 1, 32, 32]) and
the loss, :func:`ddpm_eps_loss`, which lives here so that both notebooks pass the very same
function (its identity is its module, name, source and the module's schedule tensor).
"""
from __future__ import annotations

import torch

__all__ = ["T", "BETA_1", "BETA_T", "BETAS", "ALPHAS_CUMPROD", "ddpm_eps_loss", "shapes_recipe", "train_shapes_ddpm",
           "vp_marginal_gap"]

T, BETA_1, BETA_T = 1000, 1e-4, 0.02
BETAS = torch.linspace(BETA_1, BETA_T, T, dtype=torch.float64)   # beta_t for t = 1..T (betas[t - 1])
ALPHAS_CUMPROD = torch.cumprod(1 - BETAS, 0)                     # abar_t


def ddpm_eps_loss(model, batch: tuple, generator: torch.Generator | None = None) -> torch.Tensor:
    """The DDPM loss E ||eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t / T)||^2, t ~ U{1..T}.

    Args:
        model: ``model(x_t [B, C, H, W], t / T [B]) -> [B, C, H, W]``.
        batch: the trainer's batch; ``batch[0]`` holds uint8 images [B, C, H, W] (0..255 map to [-1, 1]).
        generator: the ``torch.Generator`` for t and eps (on the images' device).

    Returns:
        The loss, a scalar tensor.
    """
    x0 = batch[0].float() / 127.5 - 1                                            # uint8 -> [-1, 1]
    t = torch.randint(1, T + 1, (len(x0),), generator=generator, device=x0.device)  # t ~ U{1..T}
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    abar = ALPHAS_CUMPROD.to(x0.device, x0.dtype)[t - 1].view(-1, *[1] * (x0.ndim - 1))
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    out = model(x_t, t.to(x0.dtype) / T)
    if out.shape != x_t.shape:
        raise ValueError(f"model returned shape {tuple(out.shape)}, expected {tuple(x_t.shape)} (the shape of x_t)")
    return ((out - eps) ** 2).mean()


def shapes_recipe(mode: str, device=None) -> dict:
    """The shared run's recipe: lesson 01's, variant "grey", for ``mode`` and ``device`` (see ``get_recipe``)."""
    from .recipes import get_recipe

    recipe = get_recipe("01-hallucination", mode, variant="grey", device=device)
    d = recipe["diffusion"]
    if (d["T"], d["beta_start"], d["beta_end"], d["prediction"]) != (T, BETA_1, BETA_T, "eps"):
        raise ValueError(f"the recipe's diffusion {d} is not this module's schedule (T={T}, {BETA_1}..{BETA_T}, eps)")
    return recipe


def train_shapes_ddpm(mode: str, device=None, *, progress: bool = False, cache_dir=None):
    """Train (or load from the cache) the shared DDPM for ``mode`` on ``device``; a ``TrainResult``.

    The data passed to the trainer is the images alone, ``(images,)``, so every caller hashes the same
    tensors. ``result.ema`` is the net to sample from; ``result.recipe["run"]`` says which run it is.
    """
    from .data import load_dataset
    from .trainer import train_recipe

    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    recipe = shapes_recipe(mode, device)
    images, _ = load_dataset(recipe["data"])
    return train_recipe(recipe, ddpm_eps_loss, device=device, progress=progress, data=(images,), cache_dir=cache_dir)


def vp_marginal_gap(beta_min: float = 0.1, beta_max: float = 20.0) -> tuple[float, float]:
    """max over t = 1..T of |a_DDPM - a_VP| and |s_DDPM - s_VP| at time t / T (the VP SDE's marginal scales).

    a_DDPM = sqrt(abar_t), s_DDPM = sqrt(1 - abar_t); a_VP(u) = exp(-B(u) / 2), s_VP(u) = sqrt(1 - exp(-B(u))),
    B(u) = beta_min u + (beta_max - beta_min) u^2 / 2.
    """
    u = torch.arange(1, T + 1, dtype=torch.float64) / T
    B = beta_min * u + 0.5 * (beta_max - beta_min) * u ** 2
    a_vp, s_vp = torch.exp(-0.5 * B), torch.sqrt(-torch.expm1(-B))
    a, s = ALPHAS_CUMPROD.sqrt(), (1 - ALPHAS_CUMPROD).sqrt()
    return (a - a_vp).abs().max().item(), (s - s_vp).abs().max().item()
