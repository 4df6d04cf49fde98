"""Similar code between the students of a class, per lab: a ranked CSV and a side-by-side HTML report.

    course similarity submissions/ lab01 lab02 --out similarity/

The submissions are laid out as for ``course grade --submissions`` (one folder or ``.zip`` per
student, holding ``labNN_*.py`` files or notebooks; a notebook counts by its code cells). Each pair of
students who handed in the same lab is compared with copydetect (winnowing, as MOSS does, over
Pygments tokens with every name made one letter, so renaming variables and reordering functions
changes little); the generated stubs and student notebooks are boilerplate, so the code every
student was given never counts. A high score is a reason to read two submissions side by side, not
a verdict. With a roster that has a ``group`` column (``course groups``), two members of one group
(or a member and the group's own folder) are expected to share code: such pairs are never flagged,
and are listed apart.
"""

from __future__ import annotations

import csv
import html
import io
import tempfile
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from course import labs as _labs
from course.errors import CourseError
from course.grader.batch import MAX_UNZIPPED_BYTES, Submission, discover
from course.grader.notebook import convert
from course.staff.gradebook import GROUP_COLUMN, read_roster

# Flag a pair when either side has at least this share of its own code (beyond the stubs) in common
# with the other. Measured on lab01 (tests/course/test_similarity.py): a copy with every name changed
# and the functions reordered scores 1.0 both ways (the filter makes every name one letter); a copy of
# four functions of nine, 0.68-0.80; two independent correct solutions 0.26-0.36. The last are not 0
# because a lab01 answer is a line or two: the k-grams that straddle the stub's text and an answer
# that starts the obvious way (`return jnp.`) are common to any two students. copydetect's own report
# default, 0.33, would flag that pair; 0.5 leaves a margin on both sides.
THRESHOLD = 0.5
# copydetect's noise threshold k: matches shorter than this many characters of the filtered code
# (names made V/F, no whitespace or comments) are ignored; 25 is its default, about one short line.
NOISE = 25
# Equal to NOISE: every k-gram is a fingerprint (winnowing window 1), the most sensitive setting;
# a class is small enough that the cost does not matter.
GUARANTEE = 25
REPORT_PAIRS = 50  # pairs shown side by side in the HTML report, the highest first


@dataclass(frozen=True)
class LabCode:
    student: str
    lab: str
    origin: str  # where it came from, as the student named it: "alice/lab01_perceptron.py"
    source: str  # a notebook's code cells as one module


@dataclass(frozen=True)
class Pair:
    lab: str
    a: str
    b: str
    a_to_b: float  # share of A's code (beyond the stubs) also in B
    b_to_a: float
    overlap: int  # characters of filtered code in common (copydetect's "tokens")
    group: str = ""  # the group both belong to (the roster's group column): expected to share code

    @property
    def score(self) -> float:
        return max(self.a_to_b, self.b_to_a)


@dataclass
class Result:
    pairs: list[Pair]  # ranked: highest score first
    threshold: float
    notes: list[str] = field(default_factory=list)  # what was skipped in which submission, and why
    csv: Path | None = None
    html: Path | None = None

    @property
    def flagged(self) -> list[Pair]:
        return [p for p in self.pairs if p.score >= self.threshold and not p.group]

    @property
    def same_group(self) -> list[Pair]:
        """The pairs of one group, never flagged, highest first."""
        return [p for p in self.pairs if p.group]


def group_of(roster: Path | None) -> dict[str, str]:
    """``{folder: group}`` for every member in ``roster``'s group column, and every group's own folder."""
    if roster is None:
        return {}
    people = read_roster(roster)
    found = {folder: row[GROUP_COLUMN] for folder, row in people.items() if row[GROUP_COLUMN]}
    if not found:
        raise CourseError(f"roster {roster}: no group column, or no one in a group; `course groups` writes one")
    return found | {g: g for g in found.values()}


def submission_code(sub: Submission, wanted: set[str] | None = None) -> tuple[dict[str, LabCode], list[str]]:
    """The code of each lab in one submission, and notes on what was left out.

    As the grader does: a ``labNN_*.py`` file wins over a notebook of the same lab; of two files for
    one lab, the first by path is used and the other noted.
    """
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="course-similarity-") as tmp:
        files = _files(sub, Path(tmp), notes)
        found: dict[str, LabCode] = {}
        for path, shown in sorted(files, key=lambda f: (f[0].suffix != ".py", f[1])):
            if path.suffix == ".py":
                lab, source = _labs.lab_of_file(path), path.read_text(encoding="utf-8", errors="replace")
            else:
                try:
                    conv = convert(path)
                except CourseError as exc:
                    notes.append(f"{sub.student}: {shown} left out: {exc}")
                    continue
                lab, source = conv.lab, conv.source
            if wanted is not None and lab not in wanted:
                continue
            if lab in found:
                notes.append(f"{sub.student}: {shown} left out; {lab} is compared from {found[lab].origin}")
                continue
            found[lab] = LabCode(sub.student, lab, shown, source)
    return found, notes


def _files(sub: Submission, tmp: Path, notes: list[str]) -> list[tuple[Path, str]]:
    """``(readable path, name to show)`` of the submission's lab files and notebooks."""

    def wanted(name: str) -> bool:
        parts = Path(name).parts
        hidden = any(p.startswith(".") or p == "__MACOSX" for p in parts)
        return not hidden and (_labs.is_lab_file(name) or name.endswith(".ipynb"))

    if sub.path.is_dir():
        return [
            (p, f"{sub.student}/{p.relative_to(sub.path).as_posix()}")
            for p in sub.path.rglob("*")
            if p.is_file() and wanted(p.relative_to(sub.path).as_posix())
        ]
    try:
        with zipfile.ZipFile(sub.path) as zf:
            members = [i for i in zf.infolist() if not i.is_dir() and wanted(i.filename)]
            if sum(i.file_size for i in members) > MAX_UNZIPPED_BYTES:
                notes.append(
                    f"{sub.student}: left out, its lab files unzip to more than {MAX_UNZIPPED_BYTES >> 20} MiB"
                )
                return []
            out = []
            for n, info in enumerate(members):
                path = tmp / str(n) / Path(info.filename).name  # the file's own name: convert() reads the lab in it
                path.parent.mkdir()
                path.write_bytes(zf.read(info))
                out.append((path, f"{sub.path.name}/{info.filename}"))
            return out
    except zipfile.BadZipFile:
        notes.append(f"{sub.student}: left out, {sub.path.name} is not a zip file")
        return []


def boilerplate_sources(root: Path | None = None) -> list[str]:
    """What every student was given: the stubs in ``labs/`` and the student notebooks' code cells."""
    root = Path(root) if root is not None else _labs.root()
    sources = [p.read_text(encoding="utf-8") for p in sorted((root / "labs").glob("lab*.py")) if _labs.is_lab_file(p)]
    sources += [convert(p).source for p in sorted((root / "notebooks").glob("lab*.ipynb"))]
    if not sources:
        raise CourseError(
            f"no stubs in {root / 'labs'} to tell the given code from the students' own; run `course assign` first"
        )
    return sources


def _copydetect():
    try:
        import copydetect
        import copydetect.utils
    except ImportError:
        raise CourseError(
            "course similarity needs copydetect, one of the staff's tools: pip install -e . --group staff "
            "(or uv pip install -e . --group staff)"
        ) from None
    return copydetect


def _fingerprint(source: str, *, given=None):
    """copydetect's fingerprint of Python source; ``given``: boilerplate hashes to drop (None: keep every k-gram)."""
    CodeFingerprint = _copydetect().CodeFingerprint

    window = 1 if given is None else GUARANTEE - NOISE + 1
    # The file name only picks the lexer; the source is passed in memory.
    return CodeFingerprint("code.py", NOISE, window, given, language="python", fp=io.StringIO(source))


def given_hashes(boilerplate: list[str]):
    """Every k-gram hash of the code the students were given (an array, as copydetect takes it)."""
    import numpy as np

    return np.unique(np.concatenate([np.asarray(list(_fingerprint(s).hashes)) for s in boilerplate]))


def compare(codes: list[LabCode], given) -> list[Pair]:
    """Every pair of students' code for one lab, by copydetect, the ``given`` hashes discounted."""
    compare_files = _copydetect().compare_files

    prints = [_fingerprint(c.source, given=given) for c in codes]
    pairs = []
    for i in range(len(codes)):
        for j in range(i + 1, len(codes)):
            overlap, (a_to_b, b_to_a), _ = compare_files(prints[i], prints[j])
            pairs.append(Pair(codes[i].lab, codes[i].student, codes[j].student, a_to_b, b_to_a, int(overlap)))
    return pairs


def similarity(
    submissions: Path,
    out: Path | None = None,
    *,
    labs: list[str] | None = None,
    threshold: float = THRESHOLD,
    boilerplate_root: Path | None = None,
    roster: Path | None = None,
) -> Result:
    """Compare every pair of students per lab; with ``out``, write ``similarity.csv`` and ``similarity.html`` there.

    ``roster``: with a ``group`` column, pairs of one group are marked with it and never flagged.
    """
    wanted = {_labs.lab_id(x) for x in labs} if labs else None
    _copydetect()  # before reading a class: a missing library is said first
    groups = group_of(roster)
    by_lab: dict[str, list[LabCode]] = {}
    notes: list[str] = []
    for sub in discover(Path(submissions)):
        found, skipped = submission_code(sub, wanted)
        notes += skipped
        for lab, code in found.items():
            by_lab.setdefault(lab, []).append(code)
    if not by_lab:
        raise CourseError(
            f"no lab files (labNN_*.py) or notebooks (.ipynb) in {submissions}"
            + (f" for {', '.join(sorted(wanted))}" if wanted else "")
        )
    given = given_hashes(boilerplate_sources(boilerplate_root))
    pairs = [p for lab in sorted(by_lab) for p in compare(by_lab[lab], given)]
    pairs = [replace(p, group=groups[p.a]) if groups.get(p.a, "") == groups.get(p.b) else p for p in pairs]
    pairs.sort(key=lambda p: (-p.score, -p.overlap, p.lab, p.a, p.b))
    result = Result(pairs, threshold, notes)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        result.csv = write_csv(result, out / "similarity.csv")
        result.html = write_html(result, by_lab, given, out / "similarity.html")
    return result


CSV_HEADER = ["lab", "student_a", "student_b", "a_to_b", "b_to_a", "max", "tokens_overlapping", "flagged", "group"]


def write_csv(result: Result, path: Path) -> Path:
    """One row per pair, highest first: the shares both ways, their max, the overlap, flagged or not, and the
    group both belong to (never flagged)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_HEADER)
        for p in result.pairs:
            flag = "yes" if p.score >= result.threshold and not p.group else ""
            w.writerow(
                [p.lab, p.a, p.b, f"{p.a_to_b:.3f}", f"{p.b_to_a:.3f}", f"{p.score:.3f}", p.overlap, flag, p.group]
            )
    return path


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; } td, th { padding: 0.2em 0.8em; border-bottom: 1px solid #ddd; text-align: left; }
tr.flagged td { background: #fde8e8; }
.pair { margin: 1.5em 0; border: 1px solid #ccc; border-radius: 4px; padding: 0.5em 1em; }
.pair summary { cursor: pointer; font-weight: 600; }
.sides { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 1em; }
.sides pre { overflow-x: auto; font-size: 12px; background: #fafafa; padding: 0.5em; border: 1px solid #eee; }
.hl-a { background: #f2b6b6; } .hl-b { background: #b6f2b6; }
"""


def write_html(result: Result, by_lab: dict[str, list[LabCode]], given, path: Path) -> Path:
    """A self-contained page (no scripts, no links out): the ranked table, then the top pairs side by side."""
    copydetect = _copydetect()
    compare_files, highlight_overlap = copydetect.compare_files, copydetect.utils.highlight_overlap

    e = html.escape
    code = {(c.lab, c.student): c for codes in by_lab.values() for c in codes}
    rows, sections, grouped = [], [], []
    shown = [p for p in result.pairs if p.overlap > 0 and not p.group][:REPORT_PAIRS]
    for rank, p in enumerate(result.pairs, 1):
        link = f'<a href="#pair-{rank}">{rank}</a>' if p in shown else str(rank)
        cls = ' class="flagged"' if p.score >= result.threshold and not p.group else ""
        cells = (
            f"<td>{link}</td><td>{e(p.lab)}</td><td>{e(p.a)}</td><td>{e(p.b)}</td>"
            f"<td>{p.a_to_b:.0%}</td><td>{p.b_to_a:.0%}</td><td>{p.overlap}</td>"
        )
        if p.group:
            grouped.append(f"<tr>{cells}<td>{e(p.group)}</td></tr>")
        else:
            rows.append(f"<tr{cls}>{cells}</tr>")
    for rank, p in enumerate(result.pairs, 1):
        if p not in shown:
            continue
        a, b = code[(p.lab, p.a)], code[(p.lab, p.b)]
        fa, fb = _fingerprint(a.source, given=given), _fingerprint(b.source, given=given)
        _, _, (slices_a, slices_b) = compare_files(fa, fb)
        hl_a, _ = highlight_overlap(fa.raw_code, slices_a, "<span class='hl-a'>", "</span>", escape_html=True)
        hl_b, _ = highlight_overlap(fb.raw_code, slices_b, "<span class='hl-b'>", "</span>", escape_html=True)
        flag = " — flagged" if p.score >= result.threshold else ""
        sections.append(
            f'<details class="pair" id="pair-{rank}"{" open" if flag else ""}><summary>#{rank} {e(p.lab)}: '
            f"{e(p.a)} {p.a_to_b:.0%} ↔ {e(p.b)} {p.b_to_a:.0%}, {p.overlap} tokens in common{flag}</summary>"
            f'<div class="sides"><div><h4>{e(a.origin)}</h4><pre><code>{hl_a}</code></pre></div>'
            f"<div><h4>{e(b.origin)}</h4><pre><code>{hl_b}</code></pre></div></div></details>"
        )
    notes = "".join(f"<li>{e(n)}</li>" for n in result.notes)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Similarity report</title><style>{_STYLE}</style></head>
<body>
<h1>Similarity report</h1>
<p>{len(result.pairs)} pairs compared in {len(by_lab)} lab(s); {len(result.flagged)} flagged (either share at least
{result.threshold:.0%}). A share is how much of one student's code, beyond the stubs they were given, is also in the
other's. Matches are highlighted in both; a high share is a reason to read the two, not a verdict.</p>
{f"<p>Left out:</p><ul>{notes}</ul>" if notes else ""}
<table><thead><tr><th>#</th><th>lab</th><th>student A</th><th>student B</th><th>A→B</th><th>B→A</th>
<th>tokens in common</th></tr></thead><tbody>{"".join(rows)}</tbody></table>
{_grouped_table(grouped)}
<h2>Side by side</h2>
{"".join(sections) or "<p>No pair has any code in common beyond the stubs.</p>"}
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path


def _grouped_table(rows: list[str]) -> str:
    if not rows:
        return ""
    return (
        "<h2>Pairs of one group</h2><p>The roster puts both in one group: they are expected to share code, and are "
        "never flagged.</p><table><thead><tr><th>#</th><th>lab</th><th>student A</th><th>student B</th><th>A→B</th>"
        f"<th>B→A</th><th>tokens in common</th><th>group</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
