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
