"""Gradebooks an LMS imports, from a class graded by ``course grade --submissions``: Canvas' CSV or the plain one.

    course gradebook grades/ --roster roster.csv --format canvas --out canvas.csv

``grades/`` holds ``STUDENT/results.json`` for each submission (Gradescope's format, one entry per
test, named ``"lab01: ..."``). The roster maps each submission's folder name to the LMS's student: a
CSV with the columns ``folder``, and Canvas' ``Student``, ``ID``, ``SIS User ID``, ``SIS Login ID``,
``Section`` (copy the last five from a Canvas gradebook export), and optionally ``group``: a
group's one submission, in a folder named by the group, is credited to each of its members (``course
groups`` writes such a roster). Nobody is dropped in silence: a graded folder not in the roster, a
roster student with no submission, a folder that was never graded and a group member who also handed
in alone are printed and listed in a file beside the gradebook.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from course.errors import CourseError
from course.grader.batch import lab_points, write_csv, write_plain_gradebook

CANVAS_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
ROSTER_COLUMNS = ["folder", *CANVAS_COLUMNS]
GROUP_COLUMN = "group"  # optional in a roster: the group whose folder holds the student's work
# Canvas reads a row whose first cell is this as each assignment's points, not as a student.
POINTS_POSSIBLE = "Points Possible"
FORMATS = ("canvas", "plain")


@dataclass(frozen=True)
class Grades:
    per_lab: dict[str, float]  # points earned in each lab graded
    score: float
    max_score: float


@dataclass
class Graded:
    students: dict[str, Grades]  # by folder name
    possible: dict[str, float]  # each lab's points possible, in lab order
    not_graded: list[str] = field(default_factory=list)  # folders with no results.json (an interrupted run)


@dataclass
class Gradebook:
    path: Path
    problems: Path  # the unmatched students, one row each (a header only when there are none)
    unknown: list[str]  # graded, but not in the roster: not in a Canvas gradebook
    missing: list[str]  # in the roster, but no submission graded: blank (or 0 with missing_as_zero)
    not_graded: list[str]  # a folder in the graded class with no results.json
    credited: dict[str, str] = field(default_factory=dict)  # member folder -> the group whose grade they got
    twice: list[tuple[str, str]] = field(default_factory=list)  # (member, group): graded alone and with the group


def read_graded(folder: Path) -> Graded:
    """Each student's points per lab from ``folder/STUDENT/results.json``, and each lab's points possible."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CourseError(f"{folder}: no such folder (the --out of `course grade --submissions`)")
    students: dict[str, Grades] = {}
    possible: dict[str, float] = {}
    not_graded = []
    for entry in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        path = entry / "results.json"
        if not path.exists():
            not_graded.append(entry.name)
            continue
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
            earned, lab_max = lab_points(results)
            grades = Grades(earned, float(results["score"]), float(results["max_score"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CourseError(
                f"{path} is not a results.json of `course grade` ({exc!r}); grade the class again"
            ) from None
        for lab, points in lab_max.items():  # the same for everyone; one not graded at all has no tests
            possible[lab] = max(possible.get(lab, 0.0), points)
        students[entry.name] = grades
    if not students and not not_graded:
        raise CourseError(f"{folder} holds no graded students (STUDENT/results.json); run `course grade --submissions`")
    return Graded(students, dict(sorted(possible.items())), not_graded)


def read_roster(path: Path) -> dict[str, dict[str, str]]:
    """``{folder: {"Student": ..., "ID": ..., ..., "group": ...}}`` from the roster CSV, in its order.

    ``group`` is ``""`` for a student in no group, and for everyone when the roster has no such column.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: a roster saved by Excel starts with a BOM
            reader = csv.DictReader(f)
            absent = [c for c in ROSTER_COLUMNS if c not in (reader.fieldnames or [])]
            if absent:
                raise CourseError(
                    f"roster {path}: no column {', '.join(map(repr, absent))}; its header must be "
                    f"{','.join(ROSTER_COLUMNS)} (the last five as in a Canvas gradebook export)"
                )
            roster: dict[str, dict[str, str]] = {}
            grouped = GROUP_COLUMN in (reader.fieldnames or [])
            for line, row in enumerate(reader, start=2):
                folder = (row["folder"] or "").strip()
                if not folder:
                    raise CourseError(f"roster {path}, line {line}: no folder (the student's submission folder name)")
                if folder in roster:
                    raise CourseError(f"roster {path}, line {line}: folder {folder!r} is there twice; keep one row")
                if not any((row[c] or "").strip() for c in ("ID", "SIS User ID", "SIS Login ID")):
                    raise CourseError(
                        f"roster {path}, line {line} ({folder}): Canvas finds a student by ID, SIS User ID or "
                        "SIS Login ID, and this row has none; copy them from a Canvas gradebook export"
                    )
                roster[folder] = {c: (row[c] or "").strip() for c in CANVAS_COLUMNS}
                roster[folder][GROUP_COLUMN] = (row[GROUP_COLUMN] or "").strip() if grouped else ""
    except FileNotFoundError:
        raise CourseError(f"roster {path}: no such file") from None
    clash = sorted({r[GROUP_COLUMN] for r in roster.values()} & set(roster))
    if clash:
        raise CourseError(
            f"roster {path}: {clash[0]!r} is both a student's folder and a group; rename the group, "
            "since a group's submission folder is named by it"
        )
    return roster


def roster_groups(roster: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    """``{group: [member folder, ...]}`` from a roster read by :func:`read_roster`, in its order."""
    groups: dict[str, list[str]] = {}
    for folder, row in roster.items():
        if row[GROUP_COLUMN]:
            groups.setdefault(row[GROUP_COLUMN], []).append(folder)
    return groups


def _pts(x: float) -> str:
    return f"{x:g}"


def write_gradebook(
    graded_dir: Path,
    out: Path,
    *,
    roster: Path | None = None,
    format: str = "canvas",
    missing_as_zero: bool = False,
    columns: dict[str, str] | None = None,
) -> Gradebook:
    """Write the gradebook ``out`` and, beside it, ``out``'s name + ``.problems.csv``; return what was unmatched.

    Args:
      format: ``canvas`` (Canvas' five student columns, one column per lab, a Points Possible row; no
        total: Canvas computes its own, and a total column would be imported as one more assignment)
        or ``plain`` (student, one column per lab, total, max, as ``course grade --submissions`` writes).
      roster: needed for ``canvas``; with ``plain``, orders the rows and finds who is missing.
      missing_as_zero: a roster student with no submission gets 0 in every lab, not a blank cell
        (which Canvas leaves as it was).
      columns: a lab's column name in the gradebook (default the lab: ``lab01``), e.g. Canvas'
        ``"Lab 1 (12345)"`` to match an existing assignment by its id.

    With a roster that has a ``group`` column, a graded folder named by a group is its members' work:
    each member gets its grade. A member who also handed in alone gets the group's grade and is
    listed as *twice*, with both scores, for the staff to decide.
    """
    if format not in FORMATS:
        raise CourseError(f"--format {format!r}: use one of {', '.join(FORMATS)}")
    if format == "canvas" and roster is None:
        raise CourseError("a Canvas gradebook needs --roster (folder -> Canvas' Student, ID, SIS ... columns)")
    graded = read_graded(graded_dir)
    people = read_roster(roster) if roster is not None else None
    book = _match(graded, people)
    labs = list(graded.possible)
    names = [(columns or {}).get(lab, lab) for lab in labs]
    blank = "0" if missing_as_zero else ""

    def empty(student: str) -> str:  # no grade: 0 only for a student who handed nothing in, and only if asked
        return "" if student in book.stalled else blank

    def points(student: str) -> list[str]:
        g = book.students.get(student)
        return [empty(student)] * len(labs) if g is None else [_pts(g.per_lab.get(lab, 0.0)) for lab in labs]

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if format == "canvas":
        possible = [POINTS_POSSIBLE, "", "", "", "", *(_pts(graded.possible[lab]) for lab in labs)]
        rows = [[*(row[c] for c in CANVAS_COLUMNS), *points(student)] for student, row in people.items()]
        write_csv(out, [[*CANVAS_COLUMNS, *names], possible, *rows])
    else:
        order = [*(people or {}), *(s for s in book.students if people is None or s not in people)]
        rows = []
        for student in order:
            g = book.students.get(student)
            total = [empty(student)] * 2 if g is None else [_pts(g.score), _pts(g.max_score)]
            rows.append([student, *points(student), *total])
        write_plain_gradebook(out, names, rows)
    problems = _write_problems(out, book, graded, people, format=format, blank=blank)
    return Gradebook(out, problems, book.unknown, book.missing, book.not_graded, book.credited, book.twice)


@dataclass
class _Matched:
    """A graded class matched to its roster: each student's grades (a group's credited to its members),
    and who could not be matched."""

    students: dict[str, Grades]
    credited: dict[str, str]  # member -> the group whose grade they got
    twice: list[tuple[str, str]]  # (member, group): graded alone and with the group
    unknown: list[str]
    missing: list[str]
    not_graded: list[str]
    stalled: set[str]  # no grade because grading did not finish (their own folder's, or their group's)


def _match(graded: Graded, people: dict[str, dict[str, str]] | None) -> _Matched:
    groups = roster_groups(people) if people is not None else {}
    own = dict(graded.students)  # what each folder handed in; a group's folder is credited to its members
    credited, twice = {}, []
    for group, members in groups.items():
        if group in own:
            for member in members:
                if member in own:
                    twice.append((member, group))
                credited[member] = group
    students = {**own, **{m: graded.students[g] for m, g in credited.items()}}
    students = {s: g for s, g in students.items() if s not in groups}
    unknown = [s for s in graded.students if people is not None and s not in people and s not in groups]
    stalled = set(graded.not_graded)  # a group's folder not graded: its members are not missing either
    stalled |= {m for g, members in groups.items() if g in graded.not_graded for m in members}
    missing = [s for s in people or {} if s not in students and s not in stalled]
    return _Matched(students, credited, twice, unknown, missing, list(graded.not_graded), stalled)


def _write_problems(out: Path, book: _Matched, graded: Graded, people, *, format: str, blank: str) -> Path:
    """``out``'s name + ``.problems.csv``: a row per student the gradebook could not match, and why."""
    rows = [["problem", "folder", "Student", "what happened"]]
    where = "not in this gradebook" if format == "canvas" else "in this gradebook, without a name"
    for s in book.unknown:
        rows.append(["unknown", s, "", f"graded, but not in the roster: {where}; add a row for it to the roster"])
    for s in book.missing:
        rows.append(["missing", s, people[s]["Student"], f"in the roster, no submission: {blank or 'blank'}"])
    for s in book.not_graded:
        student = people[s]["Student"] if people and s in people else ""
        rows.append(["not graded", s, student, "no results.json: grade the class again (it resumes)"])
    for member, group in book.twice:
        alone, together = graded.students[member].score, graded.students[group].score
        rows.append(
            [
                "twice",
                member,
                people[member]["Student"],
                f"handed in alone ({_pts(alone)} points) and with {group} ({_pts(together)} points): the "
                f"gradebook has {group}'s; decide which counts, then fix that row or remove one submission",
            ]
        )
    return write_csv(out.with_name(out.name + ".problems.csv"), rows)
