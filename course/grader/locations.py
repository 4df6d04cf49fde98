"""Where the student's code is, as the student knows it: their own file and line, or a notebook's cell.

The grader runs private copies (``/tmp/course-grade-…/impl/lab01_perceptron.py``), and a notebook is
graded as one module made of its code cells. Neither is anything the student wrote or can open, so
every place a message names goes through :class:`Locations`: a copy of ``labs/lab02_combining.py``
reads ``labs/lab02_combining.py:133``, and line 58 of a notebook's module reads
``lab01_perceptron.ipynb, Cell In[14], line 3`` (IPython's own wording), or ``Cell In[14], line 3``
for the cells a notebook's kernel has run.

The grader writes the table as JSON (:meth:`Locations.write`) next to the copies, and the trusted test
process loads it (``--locations``). Without one (plain ``pytest --impl labs``) files are shown as
they are.
"""

from __future__ import annotations

import bisect
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Cell:
    """One notebook cell in a module made of cells: its first line there, and how the student knows it."""

    start: int  # the module's line that holds the cell's first line
    label: str  # "Cell In[14]", or "cell 7" for a cell never run


@dataclass
class Source:
    """A file the grader runs, and what to show for it."""

    shown: str  # the student's own path, or the notebook's name ("" for a kernel's own cells)
    cells: list[Cell] = field(default_factory=list)  # empty: a plain file, lines as they are

    def place(self, lineno: int) -> str:
        if not self.cells:
            return f"{self.shown}:{lineno}"
        i = max(0, bisect.bisect_right([c.start for c in self.cells], lineno) - 1)
        cell = self.cells[i]
        where = f"{cell.label}, line {max(1, lineno - cell.start + 1)}"
        return f"{self.shown}, {where}" if self.shown else where


class Locations:
    """Paths the grader runs -> what the student reads (see the module's docstring)."""

    def __init__(self, sources: dict[str, Source] | None = None, folders: dict[str, str] | None = None) -> None:
        self.sources = dict(sources or {})
        self.folders = dict(folders or {})  # a copied folder (the tests') -> the name to show for it

    # -- where the table lives --------------------------------------------------------------------

    def write(self, path: Path) -> None:
        data = {
            "sources": {
                k: {"shown": s.shown, "cells": [[c.start, c.label] for c in s.cells]} for k, s in self.sources.items()
            },
            "folders": self.folders,
        }
        Path(path).write_text(json.dumps(data), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> "Locations":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        sources = {
            k: Source(v["shown"], [Cell(int(a), str(b)) for a, b in v.get("cells", [])])
            for k, v in data.get("sources", {}).items()
        }
        return cls(sources, data.get("folders", {}))

    # -- questions ----------------------------------------------------------------------------------

    def is_student(self, filename: str) -> bool:
        """Whether ``filename`` (as a traceback names it) is the student's code."""
        if self.sources:
            return filename in self.sources
        from course.labs import is_lab_file

        return is_lab_file(filename)

    def notebook_of(self, lab: str) -> str | None:
        """How the student knows ``lab``'s notebook (its name; ``""`` for a kernel's own cells), or None where
        ``lab`` is graded from a file."""
        for path, source in self.sources.items():
            if source.cells and os.path.basename(path).startswith(lab):
                return source.shown
        return None

    def place(self, filename: str, lineno: int) -> str:
        """``filename:lineno`` as the student knows it."""
        source = self.sources.get(filename)
        if source is not None:
            return source.place(int(lineno))
        return f"{self._folder(filename)}:{lineno}"

    def text(self, message: str) -> str:
        """``message`` with every path (and line) of ours that it names written as the student knows it."""
        if not isinstance(message, str):
            return message
        for path in sorted(self.sources, key=len, reverse=True):
            source, name = self.sources[path], re.escape(os.path.basename(path))
            esc = re.escape(path)
            message = re.sub(rf'"{esc}", line (\d+)', lambda m: source.place(int(m.group(1))), message)
            message = re.sub(rf"{esc}:(\d+)", lambda m: source.place(int(m.group(1))), message)
            message = re.sub(rf"\({name}, line (\d+)\)", lambda m: f"({source.place(int(m.group(1)))})", message)
            message = message.replace(path, source.shown or "this notebook")
        for inside, shown in sorted(self.folders.items(), key=lambda kv: -len(kv[0])):
            message = message.replace(inside, shown)
        return message

    def _folder(self, filename: str) -> str:
        for inside, shown in sorted(self.folders.items(), key=lambda kv: -len(kv[0])):
            if filename.startswith(inside):
                return shown + filename[len(inside) :]
        return filename


_current = Locations()


def use(locations: Locations) -> None:
    """Make ``locations`` the table of this (trusted test) process."""
    global _current
    _current = locations


def current() -> Locations:
    return _current


def shown_path(path: Path) -> str:
    """A student's own file as they would type it: relative to the working folder when inside it."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
