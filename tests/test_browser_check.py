"""The browser check finds what it claims to find: raw TeX, broken images and links, off-site requests,
and a notebook page's layout faults at desktop and phone widths."""
import pathlib

import pytest

from scripts import browser_check

pytestmark = pytest.mark.skipif(not pathlib.Path(browser_check.CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (the test command installs it)")

GOOD = """<html><body><article><p>Plain text, no math.</p><a href="../other/">other</a></article></body></html>"""
BAD = """<html><body><article>
<p>Raw math left: $x_t = a x_0$.</p>
<img src="missing.png">
<a href="nowhere/">broken</a>
<img src="https://example.com/remote.png">
<mjx-container><mjx-assistive-mml><mjx-container></mjx-container></mjx-assistive-mml></mjx-container>
</article></body></html>"""


def test_check_flags_raw_tex_broken_images_links_and_offsite_requests(tmp_path):
    for name, html in {"other": "<html><body>other</body></html>", "good": GOOD, "bad": BAD}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "index.html").write_text(html)
    found = browser_check.check_site(tmp_path, shots=tmp_path / "shots", echo=False)
    assert found["good/"] == [] and found["other/"] == []
    bad = "\n".join(found["bad/"])
    for problem in ("raw TeX left in text", "image did not load", "broken link (404)",
                    "request left localhost: https://example.com/remote.png", "1 formulas typeset twice"):
        assert problem in bad, bad
    assert (tmp_path / "shots" / "bad.png").exists() and (tmp_path / "shots" / "bad@390.png").exists()


LINE = "x = " + " + ".join(["value"] * 14)  # 113 characters: must show whole at 1280 px
GOOD_NOTEBOOK = f"""<html><body><article>
<div class="dfm-nb-actions"><a class="dfm-colab" href="#">Open in Colab</a></div>
<div class="jupyter-wrapper"><div class="jp-Notebook">
<h1>Lesson 01 on toy data: hallucination by mode interpolation</h1>
<div class="jp-InputArea-editor"><div style="overflow-x: auto"><pre>{LINE}</pre></div></div>
</div></div></article></body></html>"""
# The faults the site had: buttons floated beside the title, the notebook in a narrow column, code
# cut off (scrolling, or hidden out of reach), a title one word per line, a page wider than a phone.
BAD_NOTEBOOK = f"""<html><body><article>
<div class="jupyter-wrapper"><div class="jp-Notebook" style="width: 550px">
<div class="dfm-nb-actions" style="float: right; width: 150px"><a class="dfm-colab" href="#">Colab</a></div>
<h1 style="font-size: 40px; margin: 0">Lesson hallucination interpolation</h1>
<div class="jp-InputArea-editor"><div style="overflow-x: auto"><pre>{LINE}</pre></div></div>
<div class="jp-InputArea-editor" style="overflow: hidden"><div><pre>clipped = {LINE}</pre></div></div>
<div style="width: 500px">a block wider than a phone</div>
</div></div></article></body></html>"""


def test_check_flags_a_narrow_notebook_cut_code_and_a_phone_layout_with_buttons_beside_the_title(tmp_path):
    for name, html in {"good": GOOD_NOTEBOOK, "bad": BAD_NOTEBOOK}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "index.html").write_text(html)
    found = browser_check.check_site(tmp_path, shots=tmp_path / "shots", echo=False)
    assert found["good/"] == []
    bad = "\n".join(found["bad/"])
    for problem in ("notebook column 550 px wide at 1280 px", f"a {len(LINE)}-character code line is cut off at 1280 px",
                    "code clipped out of reach: 'clipped = x", "px wide on a 390 px phone", "buttons are not above the title",
                    "the title breaks one word per line"):
        assert problem in bad, bad
    assert {p.name for p in (tmp_path / "shots").iterdir()} == {"good.png", "good@390.png", "bad.png", "bad@390.png"}
