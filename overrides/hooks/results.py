"""Generate the course's results page from the notebooks' own committed outputs.

Every lesson notebook ends with a paper-vs-course table in a code cell tagged ``results``
(its output is a Markdown table, made by ``course.notebook.show_table``). At build time this hook
collects those outputs, in course order, into ``results.md``: the numbers on that page are the
ones the notebooks printed, never retyped. A lesson notebook without a results cell fails the build.
"""
import json
import logging
import pathlib

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.results")
TAG = "results"
INTRO = """# Results

Every lesson's table of the paper's numbers beside this course's, collected when the site is built
from the outputs committed with each notebook (the notebooks assert their headline claims, so a table
appears here only if its run reproduced them). Each heading links to the notebook that made it.
"""


def _title(cells):
    for cell in cells:
        if cell["cell_type"] == "markdown":
            first = "".join(cell["source"]).strip().splitlines()[0]
            return first.lstrip("# ").strip()
    return "notebook"


def _mode(cells):
    """The mode line the harness printed ('mode: full (...)'), if any."""
    for cell in cells:
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", ""))
            for line in text.splitlines():
                if line.startswith("mode: "):
                    return line.split("|")[0].replace("mode: ", "").strip()
    return "unknown"


def _tables(cells):
    for cell in cells:
        if cell["cell_type"] != "code" or TAG not in cell.get("metadata", {}).get("tags", []):
            continue
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "text/markdown" in data:
                yield "".join(data["text/markdown"])


def results_markdown(docs_dir: pathlib.Path) -> str:
    parts = [INTRO]
    for lesson in sorted(p for p in docs_dir.iterdir() if p.is_dir() and p.name[:2].isdigit() and p.name[:2] != "00"):
        for name in ("toy2d.ipynb", "cifar.ipynb"):
            path = lesson / name
            if not path.exists():
                continue
            cells = json.loads(path.read_text())["cells"]
            tables = list(_tables(cells))
            if not tables:
                log.warning("%s has no cell tagged '%s' with a Markdown table output", path.relative_to(docs_dir), TAG)
                continue
            parts.append(f"## [{_title(cells)}]({lesson.name}/{name})\n\n*Outputs from {_mode(cells)} mode.*\n")
            parts.extend(t.strip() + "\n" for t in tables)
    return "\n".join(parts)


def on_files(files, config):
    docs_dir = pathlib.Path(config["docs_dir"])
    files.append(File.generated(config, "results.md", content=results_markdown(docs_dir)))
    return files
