"""The notebook harness: one quick/full switch, the device, the seed and a versions line.

Every lesson notebook starts with::

    from course.notebook import setup
    nb = setup("toy")            # or setup("cifar")

which prints the mode, the device and the versions, seeds every generator, and returns a
:class:`Setup`. The mode is read in exactly one place, :func:`mode`, from the environment
variable ``DFM_MODE`` (``quick`` or ``full``):

* unset: ``full``, except a CIFAR notebook on a machine without CUDA, which defaults to
  ``quick`` (a full CIFAR run on a CPU would take hours);
* ``quick``: CPU-sized, what the test command runs (each notebook within 90 s on 2 cores);
* ``full``: the real run whose outputs the course site shows.

It lives in course/, the harness room: lessons import it, the laboratories never do.
"""
from __future__ import annotations

import os
import platform
import random
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

MODE_VARIABLE = "DFM_MODE"
KINDS = ("toy", "cifar")


def in_colab() -> bool:
    """True inside Google Colab (its kernel imports ``google.colab``; the runtime sets COLAB_RELEASE_TAG)."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def mode(kind: str = "toy") -> str:
    """The run mode, ``"quick"`` or ``"full"``, for a notebook of the given kind ("toy" or "cifar")."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    value = os.environ.get(MODE_VARIABLE, "").strip().lower()
    if value in ("quick", "full"):
        return value
    if value:
        raise ValueError(f"{MODE_VARIABLE} must be 'quick' or 'full', got {value!r}")
    if kind == "cifar" and not torch.cuda.is_available():
        return "quick"
    return "full"


def device() -> torch.device:
    """``cuda`` when a GPU is present, otherwise ``cpu``. Notebooks never require a GPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all devices)."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def versions() -> dict[str, str]:
    """Versions of Python and of the packages the course depends on."""
    import matplotlib
    import scipy

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "matplotlib": matplotlib.__version__,
        "cuda": torch.version.cuda or "none",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


@dataclass(frozen=True)
class Setup:
    """What a notebook needs to know about its run."""

    kind: str
    mode: str
    device: torch.device
    seed: int

    @property
    def quick(self) -> bool:
        return self.mode == "quick"

    def pick(self, quick: Any, full: Any) -> Any:
        """``quick`` in quick mode, ``full`` in full mode: ``steps = nb.pick(300, 5000)``."""
        return quick if self.quick else full

    def generator(self, offset: int = 0, device: str | torch.device = "cpu") -> torch.Generator:
        """A fresh ``torch.Generator`` seeded with ``seed + offset`` (one per experiment keeps cells independent)."""
        return torch.Generator(device=device).manual_seed(self.seed + offset)


def setup(kind: str = "toy", seed: int = 0, *, quiet: bool = False) -> Setup:
    """Read the mode, pick the device, seed everything and print one status line plus the versions."""
    run_mode = mode(kind)
    seed_everything(seed)
    nb = Setup(kind=kind, mode=run_mode, device=device(), seed=seed)
    if not quiet:
        source = os.environ.get(MODE_VARIABLE) and f"{MODE_VARIABLE}={os.environ[MODE_VARIABLE]}" or "default"
        print(f"mode: {run_mode} ({source}) | device: {nb.device} | seed: {seed}")
        print(" | ".join(f"{k} {v}" for k, v in versions().items()))
    return nb


def markdown_table(rows: list[list[Any]], headers: list[str]) -> str:
    """A Markdown table; floats are written with 4 significant digits."""
    if any(len(r) != len(headers) for r in rows):
        raise ValueError(f"every row must have {len(headers)} cells (one per header)")
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def show_table(rows: list[list[Any]], headers: list[str]) -> None:
    """Display a Markdown table in the notebook.

    Tag the cell ``results`` for the closing paper-vs-course table: the site's results page is
    built from those cells' outputs.
    """
    from IPython.display import Markdown, display

    table = markdown_table(rows, headers)
    display(Markdown(table))
