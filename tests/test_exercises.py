"""Exercise notebooks: the teacher version passes every check, the student version fails each cleanly.

The cells are executed in this process, in order, in one namespace (as a kernel would run them
top to bottom); the notebooks themselves also run on a real kernel in the notebook stage.
"""
import contextlib
import io

import nbformat
import pytest

from scripts import exercises

NOTEBOOKS = exercises.exercise_notebooks()
ids = lambda p: p.parent.name


def run_cells(nb):
    """Execute every code cell in order; -> [(cell, printed text, exception or None)]."""
    namespace, results = {"__name__": "__main__"}, []
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                exec(compile(cell.source, "<cell>", "exec"), namespace)
            results.append((cell, printed.getvalue(), None))
        except Exception as error:  # noqa: BLE001 - the test inspects which cells fail and how
            results.append((cell, printed.getvalue(), error))
    return results


@pytest.fixture
def in_lesson(monkeypatch):
    monkeypatch.setenv("DFM_MODE", "quick")
    return lambda path: monkeypatch.chdir(path.parent)


def test_every_lesson_has_exercises():
    lessons = sorted(p.name for p in (exercises.ROOT / "lessons").iterdir()
                     if p.is_dir() and p.name[:2] in {"01", "02", "03", "04"})
    assert [p.parent.name for p in NOTEBOOKS] == lessons


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_stubs_and_solutions_have_not_drifted(path):
    nb = nbformat.read(path, as_version=4)
    stubs = exercises.signatures(nb, exercises.STUB)
    assert 3 <= len(stubs) <= 5, f"{len(stubs)} exercises; a lesson has 3 to 5"
    assert exercises.drift(nb) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_teacher_version_passes_every_check(path, in_lesson):
    in_lesson(path)
    results = run_cells(exercises.teacher(nbformat.read(path, as_version=4)))
    failed = [(cell.source[:60], repr(error)[:300]) for cell, _, error in results if error]
    assert not failed, failed
    checks = [text for cell, text, _ in results if exercises.CHECK in exercises.tags(cell)]
    assert checks and all("✓" in text for text in checks), checks


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_student_version_fails_each_check_with_not_implemented(path, in_lesson):
    in_lesson(path)
    for cell, _, error in run_cells(exercises.student(nbformat.read(path, as_version=4))):
        if exercises.CHECK in exercises.tags(cell):
            assert isinstance(error, NotImplementedError), (cell.source[:80], repr(error))
        else:
            assert error is None, (cell.source[:80], repr(error)[:300])
