"""Grade a whole class: every submission in a folder, several at a time, into a gradebook.

    course grade --submissions submissions/ --out grades/ --jobs 4 --seed 1234

``submissions/`` holds one entry per student: a folder of lab files (nested is fine) or a ``.zip`` of
one. For each student, ``grades/STUDENT/results.json`` (Gradescope's format) is written when their
grading is done, then ``grades/gradebook.csv`` has one row per student, one column per lab and the
total. A submission that hangs, crashes or cheats costs only its own row. Run it again after an
interruption and the students already graded — same submission, same settings — are not regraded.
Each student's grading is :func:`grade_submission`, in this process's threads or, with ``workers``,
as a task on Dask distributed workers (:mod:`course.grader.cluster`); results are written here.

Each student's sandboxes get a JAX compilation cache of their own (started from a copy of the staff's
warm one when there is one), so one student's code cannot plant compiled programs that another
student's grading would load.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from course import labs as _labs
from course.errors import CourseError
from course.grader import privacy
from course.grader.locations import Source
from course.grader.model import Report, Settings
from course.grader.report import gradescope, write_results
from course.grader.runner import collect, grade, isolation_setting


@dataclass(frozen=True)
class Submission:
    student: str
    path: Path  # a folder or a zip


def discover(folder: Path) -> list[Submission]:
    """One submission per sub-folder or zip of ``folder``, named after it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CourseError(f"--submissions {folder}: no such folder")
    found: dict[str, Submission] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() or entry.suffix == ".zip":
            sub = Submission(entry.stem if entry.suffix == ".zip" else entry.name, entry)
            if sub.student in found:
                raise CourseError(
                    f"two submissions for {sub.student}: {found[sub.student].path.name} and "
                    f"{entry.name}; keep one of them"
                )
            found[sub.student] = sub
    if not found:
        raise CourseError(f"{folder} holds no submissions (one folder or .zip per student)")
    return list(found.values())


def fingerprint(sub: Submission, settings: dict) -> str:
    """What a grade depends on: the submitted bytes and the grading settings."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    files = [sub.path] if sub.path.is_file() else sorted(p for p in sub.path.rglob("*") if p.is_file())
    for p in files:
        h.update(str(p.relative_to(sub.path.parent)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


class Workers(Protocol):
    """Where a class's submissions are graded other than in this process's threads (a Dask cluster:
    :mod:`course.grader.cluster`)."""

    def grade(
        self, pending: list[Submission], labs: list[str] | None, settings: Settings, log
    ) -> Iterator[tuple[Submission, dict, bool]]:
        """``(submission, results, final)`` as each is done: its results.json (:func:`grade_submission`
        of ``labs`` with ``settings``), and whether that is its grade (False: the grading failed, not the submission;
        the next run grades it again)."""
        ...


def grade_class(
    submissions: Path,
    out: Path,
    *,
    labs: list[str] | None = None,
    settings: Settings | None = None,
    warm_cache: Path | None = None,
    log=print,
    workers: Workers | None = None,
    **changes,
) -> Path:
    """Grade every submission; write each student's results.json and the gradebook; return its path.

    ``settings``: how to grade (default :meth:`Settings.for_class`: two at once, isolation required),
    with ``changes``. Each lab's time budget holds per submission, so that the class takes at most
    about students x labs x budget / jobs beyond the honest tests' own time. ``isolation``
    ``required`` refuses to start where the machine cannot keep the submissions apart
    (:mod:`course.grader.isolation`).
    ``warm_cache``: the staff's JAX compilation cache (the solutions'), which isolated sandboxes read
    under a private layer, and which is copied for each student otherwise.
    ``workers``: grade there (each worker with its own warm cache) instead of in ``jobs`` threads here;
    the results, grading.json and the gradebook are written here either way.
    """
    out = Path(out)
    settings = (settings or Settings.for_class()).replace(**changes)  # checked before any grading starts
    out.mkdir(parents=True, exist_ok=True)
    tests = _labs.graded_tests()
    # A fixed test regrades everyone: the tests' bytes are part of what a grade depends on.
    stamped = {
        "labs": sorted(labs or []),
        "timeout": settings.timeout,
        "budget": settings.budget_s,
        "seed": settings.seed,
        "tests": hashlib.sha256(b"".join(p.read_bytes() for fs in tests.values() for p in fs)).hexdigest(),
    }
    students = discover(submissions)
    stamps, pending = {}, []
    for sub in students:
        try:
            stamps[sub.student] = fingerprint(sub, stamped)
        except OSError:  # a file that cannot be read: grading it says so, and the next run tries again
            stamps[sub.student] = None
        done, stamp = out / sub.student / "grading.json", stamps[sub.student]
        if stamp and done.exists() and json.loads(done.read_text()).get("fingerprint") == stamp:
            log(f"{sub.student}: already graded")
        else:
            pending.append(sub)
    if workers is None:
        graded = _in_threads(pending, labs, settings, warm_cache=warm_cache, log=log)
    else:
        graded = workers.grade(pending, labs, settings, log)
    for sub, results, final in graded:
        target = out / sub.student
        target.mkdir(parents=True, exist_ok=True)
        write_results(results, target / "results.json")
        if not final or stamps[sub.student] is None:  # the next run grades it again
            (target / "grading.json").unlink(missing_ok=True)
            continue
        (target / "grading.json").write_text(
            json.dumps(
                {"fingerprint": stamps[sub.student], "score": results["score"], "max_score": results["max_score"]}
            )
        )
        log(f"{sub.student}: {results['score']:g}/{results['max_score']:g} in {results['execution_time']:.1f} s")
    gradebook = write_gradebook(out, [s.student for s in students])
    with gradebook.open(newline="", encoding="utf-8") as f:
        failed = [(row["student"], row[NOT_GRADED]) for row in csv.DictReader(f) if row[NOT_GRADED]]
    if failed:
        log(f"could not grade {len(failed)} submission(s), listed in {gradebook.name} ({NOT_GRADED!r}):")
        for student, why in failed:
            log(f"  {student}: {why}")
    return gradebook


def _in_threads(
    pending: list[Submission], labs: list[str] | None, settings: Settings, *, warm_cache: Path | None, log
) -> Iterator[tuple[Submission, dict, bool]]:
    """Grade ``settings.jobs`` submissions at once in this process's threads; yield each as it is done."""
    isolation_setting(settings.isolation, Report(impl="this machine"))  # a refusal before anything is graded
    if privacy.sandbox_user(settings.sandbox_user) is None:
        log(
            "warning: the submissions' code runs as this user, who can write the course, the tests and the "
            "grades: only grading as root (the sandbox then runs as nobody) keeps students from each other"
        )
    with ThreadPoolExecutor(max_workers=max(1, settings.jobs or 1)) as pool:
        futures = {
            pool.submit(grade_submission, sub, labs=labs, settings=settings, warm_cache=warm_cache): sub
            for sub in pending
        }
        for future in as_completed(futures):
            sub = futures[future]
            if (exc := future.exception()) is None:
                yield sub, future.result(), True
                continue
            # a bug of ours costs this row, this run only, never the class's gradebook
            why = f"the grader failed on it ({type(exc).__name__}: {exc})"
            log(f"{sub.student}: not graded: {why}; run the command again to grade it")
            yield sub, not_graded(sub, f"{why}; the next run grades it again", labs, settings), False


def grade_submission(sub: Submission, *, labs: list[str] | None, settings: Settings, warm_cache: Path | None) -> dict:
    """One student's grading, in a private temporary folder: their results.json (Gradescope's format), a
    dict of plain data, so that a worker of a cluster can send it back (:mod:`course.grader.cluster`)."""
    with tempfile.TemporaryDirectory(prefix="course-student-") as tmp:
        os.chmod(tmp, 0o711)  # the sandbox's user must reach its cache (jax-cache, which it is given) inside
        try:  # what goes wrong with one submission (not a zip, a zip bomb, not a notebook) is its row only
            isolate = isolation_setting(settings.isolation, Report(impl=str(sub.path)))  # known by now
            impl, notes = _unpack(sub, Path(tmp) / "submission")
            cache = Path(tmp) / "jax-cache"
            if warm_cache is not None and warm_cache.is_dir() and not isolate:
                shutil.copytree(warm_cache, cache)
            report = grade(
                labs,
                impl=impl,
                settings=settings.replace(jobs=1),
                sandbox_cache=cache,
                warm_cache=warm_cache if isolate and warm_cache is not None and warm_cache.is_dir() else None,
                shown=_shown(impl),
            )
            report.notes[:0] = notes
        except CourseError as exc:  # the submission's own fault: the same bytes get the same answer
            return not_graded(sub, str(exc), labs, settings)
    return gradescope(report)


def not_graded(sub: Submission, why: object, labs: list[str] | None, settings: Settings) -> dict:
    """The results.json of a submission that could not be graded at all: every test of its labs at 0
    points, each saying why (so its row has the class's maximum), and the reason as its problem."""
    # Nothing of the student's is run: what its results say depends on the timeout, budget and seed only.
    bare = Settings(timeout=settings.timeout, budget=settings.budget, seed=settings.seed, jobs=1)
    try:
        with tempfile.TemporaryDirectory(prefix="nothing-") as empty:
            wanted = list(collect(_labs.graded_tests_dir(), labs))
            report = grade(wanted, impl=Path(empty), settings=bare, unreadable=dict.fromkeys(wanted, str(why)))
    except Exception:  # noqa: BLE001 - then at least the reason, with no tests
        report = Report(impl=sub.path.name, timeout=settings.timeout, budget=settings.budget_s)
    report.impl = sub.path.name
    report.problems.insert(0, f"not graded: {why}")
    return gradescope(report)


def _shown(impl: Path) -> dict[str, Source]:
    """Each lab file of an unpacked submission named by its place in the submission, not our folder."""
    return {
        str(p.resolve()): Source(str(p.relative_to(impl)))
        for p in impl.rglob("lab*.py")
        if _labs.is_lab_file(p) and p.is_file()
    }


def _unpack(sub: Submission, impl: Path) -> tuple[Path, list[str]]:
    """The submission as a folder of files at ``impl``, and notes on what of it could not be unpacked."""
    if sub.path.is_dir():  # links stay links: the grader follows none out of the submission
        shutil.copytree(sub.path, impl, symlinks=True)
        return impl, []
    try:
        with zipfile.ZipFile(sub.path) as zf:
            notes = _safe_extract(zf, impl)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, NotImplementedError):
        # NotImplementedError: a zip of a version Python's zipfile cannot read ("zip file version 6.4")
        raise CourseError(
            f"{sub.path.name} is not a zip file (or a damaged one): hand in a .zip of your lab files"
        ) from None
    return impl, notes


MAX_UNZIPPED_BYTES = 256 << 20  # a submission is lab files: more than this is a zip bomb, not homework


def _safe_extract(zf: zipfile.ZipFile, dest: Path) -> list[str]:
    """Extract only regular files that land inside ``dest`` (no absolute paths, no ``..``); returns a note
    for each entry that could not be written (a name too long, a file where a folder should be, a
    damaged entry), which is left out: the rest of the submission is graded as usual."""
    dest.mkdir(parents=True)
    infos = zf.infolist()
    if sum(info.file_size for info in infos) > MAX_UNZIPPED_BYTES:
        raise CourseError(f"the zip unpacks to more than {MAX_UNZIPPED_BYTES >> 20} MiB")
    notes = []
    for info in infos:
        try:
            target = (dest / info.filename).resolve()
            if not info.filename or info.is_dir() or not target.is_relative_to(dest.resolve()):
                continue
            data = zf.read(info)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        except (OSError, ValueError, RuntimeError, NotImplementedError, zipfile.BadZipFile, EOFError) as exc:
            notes.append(f"{_entry(info.filename)} in the zip could not be unpacked ({_why(exc)}), so it was left out")
    return notes


def _entry(name: str) -> str:
    """A zip entry's name, shortened for a message."""
    return repr(name if len(name) <= 80 else name[:40] + "…" + name[-30:])


def _why(exc: BaseException) -> str:
    """Why an entry could not be written, in words (never our temporary path)."""
    if isinstance(exc, FileExistsError | NotADirectoryError):
        return "a file of the same name is in the way of a folder, or the reverse"
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        return "its name is too long"
    if isinstance(exc, RuntimeError | NotImplementedError):
        return "it is encrypted or compressed in a way this grader cannot read"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return "it is damaged"


def lab_points(results: dict) -> tuple[dict[str, float], dict[str, float]]:
    """Points earned and possible per lab in a results.json (each test is named ``"labNN: test"``)."""
    earned: dict[str, float] = {}
    possible: dict[str, float] = {}
    for test in results["tests"]:
        lab = test["name"].split(":", 1)[0]
        earned[lab] = earned.get(lab, 0.0) + float(test["score"])
        possible[lab] = possible.get(lab, 0.0) + float(test["max_score"])
    return earned, possible


NOT_GRADED = "not graded"  # the gradebook's last column: why a submission could not be graded, if it could not


def write_gradebook(out: Path, students: list[str]) -> Path:
    """``out/gradebook.csv``: student, one column per lab (points earned), total, max, and why a submission
    could not be graded (empty when it was)."""
    rows, labs = [], set()
    for student in students:
        results = json.loads((out / student / "results.json").read_text())
        per_lab, _ = lab_points(results)
        labs |= set(per_lab)
        problems = results.get("extra_data", {}).get("problems", [])
        why = "; ".join(p.removeprefix("not graded: ") for p in problems if p.startswith("not graded: "))
        rows.append((student, per_lab, results["score"], results["max_score"], why))
    columns = sorted(labs)
    return write_plain_gradebook(
        out / "gradebook.csv",
        columns,
        [
            [student, *(f"{per_lab.get(c, 0.0):g}" for c in columns), f"{score:g}", f"{most:g}", why]
            for student, per_lab, score, most, why in rows
        ],
        extra=[NOT_GRADED],
    )


def write_plain_gradebook(path: Path, labs: list[str], rows: list[list[str]], *, extra: list[str] = ()) -> Path:
    """The plain gradebook, the one writer of its format: a header (student, a column per lab, total, max,
    then ``extra``) and ``rows`` of cells in that order (``course grade --submissions``, ``course gradebook``)."""
    return write_csv(path, [["student", *labs, "total", "max", *extra], *rows])


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    """``rows`` as a CSV, written atomically: an interrupted run never leaves half a gradebook."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    tmp.replace(path)
    return path
