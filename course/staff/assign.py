"""Generate the student stubs in ``labs/`` from ``solutions/``: the one source of truth.

In a solution file, each piece of student work sits between two marker comments::

    def double(x):
        \"\"\"Twice x.\"\"\"
        # BEGIN SOLUTION
        return x + x
        # END SOLUTION

``course assign`` copies the file to ``labs/`` with every such region replaced by a stub that raises
``NotImplementedError("lab01: double")`` (the lab and the enclosing function, which the grader reads
to report "not attempted"). Everything else (signatures, docstrings, imports, demo code) is copied as
is. A region outside any function names itself: ``# BEGIN SOLUTION name``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from course import labs as _labs
from course.errors import CourseError

BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION(?:[ \t]+(?P<name>\w+))?[ \t]*$")
END = re.compile(r"^[ \t]*# END SOLUTION[ \t]*$")


@dataclass(frozen=True)
class Region:
    lab: str
    function: str
    begin: int  # 1-based line of the BEGIN marker
    end: int  # 1-based line of the END marker
    indent: str


def _enclosing_function(tree: ast.AST, line: int, prefix: str = "") -> str | None:
    """The qualified name (``MLP.__call__``) of the innermost function around ``line``."""
    for node in ast.iter_child_nodes(tree):
        inside = getattr(node, "lineno", 0) <= line <= (getattr(node, "end_lineno", 0) or 0)
        if inside and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return _enclosing_function(node, line, f"{prefix}{node.name}.") or f"{prefix}{node.name}"
        if inside and isinstance(node, ast.ClassDef):
            return _enclosing_function(node, line, f"{prefix}{node.name}.")
    return None


def regions(path: Path) -> list[Region]:
    """The student regions of one solution file, validated."""
    text = path.read_text(encoding="utf-8")
    lab = _labs.lab_id(path.stem)
    tree = ast.parse(text, filename=str(path))
    found, open_at = [], None
    for no, line in enumerate(text.splitlines(), start=1):
        if m := BEGIN.match(line):
            if open_at:
                raise CourseError(f"{path}:{no}: BEGIN SOLUTION inside the region opened at line {open_at[0]}")
            open_at = (no, m)
        elif END.match(line):
            if not open_at:
                raise CourseError(f"{path}:{no}: END SOLUTION without a BEGIN SOLUTION above it")
            begin, m = open_at
            name = m.group("name") or _enclosing_function(tree, begin)
            if not name:
                raise CourseError(f"{path}:{begin}: a region outside a function needs a name: # BEGIN SOLUTION name")
            found.append(Region(lab, name, begin, no, m.group("indent")))
            open_at = None
        elif "BEGIN SOLUTION" in line or "END SOLUTION" in line:
            raise CourseError(f"{path}:{no}: a solution marker must be a comment on a line of its own")
    if open_at:
        raise CourseError(f"{path}:{open_at[0]}: BEGIN SOLUTION is never closed by END SOLUTION")
    return found


def stub_source(path: Path) -> str:
    """The student version of one solution file."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    out, cursor = [], 0
    for r in regions(path):
        out += lines[cursor : r.begin - 1]
        out += [
            f"{r.indent}# YOUR CODE HERE ({r.lab}: {r.function})\n",
            f'{r.indent}raise NotImplementedError("{r.lab}: {r.function}")\n',
        ]
        cursor = r.end
    out += lines[cursor:]
    return "".join(out)


def generated(solutions: Path | None = None) -> dict[str, str]:
    """``{file name: stub text}`` for every lab in ``solutions/``."""
    folder = solutions or _labs.impl_dir("solutions")
    files = sorted(p for p in folder.glob("lab*.py"))
    return {p.name: stub_source(p) for p in files}


def assign(*, check: bool = False, solutions: Path | None = None, labs_dir: Path | None = None) -> list[str]:
    """Write (or with ``check``, compare) ``labs/``; returns the names of stale or written files."""
    if not _labs.has_solutions() and solutions is None:
        raise CourseError("there is no solutions/ folder here (a student bundle?); nothing to generate labs from")
    target = labs_dir or _labs.root() / "labs"
    wanted = generated(solutions)
    changed = []
    for name, text in wanted.items():
        path = target / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            changed.append(name)
            if not check:
                target.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    extra = sorted(p.name for p in target.glob("lab*.py") if p.name not in wanted)
    if extra:
        changed += [f"{name} (no solution file)" for name in extra]
    return changed
