"""Make the student and the teacher versions of every exercise notebook from one source.

    python scripts/exercises.py [--out dist/exercises]

The source, lessons/NN-slug/exercises.ipynb, holds each exercise three times: a stub cell tagged
``exercise`` (the signature, a docstring, ``raise NotImplementedError``), a cell tagged
``solution`` (the same signature, solved), and a check cell tagged ``check`` that compares the
function with the reference in minimal/. The student version drops the solutions and all outputs;
the teacher version drops the stubs and keeps the outputs. Both land in OUT/{student,teacher}/.
"""
from __future__ import annotations

import argparse
import ast
import copy
import pathlib
import sys

import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]
STUB, SOLUTION, CHECK = "exercise", "solution", "check"


def tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def exercise_notebooks() -> list[pathlib.Path]:
    return sorted((ROOT / "lessons").glob("*/exercises.ipynb"))


def signatures(nb, tag: str) -> dict[str, str]:
    """Function name -> its signature, for the functions defined in cells with ``tag``."""
    found = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and tag in tags(cell):
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.FunctionDef):
                    found[node.name] = ast.unparse(node.args)
    return found


def drift(nb) -> list[str]:
    """Where stubs and solutions disagree (names or signatures); an empty list when they match."""
    stubs, solutions = signatures(nb, STUB), signatures(nb, SOLUTION)
    problems = [f"stub {n} has no solution" for n in stubs.keys() - solutions.keys()]
    problems += [f"solution {n} has no stub" for n in solutions.keys() - stubs.keys()]
    problems += [f"{n}: stub ({stubs[n]}) and solution ({solutions[n]}) signatures differ"
                 for n in stubs.keys() & solutions.keys() if stubs[n] != solutions[n]]
    return problems


def student(nb):
    """Solutions removed, outputs cleared."""
    out = copy.deepcopy(nb)
    out.cells = [c for c in out.cells if SOLUTION not in tags(c)]
    for cell in out.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return out


def teacher(nb):
    """Stubs removed, solutions and outputs kept."""
    out = copy.deepcopy(nb)
    out.cells = [c for c in out.cells if STUB not in tags(c)]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "dist" / "exercises"))
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    status = 0
    for path in exercise_notebooks():
        nb = nbformat.read(path, as_version=4)
        for problem in drift(nb):
            print(f"{path}: {problem}")
            status = 1
        lesson = path.parent.name
        for version, make in (("student", student), ("teacher", teacher)):
            target = out / version / f"{lesson}-exercises.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(make(nb), target)
            print(f"wrote {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}")
    return status


if __name__ == "__main__":
    sys.exit(main())
