"""The course's website: the labs, the lecture's arc and docs/ as pages, built offline by Sphinx.

``course site`` (``nox -s site``) writes ``build/site/`` in three steps:

1. **Figures.** Every lab's demo is run once on the solutions (``course run``, two processes at once);
   its figures are kept in ``build/site-cache/figures/labNN/`` under a key of the code that draws them
   (the solution's syntax tree and the labs' room of ``course/``), so a change to a lab's text, a page
   or a comment never runs a demo again.
2. **Sources.** MyST pages written into ``build/site-cache/src/``: the home page and the lecture's arc
   from ``docs/site/`` (hand-written, with the labs' cards and figures filled in), one page per lab from
   ``labs/`` (the stubs, as the student receives them: no solution code ever reaches the site), and
   docs/ as they are. A file is rewritten only when its text changed, so Sphinx rereads only what did.
3. **Sphinx** (``docs/site/conf.py``), warnings as errors, then :func:`course.staff.sitecheck.problems`:
   every page's links and anchors, no outside script, style sheet or font, no line of a solution region.

Everything is read from the checkout; nothing is fetched (MathJax comes from a wheel).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from course import labs as _labs
from course.errors import CourseError
from course.staff.notebooks import binder_url, colab_url, settings

SITE_SOURCES = Path("docs") / "site"  # conf.py, index.md, arc.md, _static/: the hand-written part
OUT = Path("build") / "site"
CACHE = Path("build") / "site-cache"
# The pages docs/ gives the site, and where they sit in it (the same paths as in the repository, so
# their relative links hold); a link to any other file of the repository points at it on GitHub.
DOC_PAGES = ("docs/staff.md", "docs/grading.md", "docs/training.md", "docs/data.md", "docs/performance.md")
DOC_PAGES += ("docs/architecture.md", "CONTRIBUTING.md")
LAB_FIGURE = re.compile(r"^```\{lab-figure\} (lab\d{2}) (\S+)\n```$", re.M)  # docs/site/arc.md's placeholders
LAB_CARDS = re.compile(r"^```\{lab-cards\}\n```$", re.M)  # docs/site/index.md's placeholder
_LINK = re.compile(r"(\[[^\]]*\]\()([^)\s]+)(\))")
_FENCED = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


@dataclass(frozen=True)
class Lab:
    """One lab as the site shows it."""

    id: str  # "lab01"
    stem: str  # "lab01_perceptron"
    heading: str  # "Lab 01 — the perceptron", the H1 of its text
    summary: str  # its module docstring's first line
    figures: tuple[Path, ...]  # the demo's figures, in the cache

    @property
    def page(self) -> str:
        return f"labs/{self.stem}"


# ---------------------------------------------------------------------------------------------------
# 1. the demos' figures, drawn once


def _tree_digest(path: Path) -> bytes:
    return hashlib.sha256(
        path.name.encode() + b"\0" + ast.dump(ast.parse(path.read_text(encoding="utf-8"))).encode()
    ).digest()


def figure_key(solution: Path, *, room: bytes | None = None) -> str:
    """What the demo's figures depend on: the solution's code and the labs' room of ``course/``.

    Syntax trees, not texts: the lab's Markdown cells and comments are comments to Python, so editing
    the prose keeps the key and the cached figures. ``room``: :func:`room_digest`, when known.
    """
    return hashlib.sha256(_tree_digest(solution) + (room or room_digest())).hexdigest()[:16]


def room_digest() -> bytes:
    """The syntax trees of ``course/*.py``, what a lab imports (not the grader, not the staff's tools)."""
    return hashlib.sha256(b"".join(_tree_digest(p) for p in sorted((_labs.root() / "course").glob("*.py")))).digest()


def _cached(folder: Path, key: str) -> list[Path] | None:
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    paths = [folder / name for name in manifest.get("figures", [])]
    if manifest.get("key") != key or not paths or not all(p.is_file() and p.stat().st_size for p in paths):
        return None
    return paths


def _run_demos(groups: list[list[str]], tmp: Path) -> dict[str, list[Path]]:
    """Each group of labs' demos in a process of its own, the groups at once: ``{lab: [figure, ...]}``.

    Most of a demo's time on a CPU is compiling and dispatching, one core's work: two processes on two
    cores draw the figures in about half the time. Each runs ``course run``, which chooses quick or
    full as it always does.
    """
    env = {**os.environ, "MPLBACKEND": "Agg"}
    running = []
    for i, group in enumerate(groups):
        out, log = tmp / f"group{i}", (tmp / f"group{i}.log").open("wb")
        cmd = [sys.executable, "-m", "course", "run", *group, "--impl", "solutions", "--out", str(out)]
        running.append((group, out, log, subprocess.Popen(cmd, cwd=_labs.root(), env=env, stdout=log, stderr=log)))
    drawn = {}
    for group, out, log, proc in running:
        code = proc.wait()
        log.close()
        output = Path(log.name).read_text(encoding="utf-8", errors="replace")
        if code:
            raise CourseError(
                f"a demo failed while drawing the site's figures (`course run {' '.join(group)} --impl "
                f"solutions`, exit {code}); its output ends:\n{output[-3000:]}"
            )
        # The order each demo drew its figures in, from the lines `course run` prints.
        written = [Path(line.split("wrote ", 1)[1]) for line in output.splitlines() if line.startswith("   wrote ")]
        for lid in group:
            pngs = sorted((out / lid).glob("*.png"))
            drawn[lid] = [p for p in written if p in pngs] + [p for p in pngs if p not in written]
    return drawn


def demo_figures(cache: Path, *, jobs: int = 2, log=print) -> dict[str, list[Path]]:
    """``{lab: [figure, ...]}`` for every lab, running the demos (on the solutions) whose code changed."""
    if not _labs.has_solutions():
        raise CourseError("the site shows the figures the solutions' demos draw: build it from the staff's repository")
    solutions = _labs.lab_files("solutions")
    room = room_digest()
    keys = {lid: figure_key(path, room=room) for lid, path in solutions.items()}
    found = {lid: _cached(cache / lid, keys[lid]) for lid in solutions}
    stale = [lid for lid, paths in found.items() if paths is None]
    if not stale:
        return found
    log(f"drawing the figures of {', '.join(stale)} (their demos, on the solutions; cached afterwards)")
    start = time.perf_counter()
    groups = [g for g in (stale[i :: max(1, jobs)] for i in range(max(1, jobs))) if g]
    with tempfile.TemporaryDirectory(prefix="course-site-") as tmp:
        for lid, drawn in _run_demos(groups, Path(tmp)).items():
            if not drawn:
                raise CourseError(f"{lid}'s demo wrote no .png figure; the site shows each lab's figures")
            folder = cache / lid
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            for path in drawn:
                shutil.copy2(path, folder / path.name)
            manifest = {"key": keys[lid], "figures": [p.name for p in drawn]}
            (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
            found[lid] = [folder / p.name for p in drawn]
    log(f"drew {sum(len(found[lid]) for lid in stale)} figures in {time.perf_counter() - start:.0f} s")
    return found


# ---------------------------------------------------------------------------------------------------
# 2. the pages' sources


def _fence(code: str, language: str = "python") -> str:
    """``code`` in a fenced block whose fence is longer than any run of backticks inside it."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{code.strip(chr(10))}\n{fence}"


@functools.lru_cache(maxsize=64)
def _cells(path: Path, mtime_ns: int) -> tuple:
    """A lab file's cells, as jupytext reads them (once per version of the file)."""
    import jupytext

    return tuple(jupytext.read(path).cells)


def lab_cells(path: Path) -> tuple:
    return _cells(path, path.stat().st_mtime_ns)


def _heading(cells) -> tuple[int, str]:
    for i, cell in enumerate(cells):
        if cell.cell_type == "markdown" and (m := re.match(r"#\s+(.+)", cell.source.lstrip())):
            return i, m.group(1).strip()
    raise CourseError("a lab's text has no `# Title` heading in a Markdown cell")


def labs_of(figures: dict[str, list[Path]]) -> list[Lab]:
    """The labs in ``labs/`` (the stubs), with their figures."""
    found = []
    for lid, path in _labs.lab_files("labs").items():
        _, heading = _heading(lab_cells(path))
        if lid not in figures:
            raise CourseError(f"labs/{path.name} has no solution in solutions/, so no figures for the site")
        found.append(Lab(lid, path.stem, heading, _labs.lab_title(path), tuple(figures[lid])))
    return found


def _buttons(lab: Lab, conf: dict[str, str]) -> str:
    notebook = f"{lab.stem}.ipynb"
    source = f"https://github.com/{conf['repository']}/blob/{conf['branch']}/labs/{lab.stem}.py"
    buttons = [
        (colab_url(notebook, conf), "Open in Colab", "primary"),
        (binder_url(notebook, conf), "Launch Binder", "primary"),
        (source, "The lab's file on GitHub", "secondary"),
    ]
    # sphinx-design's button classes on plain links (MyST's inline attributes): one row of buttons.
    return " ".join(f"[{text}]({url}){{.sd-btn .sd-btn-outline-{color} .sd-mr-2}}" for url, text, color in buttons)


def _figure(src: str, *, alt: str, caption: str = "", width: str = "") -> str:
    options = f":alt: {alt}\n" + (f":width: {width}\n" if width else "")
    return f"```{{figure}} {src}\n{options}\n{caption}\n```" if caption else f"```{{image}} {src}\n{options}```"


def lab_page(lab: Lab, conf: dict[str, str]) -> str:
    """A lab's page: its text and its stub code, in the file's order, the demo's figures after the demo."""
    cells = lab_cells(_labs.lab_files("labs")[lab.id])
    title_at, _ = _heading(cells)
    parts = [cells[title_at].source.strip(), _buttons(lab, conf)]
    for i, cell in enumerate(cells):
        if i == title_at or not cell.source.strip():
            continue
        parts.append(cell.source.strip() if cell.cell_type == "markdown" else _fence(cell.source))
        if cell.cell_type == "code" and re.search(r"^def demo\(", cell.source, re.M):
            parts.append(
                "**What the demo draws**, from the instructors' run of the solutions "
                f"(`python -m course run {lab.id}`):"
            )
            parts += [
                _figure(f"../figures/{lab.id}/{p.name}", alt=f"{lab.id}: {p.stem}", caption=f"`{p.name}`")
                for p in lab.figures
            ]
    if not any(p.startswith("**What the demo draws**") for p in parts):
        raise CourseError(f"labs/{lab.stem}.py has no `def demo(` code cell, after which the site shows its figures")
    header = f"---\nmyst:\n  html_meta:\n    description: {json.dumps(lab.summary)}\n---\n\n"  # JSON is YAML
    return header + "\n\n".join(parts) + "\n"


def _cards(labs: list[Lab]) -> str:
    cards = []
    for lab in labs:
        cards.append(
            f":::{{grid-item-card}} {lab.heading}\n:link: {lab.page}\n:link-type: doc\n"
            f":img-top: figures/{lab.id}/{lab.figures[0].name}\n:img-alt: {lab.id}'s first figure\n\n"
            f"{lab.summary}\n:::"
        )
    return "::::{grid} 1 2 2 3\n:gutter: 3\n\n" + "\n\n".join(cards) + "\n::::"


def home_page(template: str, labs: list[Lab]) -> str:
    if not LAB_CARDS.search(template):
        raise CourseError(f"{SITE_SOURCES}/index.md has no ```{{lab-cards}}``` block, where the labs' cards go")
    toc = [
        "```{toctree}\n:hidden:\n:caption: The course\n\narc\n" + "\n".join(lab.page for lab in labs) + "\n```",
        "```{toctree}\n:hidden:\n:caption: For staff and contributors\n\n"
        + "\n".join(p.removesuffix(".md") for p in DOC_PAGES)
        + "\n```",
    ]
    return LAB_CARDS.sub(lambda _: _cards(labs), template).rstrip() + "\n\n" + "\n\n".join(toc) + "\n"


def arc_page(template: str, labs: list[Lab]) -> str:
    by_id = {lab.id: lab for lab in labs}

    def figure(m: re.Match) -> str:
        lab = by_id.get(m.group(1))
        if lab is None:
            raise CourseError(f"{SITE_SOURCES}/arc.md shows a figure of {m.group(1)}, which is not a lab here")
        names = {p.stem: p for p in lab.figures}
        if m.group(2) not in names:
            raise CourseError(
                f"{SITE_SOURCES}/arc.md shows {lab.id}'s figure {m.group(2)!r}, which its demo does not draw; "
                f"it draws: {', '.join(names)}"
            )
        caption = f"From [{lab.heading}]({lab.page}.md)."
        return _figure(f"figures/{lab.id}/{names[m.group(2)].name}", alt=f"{lab.id}: {m.group(2)}", caption=caption)

    shown = {m.group(1) for m in LAB_FIGURE.finditer(template)}
    if missing := [lab.id for lab in labs if lab.id not in shown]:
        raise CourseError(f"{SITE_SOURCES}/arc.md tells no step of {', '.join(missing)}: add a section with its figure")
    return LAB_FIGURE.sub(figure, template)


def doc_page(rel: str, conf: dict[str, str]) -> str:
    """A page of docs/, its links to files that are not pages pointed at GitHub (outside code blocks)."""
    text = (_labs.root() / rel).read_text(encoding="utf-8")
    pages = set(DOC_PAGES)
    base = Path(rel).parent

    def link(m: re.Match) -> str:
        target = m.group(2)
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            return m.group(0)
        path, _, anchor = target.partition("#")
        repo_path = os.path.normpath(base / path).replace(os.sep, "/")
        if repo_path in pages:
            return m.group(0)
        kind = "tree" if (_labs.root() / repo_path).is_dir() else "blob"
        url = f"https://github.com/{conf['repository']}/{kind}/{conf['branch']}/{repo_path}"
        return f"{m.group(1)}{url}{'#' + anchor if anchor else ''}{m.group(3)}"

    out, last = [], 0
    for fenced in _FENCED.finditer(text):  # code blocks are shown as written
        out += [_LINK.sub(link, text[last : fenced.start()]), fenced.group(0)]
        last = fenced.end()
    return "".join(out + [_LINK.sub(link, text[last:])])


def _write(path: Path, data: str | bytes) -> bool:
    """Write only when the content changed, so Sphinx rereads only the pages that did."""
    data = data.encode("utf-8") if isinstance(data, str) else data
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return True


def mathjax_dir() -> Path:
    """MathJax 3's es5 build, as the ``django-static-mathjax`` wheel ships it (the ``site`` group)."""
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    folder = Path(spec.origin).parent / "static" / "mathjax" / "es5" if spec and spec.origin else None
    if folder is None or not (folder / "tex-chtml.js").is_file():
        raise CourseError(
            "MathJax is not installed (the site renders its maths offline with the copy in the "
            "django-static-mathjax wheel): run `python -m nox -s site`, or `pip install -e . --group site`"
        )
    return folder


def write_sources(src: Path, labs: list[Lab], conf: dict[str, str]) -> list[str]:
    """Every page's source into ``src``; returns the files that changed (the others keep their times)."""
    root = _labs.root()
    site = root / SITE_SOURCES
    wanted: dict[str, str | bytes] = {
        "conf.py": (site / "conf.py").read_bytes(),
        "index.md": home_page((site / "index.md").read_text(encoding="utf-8"), labs),
        "arc.md": arc_page((site / "arc.md").read_text(encoding="utf-8"), labs),
    }
    for path in sorted((site / "_static").rglob("*")):
        if path.is_file():
            wanted[path.relative_to(site).as_posix()] = path.read_bytes()
    for lab in labs:
        wanted[f"{lab.page}.md"] = lab_page(lab, conf)
        for fig in lab.figures:
            wanted[f"figures/{lab.id}/{fig.name}"] = fig.read_bytes()
    for rel in DOC_PAGES:
        wanted[rel] = doc_page(rel, conf)
    # MathJax: the TeX-to-HTML component, its fonts, and the TeX extensions it loads on demand.
    mathjax = mathjax_dir()
    for pattern in ("tex-chtml.js", "output/chtml/fonts/woff-v2/*", "input/tex/extensions/*.js", "ui/*.js"):
        for path in sorted(mathjax.glob(pattern)):
            wanted[f"_static/mathjax/{path.relative_to(mathjax).as_posix()}"] = path.read_bytes()
    changed = [rel for rel, data in wanted.items() if _write(src / rel, data)]
    for path in sorted(src.rglob("*"), reverse=True):  # a page or figure that is gone from the course
        rel = path.relative_to(src).as_posix()
        if path.is_file() and rel not in wanted:
            path.unlink()
            changed.append(f"{rel} (removed)")
    return changed


# ---------------------------------------------------------------------------------------------------
# 3. Sphinx, and the checks


def sphinx(src: Path, out: Path, doctrees: Path) -> None:
    """Sphinx's HTML builder, warnings as errors (all of them reported before it fails)."""
    try:
        from sphinx.cmd.build import build_main
    except ImportError as exc:
        raise CourseError(
            "Sphinx is not installed: run `python -m nox -s site`, or `pip install -e . --group site`"
        ) from exc
    code = build_main(["-b", "html", "-W", "--keep-going", "-q", "-d", str(doctrees), str(src), str(out)])
    if code:
        # Sphinx keeps what it read, warnings and all: the next build would reread nothing and pass.
        shutil.rmtree(doctrees, ignore_errors=True)
        raise CourseError(f"Sphinx failed (exit {code}); its warnings, above, are errors for the course's site")


def published_sources() -> list[Path]:
    """The page sources besides the stubs: docs/ and the hand-written pages."""
    root = _labs.root()
    return [root / rel for rel in DOC_PAGES] + sorted((root / SITE_SOURCES).glob("*.md"))


def build(out: Path = OUT, *, cache: Path = CACHE, check: bool = True, jobs: int = 2, log=print) -> Path:
    """Build the site into ``out`` (``index.html`` at its root) and check it; returns ``out``."""
    from course.staff import sitecheck

    root = _labs.root()
    out, cache = (root / out).resolve(), (root / cache).resolve()
    start = time.perf_counter()
    labs = labs_of(demo_figures(cache / "figures", jobs=jobs, log=log))
    changed = write_sources(cache / "src", labs, settings())
    log(f"{len(changed)} source file(s) changed; Sphinx builds {out}")
    sphinx(cache / "src", out, cache / "doctrees")
    if check:
        if found := sitecheck.problems(out, labs, published=published_sources()):
            raise CourseError(f"the site in {out} has {len(found)} problem(s):\n  " + "\n  ".join(found))
        log(f"checked {len(sitecheck.pages(out))} pages: links, anchors, figures, nothing from outside, no solution")
    log(f"built the site in {time.perf_counter() - start:.1f} s: open {out / 'index.html'}")
    return out
