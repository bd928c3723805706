"""Rules of the house that a machine can check: minimal/ stands alone, arrows point one way."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
STDLIB_AND_ALLOWED = {"torch", "numpy", "__future__"}


def imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield "." * node.level + (node.module or "")


MINIMAL = sorted(p for p in (ROOT / "minimal").glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", MINIMAL, ids=lambda p: p.name)
def test_minimal_files_import_only_torch_numpy_and_the_standard_library(path):
    import sys

    allowed = STDLIB_AND_ALLOWED | set(sys.stdlib_module_names)
    bad = [name for name in imports(path) if name.startswith(".") or name.split(".")[0] not in allowed]
    assert not bad, f"{path.name} imports {bad}; a minimal/ file must stand alone"


FORBIDDEN = {"toy2d": {"cifar", "kernels", "course", "lessons"}, "cifar": {"toy2d", "kernels", "course", "lessons"},
             "kernels": {"toy2d", "cifar", "course", "lessons"}, "course": {"lessons"}}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_arrows_point_one_way(package):
    for path in (ROOT / package).rglob("*.py"):
        bad = [n for n in imports(path) if n.split(".")[0] in FORBIDDEN[package]]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}, against the arrows in the design"


def test_the_harness_lives_in_course_only():
    """The notebook harness moved from toy2d/ to course/: no file, notebook or page names the old home."""
    old = ("toy2d.notebook", "toy2d.exercises", "toy2d/notebook.py", "toy2d/exercises.py",
           "from toy2d import notebook", "from toy2d import exercises")
    assert not (ROOT / "toy2d" / "notebook.py").exists() and not (ROOT / "toy2d" / "exercises.py").exists()
    paths = [p for pattern in ("*.py", "*.ipynb", "*.md", "*.toml", "*.yml", "*.html", "Makefile")
             for p in ROOT.rglob(pattern)
             if not {".venv", ".git", "site", "build", ".ipynb_checkpoints"} & set(p.relative_to(ROOT).parts)
             and ".egg-info" not in str(p) and p != pathlib.Path(__file__)]
    bad = [str(p.relative_to(ROOT)) for p in paths if any(s in p.read_text(errors="replace") for s in old)]
    assert not bad, f"these still name toy2d's old harness: {bad}"
