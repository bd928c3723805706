"""The course website builds strictly, works offline, and checks the links inside notebooks."""
import os
import pathlib
import re
import subprocess
import sys

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def mkdocs_build(config, site_dir):
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site_dir)],
                          capture_output=True, text=True, env=ENV, cwd=config.parent)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    result = mkdocs_build(ROOT / "mkdocs.yml", out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_every_notebook_page_has_colab_and_download_buttons_and_hides_the_setup_cell(site):
    from scripts import notebooks

    for nb_path in sorted((ROOT / "lessons").rglob("*.ipynb")):
        rel = nb_path.relative_to(ROOT / "lessons").with_suffix("")
        html = (site / rel / "index.html").read_text()
        assert f'href="{notebooks.colab_url(nb_path)}"' in html, f"{rel}: Colab button"
        assert f'{nb_path.name}" title="Download notebook"' in html, f"{rel}: download button"
        assert "google.colab" not in html, f"{rel}: the Colab set-up cell must be hidden on the site"
        assert (site / rel / nb_path.name).exists(), f"{rel}: the downloadable copy"


def test_site_loads_nothing_from_other_hosts(site):
    # Links to papers are fine; scripts, styles, fonts and images must come from the site itself.
    external = re.compile(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="(?:https?:)?//[^"]*"', re.I)
    for page in site.rglob("*.html"):
        found = [tag for tag in external.findall(page.read_text()) if 'rel="canonical"' not in tag]
        assert not found, f"{page.relative_to(site)} loads an external asset"
    assert (site / "javascripts/vendor/mathjax/tex-mml-chtml.js").exists()
    assert list((site / "javascripts/vendor/mathjax/output/chtml/fonts/woff-v2").glob("*.woff"))


def _tiny_course(tmp_path, link):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n")
    (docs / "other.md").write_text("# Other\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# A notebook\n\nSee [there]({link}).")])
    nbformat.write(nb, docs / "lesson.ipynb")
    hooks = ROOT / "overrides" / "hooks"
    config = tmp_path / "mkdocs.yml"
    config.write_text(
        "site_name: tiny\nsite_url: http://127.0.0.1/\ndocs_dir: docs\n"
        f"hooks: ['{hooks / 'notebook_links.py'}']\n"
        "plugins: [{mkdocs-jupyter: {include: ['*.ipynb']}}]\n"
    )
    return config


def test_notebook_links_are_rewritten_for_the_site(tmp_path):
    config = _tiny_course(tmp_path, "other.md#top")
    result = mkdocs_build(config, tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'href="../other/#top"' in (tmp_path / "out" / "lesson" / "index.html").read_text()


def test_a_missing_link_target_in_a_notebook_fails_the_build(tmp_path):
    config = _tiny_course(tmp_path, "missing.ipynb")
    result = mkdocs_build(config, tmp_path / "out")
    assert result.returncode != 0
    assert "missing.ipynb" in result.stdout + result.stderr


# ------------------------------------------------------------------------------------------------
# One template for the lesson pages (CONTRIBUTING.md, "The page: one template")
# ------------------------------------------------------------------------------------------------
TEMPLATE = ["The idea in plain words", "The math", "What to look at", "Paper vs this course",
            "Where this course differs from the official code, and why", "Exercises"]
NOTEBOOK_SUBSECTIONS = ["The 1D/2D notebook", "The 32x32 notebook"]
LESSON_PAGES = sorted((ROOT / "lessons").glob("0[1-5]*/index.md"))


def headings(markdown: str) -> list[tuple[int, str]]:
    """(level, text) of every ATX heading outside fenced code blocks."""
    found, fence = [], None
    for line in markdown.splitlines():
        marker = re.match(r"\s*(```+|~~~+)", line)
        if marker:
            fence = None if fence and marker.group(1).startswith(fence) else (fence or marker.group(1))
            continue
        heading = re.match(r"(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if heading and fence is None:
            found.append((len(heading.group(1)), heading.group(2)))
    return found


def test_the_heading_reader_skips_code_and_reads_levels():
    assert headings("# T\n```python\n# a comment\n## not a heading\n```\n## A ##\n### B") == [
        (1, "T"), (2, "A"), (3, "B")]


def test_there_are_five_lesson_pages():
    assert [p.parent.name[:2] for p in LESSON_PAGES] == ["01", "02", "03", "04", "05"]


@pytest.mark.parametrize("page", LESSON_PAGES, ids=lambda p: p.parent.name)
def test_lesson_page_follows_the_template(page):
    found = headings(page.read_text())
    number = page.parent.name[:2]
    assert found and found[0][0] == 1 and re.fullmatch(rf"Lesson {number} · \S.*", found[0][1]), \
        f"title {found[:1]}: expected '# Lesson {number} · Title'"
    assert [text for level, text in found if level == 2] == TEMPLATE
    look = found.index((2, "What to look at"))
    end = next(i for i in range(look + 1, len(found)) if found[i][0] <= 2)
    subsections = [text for level, text in found[look + 1:end] if level == 3]
    if number == "05":  # no notebooks of its own: the kernel's table and the roofline instead
        assert subsections, "'What to look at' needs ### subsections (the kernel's table, the roofline)"
    else:
        assert subsections == NOTEBOOK_SUBSECTIONS


@pytest.mark.parametrize("doc", ["README.md", "CONTRIBUTING.md"])
def test_relative_links_in_the_repository_documents_point_at_files_that_exist(doc):
    """Where the repository is browsed (GitHub, a clone) a link to a page made only by the site build is dead."""
    text = re.sub(r"```.*?```", "", (ROOT / doc).read_text(), flags=re.S)
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text)
               if not re.match(r"[a-z]+:|#", t)]
    missing = [t for t in targets if t and not (ROOT / t).exists()]
    assert not missing, f"{doc} links to {missing}, which are not files of the repository"
