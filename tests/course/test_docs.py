"""The README and docs/ hold together: every relative link resolves, every `python -m course` command parses,
every file and folder a page names (in a tree of the repository, or as `course/...py` in its text) exists."""

import re
import shlex
from pathlib import Path

import pytest

from course import labs
from course.cli import build_parser

ROOT = labs.root()
PAGES = [p for p in [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))] if p.exists()]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lstrip("#").strip()).lower()
    return re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text))


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # not the comments in code
    return {_slug(line) for line in text.splitlines() if line.startswith("#")}


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return [m.group(1) for m in LINK.finditer(text) if not re.match(r"[a-z]+:", m.group(1))]


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_relative_link_resolves(page):
    broken = []
    for link in _links(page):
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{link}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{link}: no heading #{anchor} in {path.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def _commands(page: Path) -> list[str]:
    """The ``python -m course ...`` lines of the page's shell blocks, without their comments."""
    found, shell = [], None
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("```"):
            shell = None if shell is not None else line.strip()[3:] in ("", "bash", "sh", "console")
        elif shell:
            line = line.split(" #")[0].strip()
            if line.startswith("python -m course "):
                found.append(line)
    return found


COMMANDS = [(p, c) for p in PAGES for c in _commands(p)]


def test_the_pages_show_course_commands():
    assert len(COMMANDS) >= 10, COMMANDS


@pytest.mark.parametrize("page, command", COMMANDS, ids=[c for _, c in COMMANDS])
def test_every_course_command_shown_parses(page, command):
    words = shlex.split(command)[3:]
    try:
        build_parser().parse_args(words)
    except SystemExit as exc:
        pytest.fail(f"{page.name}: `{command}` does not parse (argparse exit {exc.code})")


# ---------------------------------------------------------------------------------------------------
# the layout: every path a page names exists

# A tree is a plain code block (no language): each line starts with names (`course/grader/`, or `runner.py
# zygote.py`, two spaces apart), then two spaces and its description. A folder alone on its line is a heading:
# the names on the more indented lines below it are inside it. Names are files with one of these suffixes, or
# folders (ending in /); a line that starts otherwise (a description's second line, `│`, a dotted module name)
# names nothing.
NAME = re.compile(r"[\w.*-]+(?:/[\w.*-]+)*(?:/|\.(?:py|md|ipynb|toml|txt|yml|yaml|json|cfg|sh))")
# In the text: a path of the repository's own folders in backticks, e.g. `course/grader/zygote.py`.
INLINE = re.compile(r"`((?:course|tests|labs|solutions|notebooks|benchmarks|binder|docs|\.github)/[^`\s]*)`")


def _named_paths(text: str) -> list[tuple[int, str, str]]:
    """(line number, line, path from the repository's root) for each path the page names."""
    found, block, headings = [], None, []  # block: None outside code, True in a tree, False in other code
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("```"):
            block, headings = (line.strip() in ("```", "```text")) if block is None else None, []
            continue
        found += [(number, line, m.group(1)) for m in INLINE.finditer(line)]
        if not block or not line.strip():
            continue
        names = []
        for word in re.split(r"\s{2,}", line.strip()):
            if not NAME.fullmatch(word):
                break
            names.append(word)
        if not names:
            continue
        indent = len(line) - len(line.lstrip())
        while headings and headings[-1][0] >= indent:
            headings.pop()
        parent = headings[-1][1] if headings else ""
        found += [(number, line, parent + name) for name in names]
        if len(names) == 1 and names[0].endswith("/"):
            headings.append((indent, parent + names[0]))
    return found


def _exists(path: str) -> bool:
    if "NN" in path:  # a template: labNN_topic.py, test_labNN_*.py
        return True
    if "*" in path:
        return any(ROOT.glob(path))
    return (ROOT / path).is_dir() if path.endswith("/") else (ROOT / path).exists()


def _missing(text: str, page: str) -> list[str]:
    """One message per path the page names that is not in the repository: the page, the line, the path."""
    return [
        f"{page}:{number}: {path} does not exist (the line: {line.strip()!r})"
        for number, line, path in _named_paths(text)
        if not _exists(path)
    ]


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_path_a_page_names_exists(page):
    missing = _missing(page.read_text(encoding="utf-8"), page.relative_to(ROOT).as_posix())
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("page", ["docs/architecture.md", "docs/staff.md"])
def test_a_tree_names_every_module_of_each_course_folder_it_lists(page):
    """A tree that lists the modules of a folder of course/ lists them all: a new module is on the map."""
    named = {path for _, _, path in _named_paths((ROOT / page).read_text(encoding="utf-8"))}
    folders = {path.rpartition("/")[0] for path in named if path.startswith("course/") and path.endswith(".py")}
    assert {"course", "course/grader", "course/staff"} <= folders, f"{page}: its tree was not read: {sorted(named)}"
    modules = {p.relative_to(ROOT).as_posix() for f in folders for p in (ROOT / f).glob("*.py")}
    unnamed = sorted(m for m in modules if not m.rpartition("/")[2].startswith("__") and m not in named)
    assert not unnamed, f"{page}: its tree does not name {', '.join(unnamed)}"


# Small pages with a wrong name, each with the path the check must report: it can fail, and where it should.
WRONG = {
    "a module that moved": ("```\ncourse/     the library\n  assign.py  stubs\n```", 3, "course/assign.py"),
    "a folder that is gone": ("```\ncourse/\n  testing/  pytest plugin\n```", 3, "course/testing/"),
    "a misspelt name in a row": ("```\ncourse/grader/\n  runner.py  zygot.py  warm\n```", 3, "course/grader/zygot.py"),
    "a name under its heading": ("```\ncourse/\n  grader/\n    labs.py  x\n```", 4, "course/grader/labs.py"),
    "a nested folder under its heading": ("```\ntests/\n  lab/  graded tests\n```", 3, "tests/lab/"),
    "a path in the text": ("The assertions are in\n`course/grader/testng.py`.\n", 2, "course/grader/testng.py"),
    "a file as a folder": ("```\ncourse/labs.py/  the registry\n```", 2, "course/labs.py/"),
}


@pytest.mark.parametrize("text, line, path", WRONG.values(), ids=list(WRONG))
def test_a_wrong_name_is_reported_with_its_page_line_and_path(text, line, path):
    missing = _missing(text, "docs/example.md")
    assert len(missing) == 1 and missing[0].startswith(f"docs/example.md:{line}: {path} does not exist"), missing


def test_a_name_resolves_under_its_folder_heading():
    text = (
        "```\ncourse/            the library\n  labs.py  errors.py  the registry\n  grader/            the autograder\n"
        "                     a description's second line: runner (collect) + sandbox\n    runner.py  zygote.py\n"
        "  staff/\n    site.py\nsolutions/         complete labs\nnoxfile.py\n```\n"
        "```bash\npython -m nox -s tests  # not a tree\n```\nIn the text: `course/grader/wire.py`, `tests/labs/test_labNN_*.py`."
    )
    assert [path for _, _, path in _named_paths(text)] == [
        "course/",
        "course/labs.py",
        "course/errors.py",
        "course/grader/",
        "course/grader/runner.py",
        "course/grader/zygote.py",
        "course/staff/",
        "course/staff/site.py",
        "solutions/",
        "noxfile.py",
        "course/grader/wire.py",
        "tests/labs/test_labNN_*.py",
    ]
    assert _missing(text, "docs/example.md") == []
