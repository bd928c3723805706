"""Exercise notebooks: the teacher version passes every check, the student version fails each cleanly."""
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

from scripts import exercises

NOTEBOOKS = exercises.exercise_notebooks()
ids = lambda p: p.parent.name


def execute(nb, folder: pathlib.Path):
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(folder)}}).execute()
    return nb


def errors(cell):
    return [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]


def test_every_lesson_has_exercises():
    lessons = sorted(p.name for p in (exercises.ROOT / "lessons").iterdir() if p.is_dir() and p.name[:2] in {"01", "02", "03", "04"})
    assert [p.parent.name for p in NOTEBOOKS] == lessons


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_stubs_and_solutions_have_not_drifted(path):
    nb = nbformat.read(path, as_version=4)
    stubs = exercises.signatures(nb, exercises.STUB)
    assert 3 <= len(stubs) <= 5, f"{len(stubs)} exercises; a lesson has 3 to 5"
    assert exercises.drift(nb) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_teacher_version_passes_every_check(path, monkeypatch):
    monkeypatch.setenv("DFM_MODE", "quick")
    nb = execute(exercises.teacher(nbformat.read(path, as_version=4)), path.parent)
    failed = [(c.source[:60], errors(c)[0]["evalue"][:200]) for c in nb.cells if c.cell_type == "code" and errors(c)]
    assert not failed, failed
    checks = [c for c in nb.cells if exercises.CHECK in exercises.tags(c)]
    assert checks and all("✓" in "".join(o.get("text", "") for o in c.outputs) for c in checks)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_student_version_fails_each_check_with_not_implemented(path, monkeypatch):
    monkeypatch.setenv("DFM_MODE", "quick")
    nb = execute(exercises.student(nbformat.read(path, as_version=4)), path.parent)
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        found = errors(cell)
        if exercises.CHECK in exercises.tags(cell):
            assert [e["ename"] for e in found] == ["NotImplementedError"], (cell.source[:80], found)
        else:
            assert not found, (cell.source[:80], found[0]["evalue"][:200])
