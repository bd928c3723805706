"""Open every page of the built course in headless Chromium and check what a reader would see.

    python scripts/browser_check.py [SITE_DIR] [--screenshots DIR]

Serves SITE_DIR (default: site/) on 127.0.0.1 and, for every page, checks that it loads with no
console error, that no request leaves localhost, that math is typeset (no raw $...$ left in the
text) and once only, that every image loads, that every internal link resolves, and that a
notebook page's Colab button points at the repository's copy of that notebook. Then the layout,
at two widths:
- desktop (1280 px): a notebook's content column is at least MIN_NOTEBOOK_WIDTH px wide, and a code
  line of up to FIT_CHARS characters shows whole (no scrolling); no code is clipped out of reach;
- phone (390 px): a notebook's Colab and download buttons sit above its title, the title does not
  break one word per line (its first line, and at least half of the others but the last, hold more
  than one word; no word breaks inside), and nothing is wider than the screen.
Saves a full-page screenshot of every page at both widths (NAME.png, NAME@390.png).

Chromium is Debian's (/usr/bin/chromium, `apt-get install --no-install-recommends chromium`),
driven by Playwright's Python package, which downloads no browser of its own. Build the site with
SITE_URL set to the address served here (the test command does), since download links are absolute.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import pathlib
import sys
import threading
import time
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]
RAW_TEX = r"/\$[^$\s][^$]*\$|\\\(|\\\[/"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
MIN_NOTEBOOK_WIDTH = 900
FIT_CHARS = 120   # at 1280 px a notebook code line this long shows without scrolling
# Every wait on the browser (page loads, scripts, link requests) in ms. Unloaded, a page of this site
# loads and is checked in at most ~2 s (the longest, a notebook page with its figures); 60 s keeps a
# margin of 30x, so that a busy shared machine never fails the check.
TIMEOUT_MS = 60_000


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(site: pathlib.Path, port: int = 0):
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def expected_colab(page_path: str) -> str | None:
    """The Colab address for a notebook page ('01-x/toy2d/' -> lessons/01-x/toy2d.ipynb), or None."""
    sys.path.insert(0, str(ROOT))
    from scripts.notebooks import colab_url

    source = ROOT / "lessons" / (page_path.strip("/") + ".ipynb")
    return colab_url(source) if page_path and source.exists() else None


def check_page(page, base: str, path: str, shots: pathlib.Path | None) -> tuple[list[str], int]:
    """Load one page; return (problems, number of typeset formulas)."""
    problems: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
    response = page.goto(base + path, wait_until="networkidle")
    if response is None or response.status >= 400:
        return [f"page did not load ({response and response.status})"], 0
    page.evaluate("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
    page.wait_for_load_state("networkidle")
    formulas = page.evaluate("() => document.querySelectorAll('mjx-container').length")
    twice = page.evaluate("() => document.querySelectorAll('mjx-assistive-mml mjx-container').length")
    if twice:
        problems.append(f"{twice} formulas typeset twice (inside MathJax's hidden screen-reader copy)")
    raw = page.evaluate(f"""() => [...document.querySelectorAll('article p, article li, article td, .jp-RenderedMarkdown p')]
        .map(e => e.innerText).filter(t => {RAW_TEX}.test(t)).slice(0, 3)""")
    problems += [f"raw TeX left in text: {t[:80]!r}" for t in raw]
    broken = page.evaluate("() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")
    problems += [f"image did not load: {src}" for src in broken]
    links = page.evaluate("() => [...document.querySelectorAll('article a[href]')].map(a => a.href)")
    for link in sorted(set(links)):
        if link.startswith(base) and link.split("#")[0] != (base + path).split("#")[0]:
            status = page.request.get(link.split("#")[0], timeout=TIMEOUT_MS).status
            if status >= 400:
                problems.append(f"broken link ({status}): {link}")
    colab = expected_colab(path)
    if colab:
        hrefs = page.evaluate("() => [...document.querySelectorAll('a.dfm-colab')].map(a => a.href)")
        if hrefs != [colab]:
            problems.append(f"Colab button points at {hrefs}, expected {colab}")
    problems += layout_problems(page, phone=False)
    _screenshot(page, path, shots, "")
    return problems, formulas


# The layout facts one page reports, read in the browser. Code boxes are notebook code cells; a box
# "scrolls" when its text is wider than the box, and is "clipped" when it does and cannot scroll.
_LAYOUT = """() => {
  const box = s => { const e = document.querySelector(s); return e && e.getBoundingClientRect().toJSON(); };
  const code = [...document.querySelectorAll('.jupyter-wrapper .jp-InputArea-editor')].map(e => {
    const lines = e.innerText.split('\\n'), longest = Math.max(0, ...lines.map(l => l.length));
    const pre = e.querySelector('pre'), width = pre ? pre.scrollWidth : 0;
    let scrolls = false, clipped = false;
    for (let x = pre && pre.parentElement; x && x !== e.parentElement; x = x.parentElement) {
      const o = getComputedStyle(x).overflowX;
      if (o === 'auto' || o === 'scroll') { scrolls = width > x.clientWidth + 1; break; }
      if ((o === 'hidden' || o === 'clip') && width > x.clientWidth + 1) { clipped = true; break; }
    }
    return {longest, scrolls, clipped, text: lines.reduce((a, b) => b.length > a.length ? b : a, '')};
  });
  // The title's words, line by line: how many words each line holds, and words broken across lines.
  const h1 = document.querySelector('article h1');
  const lines = [];
  let broken = 0;
  if (h1) {
    const walker = document.createTreeWalker(h1, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      // Words split after their hyphens: a title may wrap at 'Fokker-' but never inside a word.
      for (const m of n.textContent.matchAll(/[^\\s-]+-*|-+/g)) {
        if (m[0] === '¶') continue;  // the heading's permalink
        const r = document.createRange(); r.setStart(n, m.index); r.setEnd(n, m.index + m[0].length);
        const tops = [...r.getClientRects()].map(c => Math.round(c.top));
        if (!tops.length) continue;
        if (Math.max(...tops) - Math.min(...tops) > 4) broken += 1;
        const line = lines.find(l => Math.abs(l.top - tops[0]) < 4);
        if (line) line.words += 1; else lines.push({top: tops[0], words: 1});
      }
    }
  }
  return {notebook: box('.jupyter-wrapper .jp-Notebook'), h1: h1 && h1.getBoundingClientRect().toJSON(),
          colab: box('.dfm-nb-actions'), code, titleLines: lines.map(l => l.words), broken,
          pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth};
}"""


def layout_problems(page, phone: bool) -> list[str]:
    """What is wrong with the page's layout at the current viewport (desktop or phone)."""
    facts = page.evaluate(_LAYOUT)
    problems = [f"code clipped out of reach: {c['text'][:60]!r}" for c in facts["code"] if c["clipped"]]
    nb = facts["notebook"]
    if not phone and nb and nb["width"] < MIN_NOTEBOOK_WIDTH:
        problems.append(f"notebook column {nb['width']:.0f} px wide at {facts['viewport']} px (at least {MIN_NOTEBOOK_WIDTH})")
    if not phone and nb:
        cut = [c for c in facts["code"] if c["scrolls"] and c["longest"] <= FIT_CHARS]
        problems += [f"a {c['longest']}-character code line is cut off at {facts['viewport']} px: {c['text'][:60]!r}"
                     for c in cut[:3]]
    if phone:
        if facts["pageWidth"] > facts["viewport"] + 1:
            problems.append(f"the page is {facts['pageWidth']} px wide on a {facts['viewport']} px phone")
        if nb and facts["h1"] and not (facts["colab"] and facts["colab"]["bottom"] <= facts["h1"]["top"] + 1):
            problems.append("on a phone the Colab and download buttons are not above the title")
        lines = facts["titleLines"]  # words per line; a long word alone on a line now and then is fine
        single = sum(n == 1 for n in lines[:-1])
        if (len(lines) > 1 and lines[0] == 1) or (single and 2 * single >= len(lines) - 1) or facts["broken"]:
            problems.append(f"on a phone the title breaks one word per line (words per line: {lines}, "
                            f"{facts['broken']} words broken inside)")
    return problems


def _screenshot(page, path: str, shots: pathlib.Path | None, suffix: str) -> None:
    if shots is not None:
        name = (path.strip("/") or "home").replace("/", "__") + suffix + ".png"
        page.screenshot(path=str(shots / name), full_page=True)


def check_phone(page, base: str, path: str, shots: pathlib.Path | None) -> list[str]:
    """The same page on a phone: console errors and the layout checks; a screenshot NAME@390.png."""
    problems: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console error (phone): {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error (phone): {e}"))
    page.goto(base + path, wait_until="networkidle")
    page.evaluate("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
    problems += layout_problems(page, phone=True)
    _screenshot(page, path, shots, f"@{PHONE['width']}")
    return problems


def pages_of(site: pathlib.Path) -> list[str]:
    return sorted("" if p.parent == site else p.parent.relative_to(site).as_posix() + "/"
                  for p in site.rglob("index.html") if "javascripts" not in p.parts and "assets" not in p.parts)


def check_site(site: pathlib.Path, shots: pathlib.Path | None, port: int = 0, echo: bool = True) -> dict[str, list[str]]:
    """Every page of ``site`` -> the problems found on it (an empty list when the page is fine)."""
    from playwright.sync_api import sync_playwright

    server = serve(site, port)
    base = f"http://127.0.0.1:{server.server_port}/"
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[str]] = {}
    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, timeout=TIMEOUT_MS)

        def guard(route):  # nothing may leave localhost
            host = urllib.parse.urlsplit(route.request.url).hostname
            if host in ("127.0.0.1", "localhost"):
                return route.continue_()
            outside.append(route.request.url)
            return route.abort()

        contexts = {}
        for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            contexts[name] = browser.new_context(viewport=viewport)
            contexts[name].set_default_timeout(TIMEOUT_MS)
            contexts[name].route("**/*", guard)
        for path in pages_of(site):
            start, before = time.perf_counter(), len(outside)
            page = contexts["desktop"].new_page()
            problems, formulas = check_page(page, base, path, shots)
            page.close()
            page = contexts["phone"].new_page()
            problems += check_phone(page, base, path, shots)
            page.close()
            problems += [f"request left localhost: {u}" for u in outside[before:]]
            found[path] = problems
            if echo:
                print(f"{'ok  ' if not problems else 'FAIL'} /{path:<40} {formulas:4d} formulas "
                      f"{time.perf_counter() - start:5.1f} s")
                for problem in problems:
                    print(f"       {problem}")
        browser.close()
    server.shutdown()
    return found


def run(site: pathlib.Path, shots: pathlib.Path | None, port: int = 0) -> int:
    start = time.perf_counter()
    found = check_site(site, shots, port)
    bad = sum(bool(p) for p in found.values())
    print(f"{len(found)} pages, {bad} with problems, {time.perf_counter() - start:.1f} s")
    return 1 if bad else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("site", nargs="?", default=str(ROOT / "site"))
    parser.add_argument("--screenshots", default=str(ROOT / "screenshots"))
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    return run(pathlib.Path(args.site), pathlib.Path(args.screenshots) if args.screenshots else None, args.port)


if __name__ == "__main__":
    sys.exit(main())
