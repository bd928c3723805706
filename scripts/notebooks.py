"""Keep the lesson notebooks in the course's shape, and run them.

    python scripts/notebooks.py stamp [NOTEBOOK ...]       # refresh the badge and Colab set-up cells
    python scripts/notebooks.py check [NOTEBOOK ...]       # fail if a notebook is out of shape
    python scripts/notebooks.py run NOTEBOOK --mode full   # execute in place and keep the outputs

The repository address is read from pyproject.toml's [project.urls] (its only home); the
Colab badge and the install cell are generated from it, so they can never point elsewhere.
Without NOTEBOOK arguments, every lessons/**/*.ipynb is processed.

The install cell is pinned: `run` writes `git+<repository>.git@<commit>` with the commit the
notebook was executed at (HEAD), so Colab installs the code that produced the committed outputs,
not the moving main branch. `stamp` keeps whatever pin a notebook already has.
- Package sources (pyproject's packages, pyproject.toml) differing from HEAD at run time mean the
  outputs come from uncommitted code: `run` still pins HEAD (the nearest commit; refusing would
  block everyone who shares a checkout) and prints a warning naming the files: commit them and
  re-run before committing the notebook.
- Without git, or outside a repository, nothing can be pinned: `run` writes the unpinned install
  (main) and warns.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import re
import statistics
import subprocess
import sys
import time
import tomllib

import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]
BADGE_TAG = "colab-badge"
SETUP_TAG = "colab-setup"
# Both cells are hidden on the site (which has its own Colab button) by this one tag: mkdocs-jupyter
# 0.26 passes only the first entry of remove_cell_tags on to nbconvert.
HIDDEN_TAG = "hide-on-site"
GIT = "git"
# The install target in the set-up cell: `git+<repository>.git`, optionally pinned `@<40-hex sha>`.
_INSTALL = re.compile(r'"git\+(?P<url>[^"@]+)\.git(?:@(?P<commit>[^"]*))?"')
_SHA = re.compile(r"[0-9a-f]{40}")


def repository_url() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["urls"]["Repository"].rstrip("/")


def colab_url(notebook: pathlib.Path, branch: str = "main") -> str:
    """Colab's address for the repository's copy of ``notebook``."""
    rel = notebook.resolve().relative_to(ROOT).as_posix()
    return repository_url().replace("https://github.com/", "https://colab.research.google.com/github/") + f"/blob/{branch}/{rel}"


def badge_cell(notebook: pathlib.Path) -> nbformat.NotebookNode:
    src = (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(notebook)})")
    return nbformat.v4.new_markdown_cell(src, metadata={"tags": [BADGE_TAG, HIDDEN_TAG]})


def setup_cell(commit: str | None = None) -> nbformat.NotebookNode:
    """The Colab install cell; ``commit`` (40 hex digits) pins the install to that commit."""
    if commit is not None and not _SHA.fullmatch(commit):
        raise ValueError(f"commit must be 40 lower-case hex digits, got {commit!r}")
    target = f"git+{repository_url()}.git" + (f"@{commit}" if commit else "")
    src = (
        "# Colab only: install this course's package (non-editable, so no runtime restart is needed).\n"
        "import subprocess, sys\n"
        "if \"google.colab\" in sys.modules:\n"
        f"    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", \"{target}\"], check=True)"
    )
    return nbformat.v4.new_code_cell(src, metadata={"tags": [SETUP_TAG, HIDDEN_TAG]})


def pinned_commit(nb: nbformat.NotebookNode) -> str | None:
    """The commit the notebook's install cell is pinned to (None when unpinned or missing)."""
    for i in _tagged(nb, SETUP_TAG):
        found = _INSTALL.search(nb.cells[i].source)
        if found:
            return found["commit"]
    return None


def _git(*args: str) -> str:
    # 60 s: these git calls take milliseconds unloaded; the limit only stops a hung git.
    return subprocess.run([GIT, *args], cwd=ROOT, check=True, capture_output=True, text=True, timeout=60).stdout


def _package_paths() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return [*tomllib.load(f)["tool"]["setuptools"]["packages"], "pyproject.toml"]


def execution_commit() -> str | None:
    """The commit to pin a notebook executed now to: HEAD, with a warning when the package is dirty.

    Returns None (unpinned) with a warning when git or the repository is missing.
    """
    try:
        commit = _git("rev-parse", "--verify", "HEAD").strip()
        dirty = _git("status", "--porcelain", "--", *_package_paths()).splitlines()
    except (OSError, subprocess.SubprocessError) as err:
        print(f"warning: no git commit to pin the install cell to ({err}); it installs the main branch",
              file=sys.stderr)
        return None
    if dirty:
        print(f"warning: the package differs from the pinned commit {commit[:12]} (uncommitted: "
              + ", ".join(line[3:] for line in dirty)
              + "); commit these files and run again before committing the notebook", file=sys.stderr)
    return commit


def _tagged(nb, tag):
    return [i for i, c in enumerate(nb.cells) if tag in c.get("metadata", {}).get("tags", [])]


_KEEP = object()


def stamp(path: pathlib.Path, commit=_KEEP) -> bool:
    """Put the badge (after the title cell) and the set-up cell (after the badge) in place. True if changed.

    The set-up cell keeps the notebook's current pin unless ``commit`` (a sha, or None) is given.
    """
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    _stamp(nb, path, commit)
    after = nbformat.writes(nb)
    if after != before:
        nbformat.write(nb, path)
    return after != before


def _stamp(nb: nbformat.NotebookNode, path: pathlib.Path, commit=_KEEP) -> None:
    if commit is _KEEP:
        commit = pinned_commit(nb)
    new = {BADGE_TAG: badge_cell(path), SETUP_TAG: setup_cell(commit)}
    for tag in (BADGE_TAG, SETUP_TAG):
        for i in reversed(_tagged(nb, tag)):
            old = nb.cells[i]
            if (old.source, old.metadata.get("tags")) == (new[tag].source, new[tag].metadata["tags"]):
                new[tag] = old  # keep an up-to-date cell as it is (id, outputs): restamping changes nothing
            del nb.cells[i]
    if not nb.cells or nb.cells[0].cell_type != "markdown" or not nb.cells[0].source.lstrip().startswith("# "):
        raise SystemExit(f"{path}: the first cell must be a markdown cell starting with '# Title'")
    nb.cells[1:1] = [new[BADGE_TAG], new[SETUP_TAG]]
    nb.metadata.pop("widgets", None)  # Colab-saved widget state makes GitHub show "Invalid Notebook"
    nb.metadata.pop("jupytext", None)  # drafts may come from jupytext; the .ipynb is the source
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}


def problems(path: pathlib.Path) -> list[str]:
    """What is out of shape in one notebook (an empty list when it is fine)."""
    nb = nbformat.read(path, as_version=4)
    out = []
    badge, setup = _tagged(nb, BADGE_TAG), _tagged(nb, SETUP_TAG)
    if badge != [1] or nb.cells[1].source != badge_cell(path).source:
        out.append("the Colab badge cell is missing or stale (run: python scripts/notebooks.py stamp)")
    commit = pinned_commit(nb)
    if commit is not None and not _SHA.fullmatch(commit):
        out.append(f"the colab-setup cell pins {commit!r}, not a 40-hex commit (run: python scripts/notebooks.py run)")
    elif setup != [2] or nb.cells[2].source != setup_cell(commit).source:
        out.append("the colab-setup cell is missing or stale (run: python scripts/notebooks.py stamp)")
    elif commit is not None and not _commit_exists(commit):
        out.append(f"the colab-setup cell pins {commit[:12]}, which is not a commit of this repository")
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not any(c.get("outputs") for c in code):
        out.append("committed without outputs (the site renders committed outputs)")
    if any(o.get("output_type") == "error" for c in code for o in c.get("outputs", [])):
        out.append("a committed output is an error")
    return out


# The cell shape of a lesson notebook (CONTRIBUTING.md, "A notebook"): short cells, each showing something.
MAX_CELL_LINES = 30
MAX_MEDIAN_LINES = 10
# An exercise's stub and solution cells are shown by the check cell that follows them.
SHOWN_BY_NEXT = {"exercise", "solution"}


def shape_problems(path: pathlib.Path) -> list[str]:
    """Where a notebook's code cells break the cell shape (an empty list when they keep it).

    Counted: every code cell but the generated Colab set-up cell; a cell's length is its number of
    lines, blank lines inside it included. No cell over MAX_CELL_LINES, a median of at most
    MAX_MEDIAN_LINES, and every code cell followed by an output or by a markdown cell (prose).
    Cells are named by their index in the notebook, counted from 0.
    """
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells
    code = [i for i, c in enumerate(cells) if c.cell_type == "code" and SETUP_TAG not in c.metadata.get("tags", [])]
    lines = {i: len(cells[i].source.strip().splitlines()) for i in code}
    out = [f"code cell {i} has {n} lines (at most {MAX_CELL_LINES}: move a long helper into a lab or minimal/)"
           for i, n in lines.items() if n > MAX_CELL_LINES]
    if lines and statistics.median(lines.values()) > MAX_MEDIAN_LINES:
        out.append(f"the median code cell has {statistics.median(lines.values()):g} lines (at most {MAX_MEDIAN_LINES})")
    for i in code:
        shown = cells[i].get("outputs") or SHOWN_BY_NEXT & set(cells[i].metadata.get("tags", []))
        if not shown and not (i + 1 < len(cells) and cells[i + 1].cell_type == "markdown"):
            out.append(f"code cell {i} has no output and no prose after it")
    return out


def _commit_exists(commit: str) -> bool:
    """False only when git can tell that ``commit`` is not in this repository (a shallow clone can't)."""
    try:
        if _git("rev-parse", "--is-shallow-repository").strip() != "false":
            return True
    except (OSError, subprocess.SubprocessError):
        return True  # no git or no repository here: nothing to check against
    try:
        _git("cat-file", "-e", f"{commit}^{{commit}}")
    except subprocess.CalledProcessError:
        return False
    return True


def run(path: pathlib.Path, run_mode: str, timeout: int | None = None) -> float:
    """Execute ``path`` in place on a fresh kernel with DFM_MODE=run_mode; returns seconds.

    The notebook is written (stamped, its install cell pinned to the commit executed) only when
    every cell ran.
    """
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    _stamp(nb, path, execution_commit())
    os.environ["DFM_MODE"] = run_mode
    # The kernel imports this checkout's packages (what the pin refers to), whatever is installed;
    # the kernel's working folder is the notebook's, so a relative PYTHONPATH would not reach here.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    nbformat.write(nb, path)
    return seconds


def _targets(paths):
    return [pathlib.Path(p) for p in paths] or sorted(p for p in (ROOT / "lessons").rglob("*.ipynb")
                                                     if ".ipynb_checkpoints" not in p.parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("stamp", "check"):
        p = sub.add_parser(name)
        p.add_argument("notebooks", nargs="*")
    p = sub.add_parser("run")
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--mode", choices=("quick", "full"), required=True)
    # No limit by default: an author watches this run, and a CIFAR notebook's no-GPU run may take up
    # to an hour, so any fixed limit would either end hours of work or be no limit at all.
    p.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: no limit)")
    args = parser.parse_args(argv)
    if args.command == "stamp":
        for path in _targets(args.notebooks):
            print(("stamped   " if stamp(path) else "unchanged ") + str(path))
    elif args.command == "check":
        bad = {str(p): problems(p) + shape_problems(p) for p in _targets(args.notebooks)}
        for path, found in bad.items():
            for problem in found:
                print(f"{path}: {problem}")
        return 1 if any(bad.values()) else 0
    else:
        for path in args.notebooks:
            path = pathlib.Path(path)
            print(f"{path}: {run(path, args.mode, args.timeout):.1f} s in {args.mode} mode")
    return 0


if __name__ == "__main__":
    sys.exit(main())
