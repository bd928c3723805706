"""Simple Shapes at 32x32: the hallucination lesson's dataset, and a counter that reads it back.

The dataset of Aithal et al. (2024), adapted from 64x64 grey to 32x32 RGB. The image is cut into
three vertical thirds (columns ``THIRDS``). Third j may hold one shape of type j only (left: a
triangle, middle: a square, right: a pentagon), present independently with probability 1/2; an
image with no shape is redrawn, so a non-empty image holds 1 shape with probability 3/7, 2 with
3/7 and 3 with 1/7. Shapes are filled, axis-aligned, of about 36 pixels each (the paper's ~60 px
at 64x64, scaled up a little so that 32x32 keeps them recognisable), placed uniformly inside their
third, each type in one fixed colour (``COLOURS``) on black.

    images, present = make_shapes(5000, seed=0)   # uint8 [N, 3, 32, 32], bool [N, 3]
    labels = class_ids(present)                   # int64 [N] in 0..6, for class-conditional nets
    counts = count_shapes(samples)                # counts.counts [N, 3, 3], counts.in_support [N]

A *hallucination* in the paper's sense is an image outside this support: two shapes in one third
(the interpolation between "shape at the top" and "shape at the bottom"), a shape in another
type's third, or no shape at all.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

SIZE = 32
SHAPE_TYPES = ("triangle", "square", "pentagon")
# Columns [start, stop) of the left, middle and right thirds.
THIRDS = ((0, 11), (11, 21), (21, 32))
# One saturated colour per type, far apart in RGB so a noisy pixel still finds its type.
COLOURS = np.array([[235, 60, 50], [60, 200, 70], [70, 110, 245]], dtype=np.uint8)
NUM_CLASSES = 7


def _polygon_mask(vertices: np.ndarray, size: int) -> np.ndarray:
    """Pixels of a ``size`` x ``size`` grid whose centres lie inside a convex polygon (vertices counter-clockwise, x right, y up)."""
    c = np.arange(size) + 0.5
    x, y = np.meshgrid(c, c[::-1])  # row 0 is the top, so y decreases down the rows
    inside = np.ones((size, size), dtype=bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0)):
        inside &= (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) >= -1e-9  # left of each edge
    rows, cols = np.nonzero(inside)
    return inside[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def _templates() -> tuple[np.ndarray, ...]:
    s = 9.0  # equilateral triangle, side 9, pointing up: 35 px
    triangle = _polygon_mask(np.array([[0.5, 1.0], [0.5 + s, 1.0], [0.5 + s / 2, 1.0 + s * 3 ** 0.5 / 2]]), 11)
    square = np.ones((6, 6), dtype=bool)  # side 6: 36 px
    angles = np.pi / 2 + 2 * np.pi * np.arange(5) / 5  # regular pentagon, radius 4, one vertex up: 37 px
    pentagon = _polygon_mask(np.stack([5.0 + 4.0 * np.cos(angles), 5.0 + 4.0 * np.sin(angles)], 1), 10)
    return triangle, square, pentagon


TEMPLATES = _templates()


def make_shapes(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` seeded Simple Shapes images.

    Returns ``images`` uint8 [n, 3, 32, 32] and ``present`` bool [n, 3] (present[i, j]: third j
    holds its shape). Same ``(n, seed)``, same images.
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    present = rng.random((n, 3)) < 0.5
    while (empty := ~present.any(1)).any():  # never an empty image: redraw those rows
        present[empty] = rng.random((int(empty.sum()), 3)) < 0.5
    images = np.zeros((n, SIZE, SIZE, 3), dtype=np.uint8)
    for j, (template, (lo, hi)) in enumerate(zip(TEMPLATES, THIRDS)):
        h, w = template.shape
        top = rng.integers(0, SIZE - h + 1, size=n)
        left = rng.integers(lo, hi - w + 1, size=n)
        dy, dx = np.nonzero(template)
        idx = np.nonzero(present[:, j])[0]
        images[idx[:, None], top[idx, None] + dy, left[idx, None] + dx] = COLOURS[j]
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(present)


def class_ids(present: torch.Tensor) -> torch.Tensor:
    """Class id in 0..6 of each presence pattern: ``triangle + 2*square + 4*pentagon - 1``. [n, 3] -> [n]."""
    present = torch.as_tensor(present)
    if present.ndim != 2 or present.shape[1] != 3:
        raise ValueError(f"present must have shape [n, 3], got {tuple(present.shape)}")
    ids = (present.long() * torch.tensor([1, 2, 4])).sum(1) - 1
    if (ids < 0).any():
        raise ValueError("present has an all-False row: an empty image has no class")
    return ids


def presence(ids: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`class_ids`: [n] int in 0..6 -> bool [n, 3]."""
    ids = torch.as_tensor(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must have shape [n], got {tuple(ids.shape)}")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise TypeError(f"ids must be integers in 0..{NUM_CLASSES - 1}, got dtype {ids.dtype}")
    if len(ids) and (ids.min() < 0 or ids.max() >= NUM_CLASSES):
        raise ValueError(f"ids must be integers in 0..{NUM_CLASSES - 1}")
    return ((ids[:, None] + 1) >> torch.arange(3)) & 1 == 1


@dataclass(frozen=True)
class ShapeCounts:
    """What :func:`count_shapes` read from each image.

    ``counts`` int64 [N, 3, 3]: counts[i, j, k] = blobs of type k whose centre lies in third j.
    ``in_support`` bool [N]: at most one blob per third, each of its own type, and at least one.
    ``present`` bool [N, 3]: third j holds exactly its own shape (meaningful when in support).
    """

    counts: np.ndarray
    in_support: np.ndarray
    present: np.ndarray

    @property
    def total(self) -> np.ndarray:
        """Blobs per image, [N]."""
        return self.counts.sum((1, 2))


def _as_uint8_hwc(images) -> np.ndarray:
    x = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must have shape [N, 3, H, W], got {tuple(x.shape)}")
    if x.dtype.is_floating_point:  # model space: [-1, 1]
        x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    elif x.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 in 0..255 or float in [-1, 1], got {x.dtype}")
    return x.cpu().permute(0, 2, 3, 1).numpy()


def count_shapes(images, *, threshold: int = 100, min_area: int = 8) -> ShapeCounts:
    """Count the blobs of each shape type in each third of each image.

    ``images``: uint8 [N, 3, 32, 32] in 0..255, or float in [-1, 1] (model space).

    A pixel is foreground when its brightest channel exceeds ``threshold``; it takes the type whose
    colour is nearest in RGB. Blobs are the 8-connected components of each type's foreground; a blob
    smaller than ``min_area`` pixels is speckle and is ignored; a blob belongs to the third holding its
    centre of mass.

    Exact on generated images (every shape is one blob of >= 35 px in its third). On perturbed or
    sampled images (checked in the tests): i.i.d. pixel noise of standard deviation up to ~25 grey
    levels (0.2 in model space) changes no count; a shape dimmed below ``threshold`` is not seen; a
    shape split in two by a dark line counts as two blobs, and two shapes of one type in one third
    as two, which is what makes such an image out of support.
    """
    x = _as_uint8_hwc(images)
    n, _, width, _ = x.shape
    image, row, col = np.nonzero(x.max(-1) > threshold)  # foreground pixels
    rgb = x[image, row, col].astype(np.int32)  # [P, 3]
    kind = ((rgb[:, None, :] - COLOURS.astype(np.int32)) ** 2).sum(-1).argmin(1)  # nearest colour, [P]
    counts = np.zeros((n, 3, 3), dtype=np.int64)
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # 8-connected within an image, never across images
    bounds = np.array([b[1] for b in THIRDS]) * width / SIZE
    for k in range(3):
        mine = kind == k
        mask = np.zeros(x.shape[:3], dtype=bool)
        mask[image[mine], row[mine], col[mine]] = True
        labels, m = ndimage.label(mask, structure=structure)
        if m == 0:
            continue
        blob = labels[image[mine], row[mine], col[mine]]  # blob id of each pixel of type k
        area = np.bincount(blob, minlength=m + 1)[1:]
        centre = np.bincount(blob, weights=col[mine], minlength=m + 1)[1:] / area  # mean column
        owner = np.zeros(m + 1, dtype=np.int64)
        owner[blob] = image[mine]
        keep = area >= min_area
        third = np.searchsorted(bounds, centre[keep] + 0.5, side="right").clip(0, 2)
        np.add.at(counts, (owner[1:][keep], third, k), 1)
    own = counts[:, [0, 1, 2], [0, 1, 2]]  # [N, 3]: shapes of third j's own type
    foreign = counts.sum(2) - own
    in_support = (own <= 1).all(1) & (foreign == 0).all(1) & (own.sum(1) >= 1)
    return ShapeCounts(counts=counts, in_support=in_support, present=own == 1)
