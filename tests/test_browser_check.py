"""The browser check finds what it claims to find: raw TeX, broken images and links, off-site requests."""
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
</article></body></html>"""


def test_check_flags_raw_tex_broken_images_links_and_offsite_requests(tmp_path):
    for name, html in {"other": "<html><body>other</body></html>", "good": GOOD, "bad": BAD}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "index.html").write_text(html)
    found = browser_check.check_site(tmp_path, shots=tmp_path / "shots", echo=False)
    assert found["good/"] == [] and found["other/"] == []
    bad = "\n".join(found["bad/"])
    for problem in ("raw TeX left in text", "image did not load", "broken link (404)",
                    "request left localhost: https://example.com/remote.png"):
        assert problem in bad, bad
    assert (tmp_path / "shots" / "bad.png").exists()
