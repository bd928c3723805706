"""Rewrite relative links inside rendered notebooks, and fail the build on a missing target.

mkdocs-jupyter hands MkDocs finished HTML, so MkDocs neither rewrites nor checks the links in
a notebook: ``cifar.ipynb`` or ``../02-fpe-gap/index.md`` would 404 on the site and a typo would
pass ``--strict``. This hook resolves each relative ``href``/``src`` against the notebook's
folder, rewrites it to the target page's URL, and logs a warning (fatal under --strict) when
the target does not exist.
"""
import logging
import posixpath
import re

from mkdocs.utils import get_relative_url

log = logging.getLogger("mkdocs.hooks.notebook_links")
ATTRIBUTE = re.compile(r'(<(?:a|img)\b[^>]*?\b(?:href|src)=")([^"]*)(")')
SKIP = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|/|#|$)")  # has a scheme, absolute, fragment, empty


def on_page_content(html, page, config, files):
    if not page.file.src_uri.endswith(".ipynb"):
        return html
    folder = posixpath.dirname(page.file.src_uri)

    def rewrite(match):
        target = match.group(2)
        if SKIP.match(target):
            return match.group(0)
        path, sep, rest = _split(target)
        resolved = posixpath.normpath(posixpath.join(folder, path))
        found = files.get_file_from_path(resolved)
        if found is None:
            log.warning("%s links to '%s', which is not in the course (%s)", page.file.src_uri, target, resolved)
            return match.group(0)
        return match.group(1) + get_relative_url(found.url, page.url) + sep + rest + match.group(3)

    return ATTRIBUTE.sub(rewrite, html)


def _split(target):
    """'a.ipynb#x' -> ('a.ipynb', '#', 'x'); 'a.md' -> ('a.md', '', '')."""
    for i, ch in enumerate(target):
        if ch in "#?":
            return target[:i], ch, target[i + 1:]
    return target, "", ""
