"""Notebooks back into lab modules, for grading: a notebook's code cells, in order, as one module.

The grader converts a submitted ``.ipynb`` (:func:`convert_for_grading`), and ``course.check`` the
cells a kernel has run (:func:`module_source`). Every cell keeps its lines where they were, so that a
message can name the cell and its line (:mod:`course.grader.locations`). The setup cell, shell and
magic lines are left out, each with a note; ``check()`` calls stay, and do nothing while graded.
"""

from __future__ import annotations

import ast
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from course import labs as _labs
from course.errors import CourseError
from course.grader.locations import Cell, Source

_PARSING = threading.Lock()


def parse(source: str | bytes) -> ast.Module:
    """``ast.parse`` one source at a time: CPython 3.11's parser is not thread-safe ("AST constructor
    recursion depth mismatch"), and a class is graded in threads (:func:`course.grader.batch.grade_class`)."""
    with _PARSING:
        return ast.parse(source)


SETUP_MARKER = "# course setup:"  # first line of a notebook's setup cell (course.staff.notebooks); never graded
_KEEP_CELL_MAGICS = {"time", "timeit", "capture"}  # their body is Python; other cell magics' is not


@dataclass
class Converted:
    lab: str
    name: str  # file name for the module: labNN_topic.py
    source: str
    notes: list[str] = field(default_factory=list)
    cells: list = field(default_factory=list)  # course.grader.locations.Cell for each cell kept


def _drop_magics(source: str, where: str, notes: list[str]) -> str | None:
    """``source`` with IPython shell/magic lines made comments or ``pass`` (its lines stay where they were);
    None for a cell that is not Python."""
    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        magic = lines[0].lstrip()[2:].split()[0] if lines[0].lstrip()[2:].split() else ""
        if magic not in _KEEP_CELL_MAGICS:
            notes.append(f"{where}: dropped the whole cell (a %%{magic} cell is not Python)")
            return None
        notes.append(f"{where}: dropped the line {lines[0].strip()!r}")
        lines[0] = f"# (dropped for grading) {lines[0].strip()}"
    out = []
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith(("!", "%")) or re.match(r"^\w+\s*=\s*[!%]", stripped):
            notes.append(f"{where}: dropped the line {stripped!r}")
            out.append(f"{line[: len(line) - len(stripped)]}pass  # (dropped for grading) {stripped}")
        else:
            out.append(line)
    return "\n".join(out)


def module_source(
    cells: list[str] | list[tuple[str, str]], *, origin: str = "the notebook", skip_unparsable: bool = False
) -> tuple[str, list[str], list]:
    """A lab module from code cells, each under a ``# %%`` line; notes on what was dropped; where each cell is.

    ``cells`` are sources, or ``(label, source)`` pairs naming each cell as the student knows it
    (``"Cell In[14]"``); the third result is a :class:`course.grader.locations.Cell` per cell kept,
    so that a line of the module can be shown as a line of its cell: every cell keeps its lines where
    they were. Dropped: the setup cell, shell and magic lines (``!pip``, ``%matplotlib``), each left as
    ``pass`` or a comment. ``from __future__`` imports move to the top (a module allows them nowhere
    else). Calls of :func:`check` stay: while the module is graded, ``check`` does nothing. With
    ``skip_unparsable`` (the kernel's history, where a cell with a syntax error changed nothing),
    cells that are not valid Python are left out.
    """
    notes: list[str] = []
    kept, future, where = [], [], []
    for n, cell in enumerate(cells, 1):
        label, source = cell if isinstance(cell, tuple) else (f"cell {n}", cell)
        if source.lstrip().startswith(SETUP_MARKER) or not source.strip():
            continue
        source = _drop_magics(source, f"{origin}, {label}", notes)
        if source is None:
            continue
        body = []
        for line in source.splitlines():
            if line.startswith("from __future__ import"):
                future.append(line)
                line = f"pass  # {line} (moved to the top of the module)"
            body.append(line)
        source = "\n".join(body)
        if skip_unparsable:
            try:
                parse(source)
            except SyntaxError as exc:
                notes.append(f"{origin}, {label}: left out, it is not valid Python ({exc.msg}, line {exc.lineno})")
                continue
        kept.append((label, source))
    lines = list(dict.fromkeys(future))
    for label, source in kept:
        lines += ["", "# %%"] if lines else ["# %%"]
        where.append(Cell(len(lines) + 1, label))
        lines += source.splitlines()
    return "\n".join(lines) + "\n", notes, where


def _course_metadata(nb) -> dict:
    """The notebook's ``course`` metadata (``{"lab": ..., "source": ...}``), or ``{}`` where it is missing
    or of another type: a notebook is the student's file, and its metadata may hold anything."""
    meta = nb.get("metadata") if isinstance(nb, dict) else None
    course = meta.get("course") if isinstance(meta, dict) else None
    return course if isinstance(course, dict) else {}


def notebook_lab(path: Path, nb=None) -> str | None:
    """Which lab a notebook is: its ``course`` metadata, else a ``labNN`` in its file name."""
    lab = _course_metadata(nb).get("lab")
    if isinstance(lab, (str, int)) and not isinstance(lab, bool):
        try:
            return _labs.lab_id(str(lab))
        except CourseError:  # metadata that names no lab: the file's name may
            pass
    m = re.search(r"(lab\d{2})", path.stem, re.I)
    return m.group(1).lower() if m else None


def code_cells(nb, name: str) -> list[tuple[str, str]]:
    """``(label, source)`` of each code cell, in order; a :class:`CourseError` naming the cell where a
    cell is not one (a damaged file: a source that is a number, a cell that is not an object)."""
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise CourseError(f"{name} is not a notebook: it has no list of cells")
    out = []
    for n, cell in enumerate(cells, 1):
        if not isinstance(cell, dict):
            raise CourseError(f"{name}, cell {n} is damaged (not a cell at all); {_RESAVE}")
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            source = "".join(source)  # the on-disk form: a list of lines
        if not isinstance(source, str):
            raise CourseError(
                f"{name}, cell {n}: its code is {_kind(source)}, not text, so the file is damaged; {_RESAVE}"
            )
        out.append((_label(cell, n), source))
    return out


_RESAVE = "open it in Jupyter (or Colab) and save it again, or hand in the lab's .py file instead"


def convert(path: Path, lab: str | None = None) -> Converted:
    """One ``.ipynb`` file as a lab module; a :class:`CourseError` saying why for a file that is not one.

    Which lab it is: its metadata, else its name, else ``lab`` (the lab the student named: a notebook may
    be called anything, ``Untitled.ipynb`` included)."""
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # a truncated download, or not a notebook at all
        raise CourseError(f"{path.name} is not a readable notebook: {_reason(exc)}; {_RESAVE}") from exc
    named = notebook_lab(path, nb)
    if named is None and lab is None:
        raise CourseError(
            f"{path.name}: which lab is this? Name the file labNN_….ipynb (e.g. lab01_perceptron.ipynb), "
            "or name the lab: course grade lab01 --impl " + path.name
        )
    lab = named or _labs.lab_id(lab)
    source, notes, where = module_source(code_cells(nb, path.name), origin=path.name)
    notes += out_of_order(nb, path.name)
    stem = _course_metadata(nb).get("source")
    stem = Path(stem).stem if isinstance(stem, str) else ""
    name = f"{stem}.py" if _labs.is_lab_file(f"{stem}.py") and stem.startswith(lab) else f"{lab}_notebook.py"
    return Converted(lab, name, source, notes, where)


def out_of_order(nb: dict, name: str) -> list[str]:
    """One note where a saved notebook's cells last ran in another order than top to bottom: the cells that
    ran after a cell below them (their ``In [n]`` says so), for the grader runs them as saved, in order.
    ``nb``'s cells are those :func:`code_cells` has read (a list of objects)."""
    counts = [
        (_label(cell, n), cell["execution_count"])
        for n, cell in enumerate(nb["cells"], 1)
        if cell.get("cell_type") == "code" and isinstance(cell.get("execution_count"), int)
    ]
    later = [label for i, (label, n) in enumerate(counts) if any(below < n for _, below in counts[i + 1 :])]
    if not later:
        return []
    return [
        f"{name}: its cells ran out of order ({', '.join(later)} last ran after a cell below "
        f"{'it' if len(later) == 1 else 'them'}); graded as saved, top to bottom, as Restart & Run All runs it"
    ]


def _reason(exc: BaseException) -> str:
    """Why a file is not a notebook, in words (the reader's own message names its internals)."""
    if type(exc).__name__ == "NotJSONError" or isinstance(exc, (ValueError, UnicodeError)) and "JSON" in str(exc):
        return "it is not a notebook file at all (a truncated download, or another kind of file named .ipynb?)"
    return "its contents are not laid out as a Jupyter notebook's"


def _kind(value) -> str:
    """What a JSON value is, in words."""
    kinds = {bool: "true/false", int: "a number", float: "a number", type(None): "empty (null)", list: "a list"}
    return kinds.get(type(value), "an object" if isinstance(value, dict) else type(value).__name__)


def _label(cell, position: int) -> str:
    """A saved notebook's cell as Jupyter shows it: ``Cell In[14]`` if it ran, else its position."""
    count = cell.get("execution_count")
    return f"cell {position} (In [{count}])" if isinstance(count, int) else f"cell {position}"


def has_notebooks(impl: str | os.PathLike) -> bool:
    path = Path(impl)
    return path.suffix == ".ipynb" or (path.is_dir() and any(path.glob("*.ipynb")))


def convert_for_grading(
    source: Path, dest: Path, wanted: list[str] | None = None
) -> tuple[list[str], list[str], dict[str, Source], dict[str, str]]:
    """Write the lab module of each notebook in ``source`` (a folder, or one ``.ipynb``) into ``dest``.

    Only the labs ``wanted`` (all when None). A lab that also has a ``labNN_*.py`` in the folder is
    graded from that file. Returns the labs converted, notes for the report, for each module written
    (by file name) how messages name its lines (:class:`course.grader.locations.Source`), and for each
    lab whose notebook could not be read, why (its tests then score 0 with that reason).
    """

    wanted = {_labs.lab_id(x) for x in wanted} if wanted else None
    source = Path(source)
    files = [source] if source.is_file() else sorted(source.glob("*.ipynb"))
    outside = [p for p in files if source.is_dir() and not p.resolve().is_relative_to(source.resolve())]
    files = [p for p in files if p not in outside]  # a link out of the submission is never read
    present = (
        {_labs.lab_id(p.stem) for p in source.glob("lab*.py") if _labs.is_lab_file(p)} if source.is_dir() else set()
    )
    labs, notes, shown, unreadable = [], [], {}, {}
    notes += [f"{p.name}: not graded; it is a link to a file outside your submission" for p in outside]
    # One notebook of any name is the lab the student named, where they named one (course grade lab03 --impl X).
    named = next(iter(wanted)) if wanted is not None and len(wanted) == 1 and len(files) == 1 else None
    for path in files:
        try:
            conv = convert(path, named)
        except CourseError as exc:  # that lab's tests say why; the other notebooks are graded as usual
            lab = notebook_lab(path)
            if lab is not None and (wanted is None or lab in wanted) and lab not in present:
                unreadable.setdefault(lab, str(exc))
            elif lab is None:
                notes.append(f"not graded: {exc}")
            continue
        if wanted is not None and conv.lab not in wanted:
            continue
        if conv.lab in present:
            notes.append(f"{path.name}: not graded; {conv.lab} is graded from its .py file in the same folder")
            continue
        if conv.lab in labs:
            notes.append(f"{path.name}: not graded; another notebook in the folder is {conv.lab}")
            continue
        (dest / conv.name).write_text(conv.source, encoding="utf-8")
        shown[conv.name] = Source(path.name, conv.cells)
        labs.append(conv.lab)
        notes += conv.notes
        notes.append(f"{path.name}: graded as {conv.lab} (its code cells, in order; the demo does not run)")
    return labs, notes, shown, {lab: why for lab, why in unreadable.items() if lab not in labs}
