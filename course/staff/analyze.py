"""What a class struggles with: item analysis of a graded class, as CSVs and one self-contained page.

    course analyze grades/ --out analysis/

``grades/`` is the ``--out`` of ``course grade --submissions`` (``STUDENT/results.json`` each). Written:

- ``tests.csv``: per lab and test, its points, how many students it was graded for, how many ended in
  each status (PASS, FAIL, ERROR, TIMEOUT, CRASH, TODO, NOT RUN, SKIP), the pass rate, the mean points
  and the mean seconds it took;
- ``messages.csv``: per test, the most common messages of the students it did not pass for, grouped
  once numbers, arrays, shapes and paths are replaced by placeholders, with a count and one student's own
  message as an example;
- ``index.html``: a score histogram per lab, the tests ranked by pass rate, a students x tests grid
  (hardest tests left, students with the fewest points on top) and the time spent per test. Figures
  are inline SVG: no scripts, no links out; the page opens offline.

A test's status is read from results.json's feedback, whose first line is the status's title
(:class:`course.grader.model.Status`); Gradescope's own ``status`` field says only passed or failed.
"""

from __future__ import annotations

import csv
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from course.errors import CourseError
from course.grader import Status

MESSAGES_PER_TEST = 5  # messages.csv keeps this many of each test's most common messages
_BY_TITLE = {f"**{status.title}**": status for status in Status}


@dataclass(frozen=True)
class Item:
    """One test's result for one student, as results.json records it."""

    lab: str
    test: str  # the test's name without its lab: "test_step[zero]"
    points: float  # possible
    earned: float
    status: Status
    seconds: float  # execution_time: the test's wall-clock time
    message: str  # the feedback as plain text, one line, without the status or where in the code


@dataclass
class Class:
    """Every graded student's tests, by student folder; and what could not be read."""

    students: dict[str, list[Item]]
    not_graded: list[str] = field(default_factory=list)  # folders with no results.json, or with no tests in it
    problems: dict[str, str] = field(default_factory=dict)  # why a student's submission was not graded at all


def status_of(output: str) -> str:
    """A test's status from its results.json feedback, whose first line is the status's title."""
    head = output.strip().split("\n", 1)[0].strip()
    if head not in _BY_TITLE:
        raise ValueError(f"feedback starts with {head[:60]!r}, not a status such as **{Status.PASSED.title}**")
    return _BY_TITLE[head]


def message_of(output: str) -> str:
    """The feedback as one line of plain text: its status heading, its Where sections and hints dropped."""
    paragraphs = re.split(r"\n\s*\n", output.strip())[1:]  # [0] is the status
    kept, skip_code = [], False
    for par in paragraphs:
        if par.startswith("**Where:**") or par.startswith("**Hint:**"):
            skip_code = par.startswith("**Where:**")  # its code line follows in a fence of its own
            continue
        if skip_code and par.lstrip().startswith("```"):
            skip_code = False
            continue
        skip_code = False
        par = re.sub(r"^`{3,}\w*$", "", par, flags=re.M)  # fences
        par = re.sub(r"\*\*(\w+):\*\*", r"\1:", par)  # **Checked:** -> Checked:
        par = re.sub(r"\\([\\`*_{}\[\]<>#|~])", r"\1", par)  # Markdown's escapes
        kept.append(par)
    return " ".join(" ".join(kept).split())


_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\w.~-]*/)+[\w.-]+")  # /tmp/x/lab01.py, ./a/b, C:/x; not a lone word
_SHAPE = re.compile(r"\((?:\s*\d+\s*,)+\s*(?:\d+\s*)?\)|\(\)")  # (3, 2), (3,), ()
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])|\bnan\b|\binf\b")


_ARRAY = re.compile(r"\[\s*(?:<n>|<array>|\.\.\.)(?:[\s,]+(?:<n>|<array>|\.\.\.))*\s*\]")  # [<n>, <n>, ...]


def pattern(message: str) -> str:
    """``message`` with paths, shapes, arrays and numbers replaced by ``<path>``, ``<shape>``, ``<array>``,
    ``<n>``, so that two students' messages of one mistake group together (numpy pads an array's numbers
    to one width, and its length follows the inputs: an array is one placeholder)."""
    out = _PATH.sub("<path>", message)
    out = _SHAPE.sub("<shape>", out)
    out = _NUMBER.sub("<n>", out)
    while True:  # [[<n>, <n>], [<n>, <n>]]: the inner arrays first
        out, n = _ARRAY.subn("<array>", out)
        if not n:
            return out


def read_class(folder: Path) -> Class:
    """Every ``folder/STUDENT/results.json`` of a graded class, test by test."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CourseError(f"{folder}: no such folder (the --out of `course grade --submissions`)")
    klass = Class({})
    for entry in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        path = entry / "results.json"
        if not path.exists():
            klass.not_graded.append(entry.name)
            continue
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
            tests = [_test(t) for t in results["tests"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise CourseError(
                f"{path} is not a results.json of `course grade` ({exc}); grade the class again"
            ) from None
        if not tests:  # nothing could be graded (not a zip, ...): results.json says why
            klass.not_graded.append(entry.name)
            klass.problems[entry.name] = " ".join(results.get("output", "no tests graded").split())
            continue
        klass.students[entry.name] = tests
    if not klass.students:
        raise CourseError(f"{folder} holds no graded students (STUDENT/results.json); run `course grade --submissions`")
    return klass


def _test(entry: dict) -> Item:
    lab, _, test = entry["name"].partition(": ")
    output = entry.get("output", "")
    return Item(
        lab=lab,
        test=test,
        points=float(entry["max_score"]),
        earned=float(entry["score"]),
        status=status_of(output),
        seconds=float(entry.get("execution_time", 0.0)),
        message=message_of(output),
    )


@dataclass
class ItemStats:
    lab: str
    test: str
    points: float
    counts: dict[str, int]  # by status, every status present (0 where none)
    earned: list[float]
    seconds: list[float]

    @property
    def students(self) -> int:
        return sum(self.counts.values())

    @property
    def pass_rate(self) -> float:
        return self.counts[Status.PASSED] / self.students

    @property
    def mean_points(self) -> float:
        return sum(self.earned) / len(self.earned)

    @property
    def mean_seconds(self) -> float:
        return sum(self.seconds) / len(self.seconds)


def item_stats(klass: Class) -> list[ItemStats]:
    """Per lab and test, in the order the grader ran them: each status's count, points and times."""
    stats: dict[tuple[str, str], ItemStats] = {}
    for tests in klass.students.values():
        for t in tests:
            s = stats.setdefault((t.lab, t.test), ItemStats(t.lab, t.test, t.points, dict.fromkeys(Status, 0), [], []))
            s.points = max(s.points, t.points)
            s.counts[t.status] += 1
            s.earned.append(t.earned)
            s.seconds.append(t.seconds)
    return sorted(stats.values(), key=lambda s: s.lab)  # stable: each lab's tests stay in their order


@dataclass(frozen=True)
class MessageGroup:
    lab: str
    test: str
    status: str
    pattern: str
    students: tuple[str, ...]  # every student whose message has this pattern, in folder order
    example: str  # the first student's own message


def message_groups(klass: Class, *, per_test: int = MESSAGES_PER_TEST) -> list[MessageGroup]:
    """Each test's most common messages among the students it did not pass for, most students first."""
    found: dict[tuple[str, str, str, str], list[tuple[str, str]]] = {}
    for student, tests in klass.students.items():
        for t in tests:
            if t.status != Status.PASSED:
                found.setdefault((t.lab, t.test, t.status, pattern(t.message)), []).append((student, t.message))
    by_test: dict[tuple[str, str], list[MessageGroup]] = {}
    for (lab, test, status, pat), who in found.items():
        group = MessageGroup(lab, test, status, pat, tuple(s for s, _ in who), who[0][1])
        by_test.setdefault((lab, test), []).append(group)
    order = {(s.lab, s.test): n for n, s in enumerate(item_stats(klass))}
    out = []
    for key in sorted(by_test, key=order.__getitem__):
        groups = sorted(by_test[key], key=lambda g: (-len(g.students), g.status, g.pattern))
        out += groups[:per_test]
    return out


def _pts(x: float) -> str:
    return f"{x:g}"


TESTS_HEADER = [
    "lab",
    "test",
    "points",
    "students",
    *(s.mark for s in Status),
    "pass_rate",
    "mean_points",
    "mean_seconds",
]
MESSAGES_HEADER = ["lab", "test", "status", "students", "message", "example_student", "example"]


def write_tests_csv(stats: list[ItemStats], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(TESTS_HEADER)
        for s in stats:
            w.writerow(
                [
                    s.lab,
                    s.test,
                    _pts(s.points),
                    s.students,
                    *(s.counts[status] for status in Status),
                    f"{s.pass_rate:.3f}",
                    f"{s.mean_points:.3f}",
                    f"{s.mean_seconds:.3f}",
                ]
            )
    return path


def write_messages_csv(groups: list[MessageGroup], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(MESSAGES_HEADER)
        for g in groups:
            w.writerow([g.lab, g.test, g.status.mark, len(g.students), g.pattern, g.students[0], g.example])
    return path


@dataclass
class Analysis:
    klass: Class
    stats: list[ItemStats]
    messages: list[MessageGroup]
    tests_csv: Path | None = None
    messages_csv: Path | None = None
    html: Path | None = None


def analyze(graded: Path, out: Path | None = None, *, per_test: int = MESSAGES_PER_TEST) -> Analysis:
    """Read a graded class; with ``out``, write ``tests.csv``, ``messages.csv`` and ``index.html`` there."""
    klass = read_class(graded)
    result = Analysis(klass, item_stats(klass), message_groups(klass, per_test=per_test))
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        result.tests_csv = write_tests_csv(result.stats, out / "tests.csv")
        result.messages_csv = write_messages_csv(result.messages, out / "messages.csv")
        result.html = write_html(result, out / "index.html")
    return result


# ---------------------------------------------------------------------------------------------------
# The page: inline SVG figures, no scripts

# A chart's palette: a colour of its own for each status, so that the grid tells them all apart (a
# notebook's Status.colour says only good, bad or slow).
COLORS = {
    Status.PASSED: "#3a9d5d",
    Status.FAILED: "#d9534f",
    Status.ERROR: "#8e44ad",
    Status.TIMED_OUT: "#e67e22",
    Status.CRASHED: "#2c3e50",
    Status.NOT_ATTEMPTED: "#d0d0d0",
    Status.NOT_DEFINED: "#e8e8e8",
    Status.NOT_RUN: "#f1c40f",
    Status.SKIPPED: "#ffffff",
}
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1300px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { padding: 0.2em 0.5em; border-bottom: 1px solid #ddd; text-align: left; }
td:first-child { max-width: 26em; overflow-wrap: anywhere; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.legend span { display: inline-block; margin-right: 1.2em; }
.legend i { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.3em; vertical-align: -0.1em;
  border: 1px solid #999; }
.figures { display: flex; flex-wrap: wrap; gap: 2em; }
svg text { font-family: system-ui, sans-serif; font-size: 11px; fill: #222; }
.msg { font-family: ui-monospace, monospace; font-size: 12px; }
"""


def _svg(width: float, height: float, body: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" role="img" '
        f'aria-label="{html.escape(label)}">{"".join(body)}</svg>'
    )


def _test_rows(ranked: list[ItemStats]) -> str:
    """The page's table of every test: its points, students, a count per status, pass rate, means."""
    e, rows = html.escape, []
    for s in ranked:
        counts = "".join(f'<td class="num">{s.counts[st] or ""}</td>' for st in Status)
        rows.append(
            f"<tr><td>{e(s.lab)}: {e(s.test)}</td><td class='num'>{_pts(s.points)}</td>"
            f"<td class='num'>{s.students}</td>{counts}<td class='num'>{s.pass_rate:.0%}</td>"
            f"<td class='num'>{s.mean_points:.2f}</td><td class='num'>{s.mean_seconds:.2f}</td></tr>"
        )
    return "".join(rows)


def _message_rows(groups: list[MessageGroup]) -> str:
    """The page's table of the most common messages, one row a group."""
    e = html.escape
    return "".join(
        f"<tr><td>{e(g.lab)}: {e(g.test)}</td><td>{g.status.mark}</td><td class='num'>{len(g.students)}</td>"
        f"<td class='msg'>{e(g.pattern[:300])}</td><td>{e(g.students[0])}</td></tr>"
        for g in groups
    )


def histogram_svg(lab: str, scores: list[float], possible: float, *, bins: int = 10) -> str:
    """Students per score band (tenths of the lab's points), as vertical bars."""
    counts = [0] * bins
    for s in scores:
        counts[min(bins - 1, int(bins * s / possible)) if possible else 0] += 1
    w, h, left, bottom, top = 360, 210, 30, 34, 34  # top: room for the title and the tallest bar's count
    bar = (w - left - 10) / bins
    peak = max(counts) or 1
    body = [f'<text x="{left}" y="14" font-weight="600">{html.escape(lab)}: students per score</text>']
    for i, c in enumerate(counts):
        bh = (h - bottom - top) * c / peak
        x, y = left + i * bar, h - bottom - bh
        body.append(f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{bh:.1f}" fill="#4a78b5"/>')
        if c:
            body.append(f'<text x="{x + bar / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle">{c}</text>')
    for i in range(0, bins + 1, 2):
        x = left + i * bar
        body.append(
            f'<text x="{x:.1f}" y="{h - bottom + 14}" text-anchor="middle">{_pts(round(possible * i / bins, 1))}</text>'
        )
    body.append(f'<line x1="{left}" y1="{h - bottom}" x2="{w - 10}" y2="{h - bottom}" stroke="#888"/>')
    body.append(f'<text x="{(w + left) / 2}" y="{h - 4}" text-anchor="middle">points of {_pts(possible)}</text>')
    return _svg(w, h, body, f"{lab} score histogram")


def bars_svg(rows: list[tuple[str, float, str]], *, title: str, maximum: float, unit: str) -> str:
    """Horizontal bars, one row each: ``(label, value, text shown after the bar)``."""
    label_w, bar_w, row_h = 430, 320, 18
    h = 26 + row_h * len(rows)
    body = [f'<text x="0" y="14" font-weight="600">{html.escape(title)}</text>']
    for i, (label, value, text) in enumerate(rows):
        y = 24 + i * row_h
        width = bar_w * value / maximum if maximum else 0
        body.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end">{html.escape(label)}</text>')
        body.append(f'<rect x="{label_w}" y="{y + 2}" width="{width:.1f}" height="{row_h - 5}" fill="#4a78b5"/>')
        body.append(f'<text x="{label_w + width + 4:.1f}" y="{y + 12}">{html.escape(text)}</text>')
    return _svg(label_w + bar_w + 80, h, body, f"{title} ({unit})")


def grid_svg(klass: Class, stats: list[ItemStats]) -> str:
    """Students x tests, a cell per result coloured by status: the hardest tests left, the weakest students on top."""
    tests = sorted(stats, key=lambda s: (s.pass_rate, -s.points, s.lab))
    total = {st: sum(t.earned for t in ts) / max(1e-9, sum(t.points for t in ts)) for st, ts in klass.students.items()}
    students = sorted(klass.students, key=lambda st: (total[st], st))
    cell, left, top = 16, 150, 190
    w, h = left + cell * len(tests) + 70, top + cell * len(students) + 10
    body = []
    for j, s in enumerate(tests):
        x = left + j * cell + cell / 2 + 4
        label = html.escape(f"{s.lab}: {s.test}"[:34])
        body.append(f'<text transform="translate({x:.1f},{top - 6}) rotate(-60)">{label}</text>')
    for i, st in enumerate(students):
        y = top + i * cell
        by_test = {(t.lab, t.test): t for t in klass.students[st]}
        body.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{html.escape(st[:22])}</text>')
        for j, s in enumerate(tests):
            t = by_test.get((s.lab, s.test))
            fill = COLORS[t.status] if t else "#ffffff"
            tip = f"{st} · {s.lab}: {s.test} · {t.status.mark if t else 'not graded'}"
            body.append(
                f'<rect x="{left + j * cell}" y="{y}" width="{cell - 1}" height="{cell - 1}" fill="{fill}" '
                f'stroke="#bbb" stroke-width="0.5"><title>{html.escape(tip)}</title></rect>'
            )
        body.append(f'<text x="{left + cell * len(tests) + 6}" y="{y + 12}">{total[st]:.0%}</text>')
    return _svg(w, h, body, "students by tests")


def write_html(result: Analysis, path: Path) -> Path:
    """One page, no scripts or links out: histograms, pass rates, the grid, the time per test, the messages."""
    e = html.escape
    klass, stats = result.klass, result.stats
    labs: dict[str, float] = {}
    for s in stats:
        labs[s.lab] = labs.get(s.lab, 0.0) + s.points
    histograms = []
    for lab, possible in labs.items():
        scores = [sum(t.earned for t in ts if t.lab == lab) for ts in klass.students.values()]
        histograms.append(histogram_svg(lab, [x for x in scores], possible))
    ranked = sorted(stats, key=lambda s: (s.pass_rate, s.lab))
    rates = bars_svg(
        [(f"{s.lab}: {s.test}", s.pass_rate, f"{s.pass_rate:.0%} of {s.students}") for s in ranked],
        title="Tests by pass rate, the hardest first",
        maximum=1.0,
        unit="share of students",
    )
    slow = sorted(stats, key=lambda s: -s.mean_seconds)
    times = bars_svg(
        [(f"{s.lab}: {s.test}", s.mean_seconds, f"{s.mean_seconds:.2f} s") for s in slow],
        title="Mean seconds per test (wall clock, every student)",
        maximum=max((s.mean_seconds for s in stats), default=0.0),
        unit="seconds",
    )
    legend = "".join(f'<span><i style="background:{COLORS[s]}"></i>{s.mark}</span>' for s in Status)
    head = "".join(f"<th>{e(c)}</th>" for c in TESTS_HEADER[2:])
    rows, messages = _test_rows(ranked), _message_rows(result.messages)
    skipped = "".join(f"<li>{e(s)}: {e(klass.problems.get(s, 'no results.json'))}</li>" for s in klass.not_graded)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>What the class struggles with</title><style>{_STYLE}</style></head>
<body>
<h1>What the class struggles with</h1>
<p>{len(klass.students)} students graded, {len(stats)} tests in {len(labs)} lab(s).
{f"Not in these figures:</p><ul>{skipped}</ul><p>" if skipped else ""}
The CSVs beside this page hold the same numbers: <code>tests.csv</code>, <code>messages.csv</code>.</p>
<h2>Scores</h2>
<div class="figures">{"".join(histograms)}</div>
<h2>Where the class is stuck</h2>
{rates}
<h2>Students × tests</h2>
<p>The hardest tests on the left, the students with the fewest points on top; hover a cell for its test.</p>
<p class="legend">{legend}</p>
{grid_svg(klass, stats)}
<h2>Time spent per test</h2>
{times}
<h2>Every test</h2>
<table><thead><tr><th>test</th>{head}</tr></thead><tbody>{rows}</tbody></table>
<h2>Most common messages</h2>
<p>Numbers, arrays, shapes and paths replaced by <code>&lt;n&gt;</code>, <code>&lt;array&gt;</code>,
<code>&lt;shape&gt;</code>, <code>&lt;path&gt;</code>;
an example of each is in <code>messages.csv</code>.</p>
<table><thead><tr><th>test</th><th>status</th><th>students</th><th>message</th><th>e.g.</th></tr></thead>
<tbody>{messages}</tbody></table>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path
