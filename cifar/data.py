"""One entry point for the datasets a recipe names, and the pixel <-> model-space conversions.

    images, labels = load_dataset({"name": "shapes", "n": 5000, "seed": 0})                   # RGB variant
    images, labels = load_dataset({"name": "shapes", "n": 5000, "seed": 0, "style": "grey"})  # the paper's
    images, labels = load_dataset({"name": "cifar10", "split": "train"})
    tokens, labels = load_dataset({"name": "shapes", "n": 5000, "tokens": {"kind": "grey", "levels": 256}})

Images stay uint8 [N, C, 32, 32] in memory (C = 3; 1 for grey Simple Shapes) (CIFAR-10 train is 150 MB); losses turn a batch into
model space, float in [-1, 1], with :func:`to_model_space`, and samples come back with
:func:`to_uint8`. Labels are int64 [N]: the CIFAR-10 class, or the Simple Shapes class id (0..6,
from the presence bits, see :func:`cifar.shapes.class_ids`).
"""
from __future__ import annotations

import torch

from .cifar10 import CLASSES as CIFAR10_CLASSES
from .cifar10 import load_cifar10
from .shapes import class_ids, make_shapes
from .tokens import TokenView

DATASETS = ("shapes", "cifar10")


def to_model_space(images: torch.Tensor) -> torch.Tensor:
    """uint8 [..] in 0..255 -> float32 [..] in [-1, 1]."""
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        raise TypeError(f"images must be a uint8 tensor, got {getattr(images, 'dtype', type(images).__name__)}")
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [..] in [-1, 1] (clipped) -> uint8 [..] in 0..255, on the CPU."""
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
        raise TypeError(f"x must be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def num_channels(spec: dict) -> int:
    """Channels of the images a spec names: 3, or 1 for grey Simple Shapes (unless ``channels`` says 3)."""
    if _name(spec) == "shapes" and spec.get("style", "rgb") == "grey":
        return spec.get("channels", 1)
    return 3


def num_classes(spec: dict) -> int:
    """Number of classes of the dataset a spec names (7 for shapes, 10 for CIFAR-10)."""
    return 7 if _name(spec) == "shapes" else len(CIFAR10_CLASSES)


def _name(spec):
    if not isinstance(spec, dict):
        raise TypeError(f"spec must be a dict like {{'name': 'shapes', 'n': 5000}}, got {type(spec).__name__}")
    if spec.get("name") not in DATASETS:
        raise ValueError(f"spec['name'] must be one of {DATASETS}, got {spec.get('name')!r}")
    return spec["name"]


def load_dataset(spec: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(inputs, labels)`` a recipe's ``data`` spec names.

    Keys: ``name`` ("shapes" | "cifar10"); shapes: ``n`` (default 5000), ``seed`` (default 0),
    ``style`` ("rgb", the default, or "grey": the paper's dataset, see :mod:`cifar.shapes`),
    ``channels`` (grey only: 1, the default, or 3);
    cifar10: ``split`` ("train" | "test"), ``classes`` (optional list of class indices to keep);
    both: ``limit`` (keep the first ``limit`` items), ``tokens`` (a dict of :class:`TokenView`
    arguments: inputs become int64 [N, L] instead of uint8 [N, 3, 32, 32]).
    """
    name = _name(spec)
    known = {"name", "n", "seed", "split", "classes", "limit", "tokens", "style", "channels"}
    if set(spec) - known:
        raise ValueError(f"spec has unknown keys {sorted(set(spec) - known)}; known: {sorted(known)}")
    if name == "shapes":
        images, present = make_shapes(spec.get("n", 5000), seed=spec.get("seed", 0), style=spec.get("style", "rgb"),
                                      channels=spec.get("channels"))
        labels = class_ids(present)
    else:
        if spec.get("style") is not None or spec.get("channels") is not None:
            raise ValueError("spec keys 'style' and 'channels' belong to the shapes dataset, not to cifar10")
        images, labels = load_cifar10(spec.get("split", "train"))
        if spec.get("classes") is not None:
            keep = torch.isin(labels, torch.as_tensor(spec["classes"]))
            images, labels = images[keep], labels[keep]
    if spec.get("limit") is not None:
        images, labels = images[: spec["limit"]], labels[: spec["limit"]]
    if spec.get("tokens") is not None:
        images = TokenView(**spec["tokens"]).encode(images.expand(-1, 3, -1, -1).contiguous())  # grey: its one plane
    return images, labels
