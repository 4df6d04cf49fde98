"""Checks of a built site (``course site`` runs them after Sphinx; the tests run them too).

:func:`problems` lists, in words, everything wrong with a site folder:

* a link, image, script or style sheet of a page that does not resolve inside the site, or an anchor
  (``page.html#part``) that no element of its page carries;
* anything a page or style sheet loads from outside the site (a script, a style sheet, a font, an image):
  the site must work offline and tell no third party who reads it; plain ``<a href>`` links out are fine;
* a lab without its page, or a page without every figure of its demo (the same bytes, not empty);
* a line of solution code: any distinctive line of a ``# BEGIN SOLUTION`` region, found in any file.
"""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from course import labs as _labs
from course.staff.assign import regions

# (tag, attribute) pairs that load something into the page, and those that only link to a page.
LOADS = {("script", "src"), ("link", "href"), ("img", "src"), ("source", "src"), ("iframe", "src"), ("embed", "src")}
LINKS = {("a", "href"), ("area", "href")}
TEXT_SUFFIXES = {".html", ".txt", ".js", ".json", ".css", ".md", ".xml", ".svg", ".py", ".ipynb"}
MIN_DISTINCTIVE = 16  # characters, spaces apart: shorter solution lines (`return x`) say nothing
_CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)['"]?\s*\)|@import\s+['"]([^'"]+)['"]""")


class _Page(HTMLParser):
    """A page's references ((tag, attribute, url)), the ids it carries, and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[tuple[str, str, str]] = []
        self.ids: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value)
            if (tag, name) in LOADS | LINKS and not (tag == "link" and _rel(attrs) in {"canonical", "alternate"}):
                self.refs.append((tag, name, value))
            if name == "style":
                self.refs += [("style", "url", u) for u in _css_urls(value)]

    def handle_data(self, data):
        self.text.append(data)


def _rel(attrs) -> str:
    return dict(attrs).get("rel") or ""


def _css_urls(css: str) -> list[str]:
    return [a or b for a, b in _CSS_URL.findall(css)]


def _outside(url: str) -> bool:
    return bool(urlsplit(url).scheme in ("http", "https", "ftp") or url.startswith("//"))


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    page.close()
    return page


def pages(site: Path) -> list[Path]:
    """The site's pages: its HTML files but the themes' templates that Sphinx copies into _static/."""
    return [p for p in sorted(site.rglob("*.html")) if p.relative_to(site).parts[0] not in ("_static", "_sources")]


def link_problems(site: Path) -> list[str]:
    """Every reference of every page and style sheet resolves in the site; nothing loads from outside."""
    site = site.resolve()
    parsed = {path: _parse(path) for path in pages(site)}
    found = []
    refs = [(path, tag, attr, url) for path, page in parsed.items() for tag, attr, url in page.refs]
    for css in sorted(site.rglob("*.css")):
        refs += [(css, "css", "url", url) for url in _css_urls(css.read_text(encoding="utf-8", errors="replace"))]
    for path, tag, attr, url in refs:
        where = f"{path.relative_to(site)}: <{tag} {attr}={url!r}>"
        parts = urlsplit(url)
        if parts.scheme in ("mailto", "data", "javascript"):
            continue
        if _outside(url):
            if (tag, attr) not in LINKS:
                found.append(f"{where} loads from outside the site (vendor it, or drop it)")
            continue
        if parts.scheme:
            found.append(f"{where}: a {parts.scheme}: address")
            continue
        target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
        if target.is_dir():
            target = target / "index.html"
        if not target.is_relative_to(site):
            found.append(f"{where} points outside the site's folder")
        elif not target.is_file():
            found.append(f"{where}: no such file {target.relative_to(site)}")
        elif parts.fragment and target.suffix == ".html":
            ids = parsed[target].ids if target in parsed else _parse(target).ids
            if unquote(parts.fragment) not in ids:
                found.append(f"{where}: no element with id {parts.fragment!r} in {target.relative_to(site)}")
    return found


def figure_problems(site: Path, labs) -> list[str]:
    """Every lab has its page, linked from the home page, showing every figure of its demo (non-empty)."""
    found = []
    home = site / "index.html"
    home_links = {unquote(urlsplit(u).path) for *_, u in _parse(home).refs} if home.is_file() else set()
    if not home.is_file():
        found.append("no index.html at the site's root")
    for lab in labs:
        page_path = site / f"{lab.page}.html"
        if not page_path.is_file():
            found.append(f"{lab.id} has no page {lab.page}.html")
            continue
        if f"{lab.page}.html" not in home_links:
            found.append(f"the home page has no link to {lab.page}.html")
        shown = set()
        for tag, _, url in _parse(page_path).refs:
            img = (page_path.parent / unquote(urlsplit(url).path)).resolve()
            if tag == "img" and not _outside(url) and img.is_file() and img.stat().st_size:
                shown.add(hashlib.sha256(img.read_bytes()).hexdigest())
        for fig in lab.figures:
            if not fig.stat().st_size:
                found.append(f"{lab.id}'s figure {fig.name} is empty")
            elif hashlib.sha256(fig.read_bytes()).hexdigest() not in shown:
                found.append(f"{lab.page}.html does not show {lab.id}'s figure {fig.name}")
    return found


def _normal(line: str) -> str:
    return " ".join(line.split())


def distinctive_lines(solutions: Path | None = None, published: list[Path] | None = None) -> dict[str, str]:
    """``{line: "lab01 sigmoid"}``: lines of solution regions that nothing published contains.

    A line counts when it has at least ``MIN_DISTINCTIVE`` characters, is not a comment, and appears in
    no stub (``labs/``) and no other page source given in ``published`` (docs that quote ``x @ W + b``).
    """
    solutions = solutions or _labs.impl_dir("solutions")
    public = set()
    for path in [*_labs.lab_files("labs").values(), *(published or [])]:
        public |= {_normal(line) for line in path.read_text(encoding="utf-8").splitlines()}
    found = {}
    for path in sorted(solutions.glob("lab*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for region in regions(path):
            for line in lines[region.begin : region.end - 1]:
                text = _normal(line)
                if len(text.replace(" ", "")) >= MIN_DISTINCTIVE and not text.startswith("#") and text not in public:
                    found.setdefault(text, f"{region.lab} {region.function}")
    return found


def leak_problems(site: Path, lines: dict[str, str]) -> list[str]:
    """Every text file of the site (pages as their text, tags dropped) against the solutions' lines."""
    found = []
    for path in sorted(site.rglob("*")):
        if not path.is_file() or path.suffix not in TEXT_SUFFIXES:
            continue
        raw = path.read_text(encoding="utf-8", errors="replace")
        texts = [raw, "".join(_parse(path).text)] if path.suffix == ".html" else [raw]
        flat = [" ".join(t.split()) for t in texts]
        for line, where in lines.items():
            if any(line in text for text in flat):
                found.append(f"{path.relative_to(site)} holds solution code ({where}): {line}")
    return found


def problems(site: Path, labs, *, published: list[Path]) -> list[str]:
    """Everything wrong with the built site, in words (an empty list: nothing).

    ``published``: the page sources besides the stubs, whose lines are not a solution's to give away.
    """
    lines = distinctive_lines(published=published)
    return link_problems(site) + figure_problems(site, labs) + leak_problems(site, lines)
