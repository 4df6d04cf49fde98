"""Homework in groups: groups formed from the roster, within each section, the same for the same seed.

    course groups roster.csv --size 3 --seed 7 --out groups.csv [--avoid previous.csv]

The roster is the one ``course gradebook`` reads (``folder``, then Canvas' five columns). The groups
file is that roster with a ``group`` column filled in (``group-01``, ...): hand it to ``course
gradebook --roster`` and ``course similarity --roster`` as it is, and name each group's submission
folder by its group. A section of n students makes n // size groups (one when n < size), their sizes
differing by at most one, so nobody works alone unless the section has one student. ``--avoid``
reads an earlier groups file and keeps students who were in one group then apart where it can; the
pairs it could not separate are counted and listed.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from course.errors import CourseError
from course.staff.gradebook import GROUP_COLUMN, ROSTER_COLUMNS, read_roster

SWAP_ROUNDS = 200  # passes of the swap search that separates earlier partners; each pass tries every swap once


@dataclass
class Groups:
    groups: dict[str, list[str]]  # group name -> member folders, in roster order within each group
    section: dict[str, str]  # group name -> its section
    together_again: list[tuple[str, str]] = field(default_factory=list)  # earlier partners it could not keep apart


def read_groups(path: Path) -> dict[str, list[str]]:
    """``{group: [folder, ...]}`` from a CSV with ``folder`` and ``group`` columns (a groups file, a roster)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            absent = [c for c in ("folder", GROUP_COLUMN) if c not in (reader.fieldnames or [])]
            if absent:
                raise CourseError(
                    f"{path}: no column {', '.join(map(repr, absent))}; a groups file has folder and group "
                    "columns (the --out of `course groups`)"
                )
            groups: dict[str, list[str]] = {}
            for row in reader:
                folder, group = (row["folder"] or "").strip(), (row[GROUP_COLUMN] or "").strip()
                if folder and group:
                    groups.setdefault(group, []).append(folder)
    except FileNotFoundError:
        raise CourseError(f"{path}: no such file") from None
    return groups


def _pairs(members: list[str]) -> set[frozenset[str]]:
    return {frozenset(p) for p in combinations(members, 2)}


def _sizes(n: int, size: int) -> list[int]:
    """n students in n // size groups (at least one), the sizes differing by at most one."""
    count = max(1, n // size)
    return [n // count + (i < n % count) for i in range(count)]


def _clashes(groups: list[list[str]], before: set[frozenset[str]]) -> int:
    return sum(len(_pairs(g) & before) for g in groups)


def _separate(groups: list[list[str]], before: set[frozenset[str]]) -> list[list[str]]:
    """Swap students between groups while a swap lowers the number of earlier partners grouped again."""
    if not before:
        return groups
    for _ in range(SWAP_ROUNDS):
        improved = False
        for gi, gj in combinations(range(len(groups)), 2):
            for a in range(len(groups[gi])):
                for b in range(len(groups[gj])):
                    old = _clashes([groups[gi], groups[gj]], before)
                    if not old:
                        continue
                    groups[gi][a], groups[gj][b] = groups[gj][b], groups[gi][a]
                    if _clashes([groups[gi], groups[gj]], before) < old:
                        improved = True
                    else:
                        groups[gi][a], groups[gj][b] = groups[gj][b], groups[gi][a]
        if not improved:
            break
    return groups


def form_groups(
    sections: dict[str, list[str]], *, size: int, seed: int, avoid: dict[str, list[str]] | None = None
) -> Groups:
    """Groups of about ``size`` within each section, shuffled by ``seed`` (the same seed, the same groups).

    Args:
      sections: ``{section: [folder, ...]}`` in roster order.
      avoid: earlier groups, ``{group: [folder, ...]}``: their members are kept apart where the
        section allows it.
    """
    if size < 2:
        raise CourseError(f"--size {size}: a group has at least 2 students")
    before = set().union(*(_pairs(m) for m in (avoid or {}).values()))
    rng = random.Random(seed)
    out = Groups({}, {})
    number = 0
    for section in sorted(sections):
        students = list(sections[section])
        rng.shuffle(students)
        groups, start = [], 0
        for n in _sizes(len(students), size):
            groups.append(students[start : start + n])
            start += n
        order = {s: i for i, s in enumerate(sections[section])}
        for members in _separate(groups, before):
            number += 1
            name = f"group-{number:02d}"
            out.groups[name] = sorted(members, key=order.__getitem__)
            out.section[name] = section
            out.together_again += sorted(tuple(sorted(p)) for p in _pairs(members) & before)
    return out


def write_groups(roster: Path, out: Path, *, size: int, seed: int, avoid: Path | None = None) -> Groups:
    """Form groups from ``roster`` and write it to ``out`` with the ``group`` column filled in."""
    people = read_roster(roster)
    sections: dict[str, list[str]] = {}
    for folder, row in people.items():
        sections.setdefault(row["Section"], []).append(folder)
    result = form_groups(sections, size=size, seed=seed, avoid=read_groups(avoid) if avoid else None)
    group_of = {m: g for g, members in result.groups.items() for m in members}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([*ROSTER_COLUMNS, GROUP_COLUMN])
        for folder, row in people.items():
            w.writerow([folder, *(row[c] for c in ROSTER_COLUMNS[1:]), group_of[folder]])
    return result
