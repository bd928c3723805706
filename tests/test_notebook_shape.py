"""Every lesson notebook is in the course's shape: title, badge and Colab cell from pyproject, outputs."""
import pathlib

import nbformat
import pytest

from scripts import notebooks

NOTEBOOKS = sorted(p for p in (notebooks.ROOT / "lessons").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(notebooks.ROOT)))
def test_notebook_shape(path):
    assert notebooks.problems(path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(notebooks.ROOT)))
def test_notebook_starts_the_harness(path):
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    first = cells[1].source  # cells[0] is the Colab set-up cell
    assert "setup(" in first and "NBVAL_IGNORE_OUTPUT" in first, "the harness cell comes right after set-up"


def test_colab_links_derive_from_pyproject():
    url = notebooks.repository_url()
    assert url.startswith("https://github.com/")
    nb = notebooks.ROOT / "lessons" / "00-setup" / "toy2d.ipynb"
    assert notebooks.colab_url(nb).endswith("/blob/main/lessons/00-setup/toy2d.ipynb")
    assert url.split("github.com/")[1] in notebooks.colab_url(nb)
    assert f"git+{url}.git" in notebooks.setup_cell().source
