"""Every lesson notebook is in the course's shape: title, badge and Colab cell from pyproject, outputs."""
import pathlib
import shutil
import subprocess

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
def test_notebook_cells_are_short_and_each_shows_something(path):
    """No code cell over 30 lines, a median of at most 10, every code cell followed by output or prose."""
    assert notebooks.shape_problems(path) == []


def test_the_cell_shape_rule_catches_long_cells_high_medians_and_silent_cells(tmp_path):
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    shown = {"outputs": [nbformat.v4.new_output("stream", text="ok\n")]}
    setup = code("\n" * 50 + "x = 1", metadata={"tags": [notebooks.SETUP_TAG]})  # not counted
    good = [md("# T"), setup, code("a = 1\nb = 2"), md("prose"), code("\n".join(["c = 3"] * 30), **shown),
            code("d = 4", metadata={"tags": ["exercise"]}), code("e = 5", **shown)]
    path = tmp_path / "x.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=good), path)
    assert notebooks.shape_problems(path) == []
    long_cell = code("\n".join(["c = 3"] * 31), **shown)
    bad = [md("# T"), code("a = 1"), long_cell, *[code("\n".join(["z = 0"] * 11), **shown) for _ in range(3)]]
    nbformat.write(nbformat.v4.new_notebook(cells=bad), path)
    found = notebooks.shape_problems(path)
    assert any("cell 2 has 31 lines" in p for p in found)
    assert any("median code cell has 11 lines" in p for p in found)
    assert any("cell 1 has no output and no prose" in p for p in found)
    assert len(found) == 3


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
    assert f"git+{url}.git\"" in notebooks.setup_cell().source


# ------------------------------------------------------------------------------------------------
# The Colab install cell is pinned to the commit the outputs were executed at
# ------------------------------------------------------------------------------------------------
def _git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=repo,
                          check=True, capture_output=True, text=True, timeout=60).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A one-commit repository with this project's pyproject.toml, a package file and a tiny notebook."""
    shutil.copy(notebooks.ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "minimal").mkdir()
    (tmp_path / "minimal" / "__init__.py").write_text("")
    (tmp_path / "minimal" / "a.py").write_text("A = 1\n")
    # The kernel must import the checkout's package (here the temporary one), not the installed one.
    cell = nbformat.v4.new_code_cell("import minimal.a\nprint(6 * 7 * minimal.a.A)")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Tiny"), cell])
    (tmp_path / "lessons").mkdir()
    nbformat.write(nb, tmp_path / "lessons" / "tiny.ipynb")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "one")
    monkeypatch.setattr(notebooks, "ROOT", tmp_path)
    monkeypatch.setenv("DFM_MODE", "quick")  # run() sets these two; restored after the test
    monkeypatch.setenv("PYTHONPATH", ".")
    return tmp_path


def test_setup_cell_pins_only_full_commits():
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert f'.git@{sha}"' in notebooks.setup_cell(sha).source
    for bad in ("main", "0123abc", sha.upper()):
        with pytest.raises(ValueError, match="commit"):
            notebooks.setup_cell(bad)


def test_run_pins_the_install_cell_to_the_executed_commit_and_stamp_keeps_it(repo, capsys):
    """`run` pins the install to HEAD, executes the checkout's code, and `check` accepts the result."""
    path = repo / "lessons" / "tiny.ipynb"
    head = _git(repo, "rev-parse", "HEAD")
    notebooks.run(path, "quick", timeout=600)  # one trivial cell; 600 s: far above a loaded machine's kernel start
    nb = nbformat.read(path, as_version=4)
    assert notebooks.pinned_commit(nb) == head
    assert f'git+{notebooks.repository_url()}.git@{head}"' in nb.cells[2].source
    assert nb.cells[3].outputs[0].text == "42\n"
    assert "warning:" not in capsys.readouterr().err
    assert notebooks.problems(path) == []  # check accepts the pinned cell
    assert notebooks.stamp(path) is False  # stamping again keeps the pin: nothing to change
    assert notebooks.pinned_commit(nbformat.read(path, as_version=4)) == head


def test_run_on_uncommitted_package_code_pins_head_and_warns(repo, capsys):
    (repo / "minimal" / "a.py").write_text("A = 2\n")
    (repo / "minimal" / "new.py").write_text("B = 1\n")
    path = repo / "lessons" / "tiny.ipynb"
    notebooks.run(path, "quick", timeout=600)
    err = capsys.readouterr().err
    assert "warning: the package differs" in err and "minimal/a.py" in err and "minimal/new.py" in err
    assert notebooks.pinned_commit(nbformat.read(path, as_version=4)) == _git(repo, "rev-parse", "HEAD")


def test_without_git_the_install_is_unpinned_with_a_warning(repo, capsys, monkeypatch):
    monkeypatch.setattr(notebooks, "GIT", str(repo / "no-such-git"))
    assert notebooks.execution_commit() is None
    assert "warning: no git commit" in capsys.readouterr().err
    path = repo / "lessons" / "tiny.ipynb"
    notebooks.stamp(path)
    assert notebooks.pinned_commit(nbformat.read(path, as_version=4)) is None
    assert notebooks.problems(path) == ["committed without outputs (the site renders committed outputs)"]


def test_check_rejects_a_pin_that_is_not_a_commit_of_the_repository(repo):
    path = repo / "lessons" / "tiny.ipynb"
    notebooks.stamp(path, commit="0123456789abcdef0123456789abcdef01234567")
    assert any("not a commit of this repository" in p for p in notebooks.problems(path))
    nb = nbformat.read(path, as_version=4)
    nb.cells[2].source = nb.cells[2].source.replace("0123456789abcdef0123456789abcdef01234567", "main")
    nbformat.write(nb, path)
    assert any("not a 40-hex commit" in p for p in notebooks.problems(path))
