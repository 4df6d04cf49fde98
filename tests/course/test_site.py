"""The site's generator and its checks, without Sphinx: each check is shown a site that fails it.

The real build, and Chromium reading it, are end-to-end runs: tests/e2e/test_site_build.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from course import labs
from course.errors import CourseError
from course.staff import site, sitecheck

pytestmark = pytest.mark.solutions_only
ROOT = labs.root()


def _page(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<!doctype html><html><head><title>t</title></head><body>{body}</body></html>", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------
# links, anchors, and nothing from outside


def test_a_site_whose_links_all_resolve_has_no_link_problem(tmp_path):
    _page(tmp_path, "index.html", '<a href="labs/a.html#part">a</a> <a href="https://example.org/">out</a>')
    _page(tmp_path, "labs/a.html", '<h2 id="part">Part</h2><a href="../index.html">home</a><img src="../x.png">')
    (tmp_path / "x.png").write_bytes(b"png")
    assert sitecheck.link_problems(tmp_path) == []


@pytest.mark.parametrize(
    "body, expected",
    [
        ('<a href="nowhere.html">x</a>', "no such file nowhere.html"),
        ('<a href="index.html#nothing">x</a>', "no element with id 'nothing'"),
        ('<script src="https://cdn.example.org/x.js"></script>', "loads from outside the site"),
        ('<link rel="stylesheet" href="//fonts.example.org/f.css">', "loads from outside the site"),
        ('<img src="http://example.org/badge.svg">', "loads from outside the site"),
        ('<div style="background: url(https://example.org/b.png)"></div>', "loads from outside the site"),
        ('<a href="../../etc/passwd">x</a>', "points outside the site's folder"),
    ],
    ids=["missing-page", "missing-anchor", "outside-script", "outside-css", "outside-image", "outside-style", "escape"],
)
def test_each_kind_of_broken_reference_is_found(tmp_path, body, expected):
    _page(tmp_path, "index.html", body)
    found = sitecheck.link_problems(tmp_path)
    assert len(found) == 1 and expected in found[0], found


def test_a_style_sheet_that_imports_a_font_from_outside_is_found(tmp_path):
    _page(tmp_path, "index.html", "")
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "s.css").write_text("@import 'https://fonts.example.org/css?family=X';", encoding="utf-8")
    found = sitecheck.link_problems(tmp_path)
    assert len(found) == 1 and "s.css" in found[0] and "outside" in found[0], found


# ---------------------------------------------------------------------------------------------------
# no solution code


def test_the_solutions_have_distinctive_lines_and_the_stubs_hold_none():
    lines = sitecheck.distinctive_lines(published=site.published_sources())
    assert len(lines) >= 50  # every lab has solution regions
    assert {where.split()[0] for where in lines.values()} == set(labs.lab_files("solutions"))
    stubs = "\n".join(" ".join(p.read_text(encoding="utf-8").split()) for p in labs.lab_files("labs").values())
    assert [line for line in lines if line in stubs] == []


def test_a_solution_line_is_found_in_highlighted_code_and_in_any_text_file(tmp_path):
    lines = sitecheck.distinctive_lines(published=site.published_sources())
    line, where = next(iter(lines.items()))
    words = line.split(" ")
    # As Pygments writes it: every token in a span of its own, spaces between, entities for < > &.
    highlighted = " ".join(f'<span class="n">{w.replace("&", "&amp;").replace("<", "&lt;")}</span>' for w in words)
    _page(tmp_path, "clean.html", "<pre>nothing here</pre>")
    _page(tmp_path, "labs/page.html", f"<div class='highlight'><pre>    {highlighted}\n</pre></div>")
    (tmp_path / "_sources").mkdir()
    (tmp_path / "_sources" / "page.md.txt").write_text(f"```python\n        {line}\n```\n", encoding="utf-8")
    found = sitecheck.leak_problems(tmp_path, lines)
    assert sorted(f.split(" holds")[0] for f in found) == ["_sources/page.md.txt", "labs/page.html"], found
    assert all(where in f for f in found)


# ---------------------------------------------------------------------------------------------------
# figures, and the pages' sources


def _lab(tmp_path: Path, figures: list[bytes]) -> site.Lab:
    paths = []
    for i, data in enumerate(figures):
        paths.append(tmp_path / "cache" / f"fig{i}.png")
        paths[-1].parent.mkdir(parents=True, exist_ok=True)
        paths[-1].write_bytes(data)
    return site.Lab("lab01", "lab01_perceptron", "Lab 01 — the perceptron", "The perceptron.", tuple(paths))


def test_a_lab_page_must_show_every_figure_of_its_demo(tmp_path):
    lab = _lab(tmp_path, [b"first figure", b"second figure"])
    out = tmp_path / "out"
    _page(out, "index.html", '<a href="labs/lab01_perceptron.html">lab</a>')
    _page(out, "labs/lab01_perceptron.html", '<img src="../_images/fig0.png">')
    (out / "_images").mkdir()
    shutil.copy(lab.figures[0], out / "_images" / "fig0.png")
    assert sitecheck.figure_problems(out, [lab]) == ["labs/lab01_perceptron.html does not show lab01's figure fig1.png"]
    shutil.copy(lab.figures[1], out / "_images" / "fig1.png")
    _page(out, "labs/lab01_perceptron.html", '<img src="../_images/fig0.png"><img src="../_images/fig1.png">')
    assert sitecheck.figure_problems(out, [lab]) == []
    (out / "labs" / "lab01_perceptron.html").unlink()
    assert sitecheck.figure_problems(out, [lab]) == ["lab01 has no page labs/lab01_perceptron.html"]


def test_the_figure_key_ignores_the_text_and_follows_the_code(tmp_path):
    source = labs.lab_files("solutions")["lab01"].read_text(encoding="utf-8")
    original = tmp_path / "a" / "lab01_perceptron.py"
    original.parent.mkdir()
    original.write_text(source, encoding="utf-8")
    prose = tmp_path / "b" / "lab01_perceptron.py"
    prose.parent.mkdir()
    prose.write_text(source.replace("# ## 1. The model", "# ## 1. The model, in other words"), encoding="utf-8")
    code = tmp_path / "c" / "lab01_perceptron.py"
    code.parent.mkdir()
    code.write_text(source.replace("def demo(out: Path)", "def demo(out: Path, unused=0)"), encoding="utf-8")
    assert prose.read_text() != source and code.read_text() != source
    assert site.figure_key(original) == site.figure_key(prose)
    assert site.figure_key(original) != site.figure_key(code)


def test_a_lab_page_is_the_stub_never_the_solution(tmp_path):
    lab = _lab(tmp_path, [b"figure"])
    conf = {"repository": "someone/a-fork", "branch": "spring"}
    page = site.lab_page(lab, conf)
    assert page.count("\n# Lab 01") == 1 or page.split("---\n")[-1].lstrip().startswith("# Lab 01")
    assert 'raise NotImplementedError("lab01: sigmoid")' in page
    assert "# BEGIN SOLUTION" not in page
    lines = sitecheck.distinctive_lines(published=site.published_sources())
    assert [line for line in lines if line in " ".join(page.split())] == []
    # The buttons point at the fork's notebook, and the figure follows the demo's code.
    assert (
        "https://colab.research.google.com/github/someone/a-fork/blob/spring/notebooks/lab01_perceptron.ipynb" in page
    )
    assert "https://mybinder.org/v2/gh/someone/a-fork/spring?labpath=notebooks%2Flab01_perceptron.ipynb" in page
    assert page.index("def demo(") < page.index("../figures/lab01/fig0.png")


def test_the_arc_names_a_figure_the_demo_draws(tmp_path):
    lab = _lab(tmp_path, [b"figure"])
    text = "# Arc\n\n```{lab-figure} lab01 fig0\n```\n"
    assert "figures/lab01/fig0.png" in site.arc_page(text, [lab])
    with pytest.raises(CourseError, match="does not draw; it draws: fig0"):
        site.arc_page(text.replace("fig0", "perceptron_xor"), [lab])
    with pytest.raises(CourseError, match="tells no step of lab01"):
        site.arc_page("# Arc\n", [lab])


def test_docs_links_to_files_that_are_not_pages_point_at_github():
    conf = {"repository": "someone/a-fork", "branch": "spring"}
    staff = site.doc_page("docs/staff.md", conf)
    assert "](../CONTRIBUTING.md#adding-a-lab)" in staff  # pages of the site: kept
    assert "](grading.md#a-time-budget-per-lab)" in staff
    grading = site.doc_page("docs/grading.md", conf)
    assert "](https://github.com/someone/a-fork/blob/spring/README.md#students)" in grading
    perf = site.doc_page("docs/performance.md", conf)
    assert "](https://github.com/someone/a-fork/blob/spring/benchmarks/README.md)" in perf
    assert "](../benchmarks/README.md)" not in perf
