"""Showing a grading report: a readable summary for the terminal, and Gradescope's results.json.

results.json's feedback is Markdown (``"output_format": "md"``): each test that did not pass says what
was checked, what was expected and what came back, the place in the student's file and the hint, with
values and code in fenced blocks. It is laid out from the messages the tests already write
(:mod:`course.grader.testing`'s ``"WHAT: expected X, got Y; ..."``, the grader's ``at``/``hint:`` lines).
A failed comparison's picture (:mod:`course.grader.picture`) is saved beside the work for the shell
(:func:`save_pictures`); results.json says where to see it, since Gradescope's spec does not promise that
its output shows images.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from course.grader.model import Outcome, Report, Status


def _pts(x: float) -> str:
    return f"{x:g}"


def render(
    report: Report, *, titles: dict[str, str] | None = None, verbose: bool = False, pictures: dict | None = None
) -> str:
    """The per-test lines and per-lab points, as the student sees them; ``pictures`` (a test's nodeid -> the
    path its picture was saved at, :func:`save_pictures`) named on its test's line."""
    titles, pictures = titles or {}, pictures or {}
    lines = []
    for lab, outcomes in report.by_lab().items():
        earned, possible = sum(o.earned for o in outcomes), sum(o.points for o in outcomes)
        lines.append(f"{lab}  {titles.get(lab, '')}".rstrip() + f"  —  {_pts(earned)}/{_pts(possible)} points")
        not_run = 0
        for o in outcomes:
            pts = f"{_pts(o.earned)}/{_pts(o.points)}"
            saved = f"  (picture: {pictures[o.nodeid]})" if o.nodeid in pictures else ""
            lines.append(f"  {o.status.mark:<7} {pts:>5}  {o.name}{saved}")
            not_run += o.status == Status.NOT_RUN
            if o.status != Status.PASSED and o.message and not_run <= 1:  # the budget's reason once a lab
                rows = o.message.splitlines()
                # A failed check is shown whole (its expected and what came back: a bounded length); an
                # error's first lines say what it is.
                whole = verbose or o.status == Status.FAILED
                lines += [f"                 {row}" for row in (rows if whole else rows[:6])]
                lines += [f"                 ({o.picture_note})"] if o.picture_note else []
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
    """Gradescope's autograder results format: top-level ``score`` and one entry per test, feedback in
    Markdown; ``extra_data`` (not shown to students) records the timeout and each lab's time budget."""
    tests = []
    for lab_number, (lab, outcomes) in enumerate(report.by_lab().items(), start=1):
        for test_number, o in enumerate(outcomes, start=1):
            tests.append(
                {
                    "name": f"{o.lab}: {o.name}",
                    "number": f"{lab_number}.{test_number}",
                    "score": o.earned,
                    "max_score": o.points,
                    "status": "passed" if o.status == Status.PASSED else "failed",  # Gradescope's two
                    "output": markdown(o),
                    "output_format": "md",
                    "execution_time": round(o.duration, 3),
                    "tags": [lab, *o.tags],
                    "visibility": o.visibility,
                    "extra_data": {"student_seconds": round(o.student_seconds, 3), "charged_s": round(o.charged, 3)},
                }
            )
    result = {
        "score": report.score,
        "max_score": report.max_score,
        "execution_time": round(report.duration, 3),
        "output_format": "md",
        "test_output_format": "md",
        "tests": tests,
        "extra_data": {
            "isolation": report.isolation,
            "timeout_s": report.timeout,
            "budget_s": report.budget,  # null: graded without a budget
            "budget_spent_s": report.budget_spent(),
            "problems": list(report.problems),  # what stopped tests from being graded (a class's gradebook lists them)
        },
    }
    spent = [
        f"{lab}: its tests that did not pass used its time budget of {_pts(report.budget)} s, so "
        f"{sum(o.status == Status.NOT_RUN for o in outcomes)} of its tests were not run"
        for lab, outcomes in report.by_lab().items()
        if report.budget is not None and any(o.status == Status.NOT_RUN for o in outcomes)
    ]
    # What stopped files from being graded; what was done to the submission; what the budget cut short.
    parts = [*map(_problem, report.problems), *(f"**Note:** {_escape(n)}" for n in [*report.notes, *spent])]
    if parts:
        result["output"] = "\n\n".join(parts)
    return result


# ---------------------------------------------------------------------------------------------------
# Markdown

_EXPECTED = re.compile(r"(?P<what>.+?): expected (?P<want>.+?), got (?P<got>.+?)(?:; (?P<detail>.+))?", re.S)
_WHERE = re.compile(r"(?P<place>.+? in \S+): (?P<code>.+)")


def markdown(o: Outcome) -> str:
    """One test's feedback in Markdown: its status, then what was checked, expected and got (or the
    error, and where in the student's file), then the hints."""
    head = f"**{o.status.title}**"
    if o.status == Status.PASSED or not o.message:
        return head
    lines = o.message.splitlines()
    hints = [line.strip()[len("hint:") :].strip() for line in lines if line.strip().startswith("hint:")]
    places = [line.strip()[len("at ") :] for line in lines if line.startswith("  at ")]
    body = "\n".join(line for line in lines if not line.strip().startswith("hint:") and not line.startswith("  at "))
    parts = [head]
    found = _EXPECTED.fullmatch(body.strip()) if o.status == Status.FAILED else None
    if found:
        parts += [
            f"**Checked:** {_code(found['what'].strip())}",
            "**Expected:**\n\n" + _fence(found["want"]),
            "**Got:**\n\n" + _fence(found["got"]),
        ]
        if found["detail"]:
            detail = found["detail"].strip()
            parts.append(_escape(detail[:1].upper() + detail[1:]) + ".")
    elif o.status in (Status.FAILED, Status.ERROR):  # an assertion's own words, or the exception the code raised
        parts.append(_fence(body.strip()))
    else:  # a sentence from the grader: timed out, crashed, not attempted, not run
        parts.append(_escape(body.strip()))
    for place in places:
        where = _WHERE.fullmatch(place)
        parts.append(
            f"**Where:** {_code(where['place'])}\n\n{_fence(where['code'], 'python')}"
            if where
            else f"**Where:** {_escape(place)}"
        )
    parts += [f"**Hint:** {_escape(hint, code=True)}" for hint in hints]  # the grader's words, `code` kept
    if o.picture:  # Gradescope's spec does not say that its Markdown shows images (docs/grading.md)
        parts.append(f"*{_escape(PICTURE_ELSEWHERE.format(lab=o.lab))}*")
    elif o.picture_note:
        parts.append(f"*{_escape(o.picture_note[:1].upper() + o.picture_note[1:])}.*")
    return "\n\n".join(parts)


PICTURE_ELSEWHERE = (
    "A picture of this comparison (expected | got | difference) was drawn, but Gradescope does not show "
    "pictures here: grade {lab} yourself (python -m course grade {lab}, or check() in its notebook) to see it."
)


def _problem(text: str) -> str:
    """A problem that stopped tests from being graded; pytest's own words (if any) fenced apart."""
    said, _, tail = text.partition("pytest said:\n")
    return f"**Problem:** {_escape(said.strip())}" + (f"\n\n{_fence(tail)}" if tail.strip() else "")


def _backticks(text: str) -> int:
    """The longest run of backticks in ``text``: a fence or a code span must be longer."""
    return max((len(run) for run in re.findall(r"`+", text)), default=0)


def _fence(text: str, language: str = "text") -> str:
    """``text`` in a fenced code block, whatever backticks it holds."""
    fence = "`" * max(3, _backticks(text) + 1)
    return f"{fence}{language}\n{text.strip(chr(10))}\n{fence}"


def _code(text: str) -> str:
    """``text`` as inline code, whatever backticks it holds."""
    longest = _backticks(text)
    ticks = "`" * (longest + 1)
    return f"{ticks} {text} {ticks}" if longest else f"`{text}`"


def _escape(text: str, *, code: bool = False) -> str:
    """Plain text that Markdown shows as written (no stray emphasis, links or HTML); ``code``: keep `spans`."""
    return re.sub(r"([\\*_{}\[\]<>#|~])" if code else r"([\\`*_{}\[\]<>#|~])", r"\\\1", text)


# ---------------------------------------------------------------------------------------------------
# Pictures, saved beside the work

FEEDBACK = Path(".course") / "feedback"  # under the project, ignored by git


def feedback_folder(work: Path, *, places: list[Path]) -> Path:
    """Where the shell saves pictures of ``work`` (a folder of lab files, or a notebook): ``.course/feedback``
    in the first of ``places`` (the course's checkout, the current folder) that holds the work, else beside it."""
    work = Path(work).resolve()
    base = next((p.resolve() for p in places if work.is_relative_to(p.resolve())), None)
    return (base or (work if work.is_dir() else work.parent)) / FEEDBACK


def save_pictures(report: Report, folder: Path) -> dict[str, Path]:
    """Each picture of ``report`` as ``folder/<lab>/<test>.png``; the picture a test graded now has not (it
    passes, or fails without one) is removed. Returns each saved picture's path by nodeid."""
    saved = {}
    for o in report.outcomes:
        path = Path(folder) / o.lab / (re.sub(r"[^\w.\-]+", "_", o.name).strip("_")[:150] + ".png")
        try:
            if o.picture:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(o.picture)
                saved[o.nodeid] = path
            else:
                path.unlink(missing_ok=True)
        except OSError:  # a folder we may not write: the test's message stands without its picture
            continue
    return saved


def write_gradescope(report: Report, path: Path) -> None:
    """Write results.json atomically, so a crashed run never leaves half a file for the uploader."""
    write_results(gradescope(report), path)


def write_results(results: dict, path: Path) -> None:
    """Write a results.json already made (:func:`gradescope`, perhaps on another machine) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
