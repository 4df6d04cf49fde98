"""Showing a grading report: a readable summary for the terminal, and Gradescope's results.json."""

from __future__ import annotations

import json
from pathlib import Path

from course.grader.runner import Report

MARKS = {  # each status as the student reads it
    "passed": "PASS",
    "failed": "FAIL",
    "not attempted": "TODO",
    "error": "ERROR",
    "timed out": "TIMEOUT",
    "crashed": "CRASH",
    "skipped": "SKIP",
}


def _pts(x: float) -> str:
    return f"{x:g}"


def render(report: Report, *, titles: dict[str, str] | None = None, verbose: bool = False) -> str:
    """The per-test lines and per-lab points, as the student sees them."""
    titles = titles or {}
    lines = []
    for lab, outcomes in report.by_lab().items():
        earned, possible = sum(o.earned for o in outcomes), sum(o.points for o in outcomes)
        lines.append(f"{lab}  {titles.get(lab, '')}".rstrip() + f"  —  {_pts(earned)}/{_pts(possible)} points")
        for o in outcomes:
            pts = f"{_pts(o.earned)}/{_pts(o.points)}"
            lines.append(f"  {MARKS[o.status]:<7} {pts:>5}  {o.name}")
            if o.status != "passed" and o.message:
                rows = o.message.splitlines()
                lines += [f"                 {row}" for row in (rows if verbose else rows[:6])]
        lines.append("")
    lines += [f"NOTE: {note}" for note in report.notes] + ([""] if report.notes else [])
    for problem in report.problems:
        lines.append(f"PROBLEM: {problem}\n")
    counts = {}
    for o in report.outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    lines.append(f"Total: {_pts(report.score)}/{_pts(report.max_score)} points ({summary or 'no tests'})")
    return "\n".join(lines)


def gradescope(report: Report) -> dict:
    """Gradescope's autograder results format: top-level ``score`` and one entry per test."""
    tests = []
    for lab_number, (lab, outcomes) in enumerate(report.by_lab().items(), start=1):
        for test_number, o in enumerate(outcomes, start=1):
            tests.append(
                {
                    "name": f"{o.lab}: {o.name}",
                    "number": f"{lab_number}.{test_number}",
                    "score": o.earned,
                    "max_score": o.points,
                    "status": "passed" if o.status == "passed" else "failed",
                    "output": o.status if not o.message else f"{o.status}: {o.message}",
                    "execution_time": round(o.duration, 3),
                    "tags": [lab, *o.tags],
                    "visibility": o.visibility,
                }
            )
    result = {
        "score": report.score,
        "max_score": report.max_score,
        "execution_time": round(report.duration, 3),
        "tests": tests,
    }
    if report.problems or report.notes:  # what stopped files from being graded; what was done to the submission
        result["output"] = "\n\n".join([*report.problems, *(f"Note: {n}" for n in report.notes)])
    return result


def write_gradescope(report: Report, path: Path) -> None:
    """Write results.json atomically, so a crashed run never leaves half a file for the uploader."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(gradescope(report), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
