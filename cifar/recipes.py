"""Training recipes for the four CIFAR notebooks: what to train, on what, for how long.

    recipe = get_recipe("01-hallucination", nb.mode)      # a fresh dict; edit it freely
    result = train_recipe(recipe, loss_fn)                 # trains once, loads from the cache after

A recipe is a plain, JSON-able dict, so it can be printed, edited and hashed (the hash keys the
cache of trained runs):

* ``data``: a :func:`cifar.data.load_dataset` spec;
* ``model``: ``{"kind": "unet", "preset": ..., **UNet overrides}`` or
  ``{"kind": "transformer", "preset": ..., "vocab_size": V, "length": L, **overrides}``;
* ``train``: ``steps``, ``batch_size``, ``lr``, ``warmup``, ``weight_decay``, ``grad_clip``,
  ``ema_decay``, ``seed``, ``checkpoint_every``, ``augment``, ``compile`` (see :func:`cifar.trainer.train`);
* ``diffusion``: settings the lesson's loss and sampler read (the trainer ignores them, the cache key
  does not): the noise schedule, what the net predicts, the label-drop rate for guidance.

A *variant* overlays a few keys on a lesson's recipe (``get_recipe(lesson, mode, variant=...)``):
``01-hallucination`` has ``"grey"``, the paper's grey Simple Shapes (told apart by geometry alone,
one channel) instead of the RGB variant the lessons use today.

``quick`` recipes train a tiny net on Simple Shapes (generated, so no download) within a minute
on 2 CPU cores; ``full`` recipes are the GPU runs. The one the notebooks train (lesson 01's, variant
"grey", which lesson 02 reuses) is sized by ``scripts/gpu_budget.py`` to keep each notebook's full
mode within 2 minutes on one H100 and 15 minutes on Colab's T4; the other lessons' full recipes
(CIFAR-10 training, about 4 minutes on one H100 by ``python -m cifar.bench``) are for your own
experiments: their notebooks sample exact models instead.

The full recipe depends on the device (``get_recipe(lesson, "full", device=...)``): on CUDA it is
the GPU recipe above; on a machine without CUDA a lesson with an entry in :data:`CPU_FULL` gets
that CPU-sized run instead (at most an hour of a notebook on 2 CPU cores), and the others keep the
GPU recipe. ``recipe["run"]`` says which: "gpu-full", "cpu-full" or "quick" (:data:`RUN_LABELS`
words it for a notebook to print).

``01-hallucination``'s CPU run: the ``small`` U-Net (1.19M parameters with one channel; attention
at 8x8 only) for 1,800 steps of 64 images at lr 1e-3 on the 5,000 grey Simple Shapes. Measured on
this course's 2-core CPU (training steps, batch 64, grey 1x32x32): about 50 images/s on one thread
unloaded (the CPU time per image under load), so about 40 minutes. On a busy machine one thread is
much faster than two (two threads spin-wait on each other: a quarter of the speed at load 8); the
notebooks use one. Measured beside it: no attention 1.01x the speed, 40 channels 0.56x, two blocks
per level 0.66x, 24 channels 1.4x (0.67M parameters). Lesson 02 reads the same run as a VP-SDE
model (:mod:`cifar.shapes_ddpm`).
"""
from __future__ import annotations

import copy

from .transformer import make_transformer
from .unet import make_unet

LESSONS = ("01-hallucination", "02-fpe-gap", "03-momentum", "04-masked-fhs")
MODES = ("quick", "full")

_QUICK_TRAIN = dict(steps=200, batch_size=32, lr=2e-3, warmup=25, weight_decay=0.0, grad_clip=1.0,
                    ema_decay=0.99, seed=0, checkpoint_every=100, augment=None, compile=False)
_FULL_TRAIN = dict(steps=6000, batch_size=128, lr=2e-4, warmup=200, weight_decay=0.0, grad_clip=1.0,
                   ema_decay=0.9995, seed=0, checkpoint_every=1000, augment=None, compile=True)
_DDPM = dict(T=1000, schedule="linear", beta_start=1e-4, beta_end=0.02, prediction="eps")

RECIPES = {
    # Unconditional DDPM on Simple Shapes: count the samples outside the support. Lessons 01 and 02
    # both sample this run (cifar.shapes_ddpm); sized with scripts/gpu_budget.py for about 40 s of training
    # on an H100 and under 3 minutes on a T4: the small U-Net, eager (compiling would cost more than it
    # saves in 3,000 steps), 3.3x the images of the CPU run.
    "01-hallucination": {
        "quick": dict(data=dict(name="shapes", n=1000, seed=0), model=dict(kind="unet", preset="tiny"),
                      train=_QUICK_TRAIN, diffusion=_DDPM),
        "full": dict(data=dict(name="shapes", n=5000, seed=0), model=dict(kind="unet", preset="small"),
                     train={**_FULL_TRAIN, "steps": 3000, "lr": 1e-3, "warmup": 100, "ema_decay": 0.999,
                            "checkpoint_every": 500, "compile": False},
                     diffusion=_DDPM),
    },
    # A score model (VP SDE, eps-parameterised) whose ODE and SDE samplers are compared.
    "02-fpe-gap": {
        "quick": dict(data=dict(name="shapes", n=1000, seed=0), model=dict(kind="unet", preset="tiny"),
                      train=_QUICK_TRAIN, diffusion=dict(sde="vp", beta_min=0.1, beta_max=20.0, t_min=1e-3,
                                                         prediction="eps")),
        "full": dict(data=dict(name="cifar10", split="train"), model=dict(kind="unet", preset="default"),
                     train={**_FULL_TRAIN, "augment": "hflip"},
                     diffusion=dict(sde="vp", beta_min=0.1, beta_max=20.0, t_min=1e-3, prediction="eps")),
    },
    # A class-conditional net trained with label dropout, sampled with strong classifier-free guidance.
    "03-momentum": {
        "quick": dict(data=dict(name="shapes", n=1000, seed=0), model=dict(kind="unet", preset="tiny", num_classes=7),
                      train=_QUICK_TRAIN, diffusion={**_DDPM, "p_uncond": 0.1}),
        "full": dict(data=dict(name="cifar10", split="train"), model=dict(kind="unet", preset="default", num_classes=10),
                     train={**_FULL_TRAIN, "augment": "hflip"}, diffusion={**_DDPM, "p_uncond": 0.1}),
    },
    # A time-agnostic masked diffusion model over grey-level tokens.
    "04-masked-fhs": {
        "quick": dict(data=dict(name="shapes", n=1000, seed=0, tokens=dict(kind="grey", levels=256, size=16)),
                      model=dict(kind="transformer", preset="tiny", vocab_size=256, length=256),
                      train={**_QUICK_TRAIN, "lr": 1e-3}, diffusion=dict(schedule="linear", mask_id=256)),
        "full": dict(data=dict(name="cifar10", split="train", tokens=dict(kind="grey", levels=256, size=32)),
                     model=dict(kind="transformer", preset="default", vocab_size=256, length=1024),
                     train={**_FULL_TRAIN, "steps": 2500, "lr": 3e-4, "warmup": 250},
                     diffusion=dict(schedule="linear", mask_id=256)),
    },
}


# The full run on a machine without CUDA, as overlays on the lesson's full recipe: section -> keys to
# set. At most an hour of a notebook on 2 CPU cores (see the module docstring for the measurements).
CPU_FULL = {
    "01-hallucination": dict(
        model=dict(preset="small"),
        train=dict(steps=1800, batch_size=64, lr=1e-3, warmup=100, ema_decay=0.998, checkpoint_every=100,
                   compile=False),
    ),
}
RUN_LABELS = {"gpu-full": "GPU full run", "cpu-full": "CPU full run", "quick": "CI-sized quick run"}

# Overlays on a lesson's recipes (both modes): section -> keys to set.
VARIANTS = {
    "01-hallucination": {
        # The paper's Simple Shapes: grey, one channel, shapes told apart by geometry alone.
        "grey": dict(data=dict(style="grey"), model=dict(in_channels=1)),
    },
}


def get_recipe(lesson: str, mode: str, variant: str | None = None, *, device=None) -> dict:
    """A deep copy of the recipe for ``lesson`` in ``mode`` ("quick" | "full"), with ``lesson``, ``mode`` and ``run``.

    ``device`` (a ``torch.device`` or a string such as "cuda", "cpu"; default: CUDA when present,
    else the CPU) picks the full run: the GPU recipe on CUDA; on any other device the lesson's
    :data:`CPU_FULL` overlay where it has one. ``recipe["run"]`` is "gpu-full", "cpu-full" or
    "quick" (a lesson without a CPU recipe runs its GPU recipe anywhere: "gpu-full").
    ``variant`` (e.g. "grey" for 01-hallucination, see :data:`VARIANTS`) overlays its keys last and
    is recorded as ``recipe["variant"]``, so its runs are cached apart.
    """
    import torch

    if lesson not in RECIPES:
        raise ValueError(f"lesson must be one of {LESSONS}, got {lesson!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be None, a str or a torch.device, got {type(device).__name__}")
    try:
        device_type = torch.device(device).type
    except RuntimeError as error:
        raise ValueError(f"device must name a torch device (e.g. 'cpu', 'cuda'), got {device!r}") from error
    known = VARIANTS.get(lesson, {})
    if variant is not None and variant not in known:
        raise ValueError(f"variant must be None or one of {tuple(known)} for {lesson}, got {variant!r}")
    recipe = {"lesson": lesson, "mode": mode, **copy.deepcopy(RECIPES[lesson][mode])}
    overlays = []
    if mode == "quick":
        recipe["run"] = "quick"
    elif device_type != "cuda" and lesson in CPU_FULL:
        recipe["run"] = "cpu-full"
        overlays.append(CPU_FULL[lesson])
    else:
        recipe["run"] = "gpu-full"
    if variant is not None:
        overlays.append(known[variant])
        recipe["variant"] = variant
    for overlay in overlays:
        for section, keys in overlay.items():
            recipe[section] = {**recipe[section], **copy.deepcopy(keys)}
    return recipe


def check_recipe(recipe: dict) -> None:
    """Raise ValueError/TypeError when a recipe misses a section or its model and data disagree."""
    if not isinstance(recipe, dict):
        raise TypeError(f"recipe must be a dict, got {type(recipe).__name__}")
    for key in ("data", "model", "train"):
        if not isinstance(recipe.get(key), dict):
            raise ValueError(f"recipe[{key!r}] must be a dict")
    for key in ("steps", "batch_size"):
        if key not in recipe["train"]:
            raise ValueError(f"recipe['train'] must set {key!r}")
    model, tokens = recipe["model"], recipe["data"].get("tokens")
    if model.get("kind") == "unet" and tokens is None:
        from .data import num_channels

        channels = num_channels(recipe["data"])
        if model.get("in_channels", 3) != channels:
            raise ValueError(f"recipe['data'] gives images of {channels} channel(s), the unet reads "
                             f"in_channels={model.get('in_channels', 3)}")
    if model.get("kind") not in ("unet", "transformer"):
        raise ValueError(f"recipe['model']['kind'] must be 'unet' or 'transformer', got {model.get('kind')!r}")
    if (model["kind"] == "transformer") != (tokens is not None):
        raise ValueError("a transformer trains on tokens and a unet on images: set recipe['data']['tokens'] "
                         "exactly when recipe['model']['kind'] is 'transformer'")
    if tokens is not None:
        from .tokens import TokenView

        view = TokenView(**tokens)
        if (model.get("vocab_size"), model.get("length")) != (view.vocab_size, view.length):
            raise ValueError(f"the token view has vocab_size {view.vocab_size} and length {view.length}, the model "
                             f"{model.get('vocab_size')} and {model.get('length')}")


def build_model(spec: dict):
    """The untrained network a recipe's ``model`` section describes."""
    if not isinstance(spec, dict) or spec.get("kind") not in ("unet", "transformer"):
        raise ValueError(f"spec must be a dict with kind 'unet' or 'transformer', got {spec!r}")
    args = {k: v for k, v in spec.items() if k not in ("kind", "preset")}
    for key, value in args.items():
        if isinstance(value, list):
            args[key] = tuple(value)  # JSON has no tuples
    if spec["kind"] == "unet":
        return make_unet(spec.get("preset", "default"), **args)
    return make_transformer(spec.get("preset", "default"), **args)
