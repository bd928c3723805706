"""Open every page of the built course in headless Chromium and check what a reader would see.

    python scripts/browser_check.py [SITE_DIR] [--screenshots DIR]

Serves SITE_DIR (default: site/) on 127.0.0.1 and, for every page, checks that it loads with no
console error, that no request leaves localhost, that math is typeset (no raw $...$ left in the
text), that every image loads, that every internal link resolves, and that a notebook page's
Colab button points at the repository's copy of that notebook. Saves a screenshot per page.

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
    raw = page.evaluate(f"""() => [...document.querySelectorAll('article p, article li, article td, .jp-RenderedMarkdown p')]
        .map(e => e.innerText).filter(t => {RAW_TEX}.test(t)).slice(0, 3)""")
    problems += [f"raw TeX left in text: {t[:80]!r}" for t in raw]
    broken = page.evaluate("() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")
    problems += [f"image did not load: {src}" for src in broken]
    links = page.evaluate("() => [...document.querySelectorAll('article a[href]')].map(a => a.href)")
    for link in sorted(set(links)):
        if link.startswith(base) and link.split("#")[0] != (base + path).split("#")[0]:
            status = page.request.get(link.split("#")[0]).status
            if status >= 400:
                problems.append(f"broken link ({status}): {link}")
    colab = expected_colab(path)
    if colab:
        hrefs = page.evaluate("() => [...document.querySelectorAll('a.dfm-colab')].map(a => a.href)")
        if hrefs != [colab]:
            problems.append(f"Colab button points at {hrefs}, expected {colab}")
    if shots is not None:
        name = (path.strip("/") or "home").replace("/", "__") + ".png"
        page.screenshot(path=str(shots / name), full_page=True)
    return problems, formulas


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
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})

        def guard(route):  # nothing may leave localhost
            host = urllib.parse.urlsplit(route.request.url).hostname
            if host in ("127.0.0.1", "localhost"):
                return route.continue_()
            outside.append(route.request.url)
            return route.abort()

        context.route("**/*", guard)
        for path in pages_of(site):
            page = context.new_page()
            before = len(outside)
            problems, formulas = check_page(page, base, path, shots)
            problems += [f"request left localhost: {u}" for u in outside[before:]]
            found[path] = problems
            if echo:
                print(f"{'ok  ' if not problems else 'FAIL'} /{path:<40} {formulas:4d} formulas")
                for problem in problems:
                    print(f"       {problem}")
            page.close()
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
