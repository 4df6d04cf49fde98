"""The README and docs/ hold together: every relative link resolves, every `python -m course` command parses."""

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
