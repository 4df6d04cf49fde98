"""The ``course`` command (also ``python -m course``), for students (list, grade), instructors (run, site)
and course staff (assign, notebooks, release, gradescope, and for a graded class: similarity, gradebook,
analyze, groups).

Each command is two small functions: ``_args_NAME`` adds its options, ``_cmd_NAME`` runs it by calling
the importable function that does the work (imported when the command runs, so ``course list`` never
imports the grader). A grading option given nowhere keeps the default of
:class:`course.grader.model.Settings`, where every grading setting has its one default.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from course import labs as _labs
from course.errors import CourseError


def _cmd_list(args: argparse.Namespace) -> int:
    impl = args.impl or _labs.default_impl()
    for lid, path in _labs.lab_files(impl).items():
        print(f"{lid}  {_labs.lab_title(path)}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from course.staff.running import run_lab

    impl = args.impl or _labs.default_impl()
    if args.quick is not None:  # labs with a long demo (lab11) read it; default: quick on a CPU
        os.environ["COURSE_QUICK"] = "1" if args.quick else "0"
    names = list(_labs.lab_files(impl)) if args.labs == ["all"] else args.labs
    out = Path(args.out)
    options = {
        k: v for k, v in (("quick", args.quick), ("dataset", args.dataset), ("seed", args.seed)) if v is not None
    }
    from course.staff.hugepages import describe

    print(f"== {describe()}", flush=True)
    for name in names:
        lid = _labs.lab_id(name)
        start = time.perf_counter()
        print(f"== {lid}: {_labs.lab_title(_labs.lab_path(lid, impl))} ({impl})", flush=True)
        paths = run_lab(lid, impl=impl, out=out / lid, **options)
        for p in paths:
            print(f"   wrote {p}")
        print(f"   {lid} done in {time.perf_counter() - start:.1f} s; figures in {(out / lid).resolve()}", flush=True)
    return 0


def _settings(args: argparse.Namespace):
    """The grading settings: Settings' defaults (a class's with --submissions), then $COURSE_*, then the flags."""
    from course.grader import Settings

    given = {k: getattr(args, k) for k in ("timeout", "budget", "seed", "jobs", "sandbox_user", "isolation")}
    return Settings.from_environment(base=Settings.for_class() if args.submissions else None, **given)


def _cmd_grade(args: argparse.Namespace) -> int:
    from course.grader import grade
    from course.grader.report import render, write_gradescope

    settings = _settings(args)
    if args.submissions:
        return _grade_class(args, settings)
    if args.cluster:
        raise CourseError("--cluster grades a whole class: give its submissions too (--submissions DIR)")
    impl = args.impl or "labs"
    start = time.perf_counter()
    try:
        titles = _titles(impl)
        # The command line's successive commands share a warm grader (course.grader.zygote).
        report = grade(args.labs or None, impl=impl, settings=settings, daemon=args.command_line)
    except Exception as exc:
        if args.results:  # Gradescope shows results.json, whatever happened: 0, and why
            from course.grader import Report

            why = str(exc) if isinstance(exc, CourseError) else f"the grader failed ({type(exc).__name__}: {exc})"
            write_gradescope(Report(impl=str(impl), problems=[f"not graded: {why}"]), Path(args.results))
            print(f"wrote Gradescope results (not graded) to {args.results}", file=sys.stderr)
        raise
    pictures = {} if args.results else _save_pictures(report, impl)  # Gradescope's feedback is results.json
    print(render(report, titles=titles, verbose=args.verbose, pictures=pictures))
    print(f"(graded {impl} in {time.perf_counter() - start:.1f} s)")
    if args.results:
        write_gradescope(report, Path(args.results))
        print(f"wrote Gradescope results to {args.results}")
        if args.metadata:
            _record_members(Path(args.results), Path(args.metadata))
    if args.fail_under is not None:
        pct = 100.0 * report.score / report.max_score if report.max_score else 0.0
        if pct < args.fail_under:
            print(f"score {pct:.1f}% is under --fail-under {args.fail_under:g}%", file=sys.stderr)
            return 1
    return 0


def _save_pictures(report, impl: str) -> dict[str, str]:
    """The failed comparisons' pictures, saved in the project's ``.course/feedback/<lab>/``; their paths as
    the student can open them (relative to the current folder where it holds them)."""
    from course.grader.report import feedback_folder, save_pictures

    work = _labs.impl_dir(impl) if str(impl) in _labs.IMPLS or Path(impl).is_dir() else Path(impl)
    saved = save_pictures(report, feedback_folder(work, places=[_labs.root(), Path.cwd()]))
    here = Path.cwd().resolve()
    return {k: str(p.relative_to(here) if p.is_relative_to(here) else p) for k, p in saved.items()}


def _record_members(results: Path, metadata: Path) -> None:
    from course.staff.gradescope import record_members

    try:
        found = record_members(results, metadata)
    except CourseError as exc:  # the grade stands: a metadata file we cannot read costs only the record
        print(f"warning: members not recorded: {exc}", file=sys.stderr)
        return
    if found is not None:
        print(f"recorded {len(found)} member(s) from {metadata} in results.json's extra_data")


def _grade_class(args: argparse.Namespace, settings) -> int:
    from course.grader.batch import grade_class
    from course.grader.lab_plugin import sandbox_cache_for

    def log(line: str) -> None:
        print(line, flush=True)

    start = time.perf_counter()
    submissions, out, labs = Path(args.submissions), Path(args.out), args.labs or None
    warm = sandbox_cache_for("solutions")
    if args.cluster is None:
        gradebook = grade_class(submissions, out, labs=labs, settings=settings, warm_cache=warm, log=log)
    else:
        from course.grader.cluster import connect

        if args.jobs is not None:
            raise CourseError("--jobs is the number of threads here; with --cluster, the workers grade (local:N: N)")
        with connect(
            args.cluster, sandbox_user=settings.sandbox_user, isolation=settings.isolation, log=log
        ) as workers:
            gradebook = grade_class(
                submissions, out, labs=labs, settings=settings, warm_cache=warm, log=log, workers=workers
            )
    print(f"wrote {gradebook} in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_gradescope(args: argparse.Namespace) -> int:
    from course.staff.gradescope import build_autograder

    given = {"timeout": args.timeout} if args.timeout is not None else {}  # else build_autograder's own default
    path = build_autograder(Path(args.out), labs=args.labs or None, seed=args.seed, **given)
    print(f"wrote the Gradescope autograder {path} (hidden seed {args.seed}); upload it as the assignment's autograder")
    return 0


def _titles(impl: str) -> dict[str, str]:
    """Lab titles for the report: from the lab files graded, else (notebooks) from the course's labs/."""
    from course.grader.notebook import has_notebooks

    if not has_notebooks(impl):
        return {lid: _labs.lab_title(p) for lid, p in _labs.lab_files(impl).items()}
    try:
        return {lid: _labs.lab_title(p) for lid, p in _labs.lab_files("labs").items()}
    except CourseError:
        return {}


def _cmd_notebooks(args: argparse.Namespace) -> int:
    from course.staff import notebooks

    stale = notebooks.write_student_notebooks(check=args.check) + notebooks.write_readme(check=args.check)
    if args.check:
        if stale:
            print(
                "notebooks are stale; run `course notebooks` to regenerate:\n  " + "\n  ".join(stale), file=sys.stderr
            )
            return 1
        print(f"{notebooks.FOLDER}/ and the README's links are up to date with labs/")
    else:
        print("\n".join(f"wrote {n}" for n in stale) or f"{notebooks.FOLDER}/ was already up to date")
    if args.solutions:
        out = Path(args.out)
        for lab in args.labs or _labs.lab_files("solutions"):
            start = time.perf_counter()
            [path] = notebooks.build_solution_notebooks(out, quick=args.quick, labs=[lab])
            print(f"executed {path} in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


def _cmd_site(args: argparse.Namespace) -> int:
    from course.staff.site import build

    build(Path(args.out), cache=Path(args.cache), check=not args.no_check, jobs=args.jobs)
    return 0


def _cmd_assign(args: argparse.Namespace) -> int:
    from course.staff.assign import assign

    changed = assign(check=args.check)
    if args.check:
        if changed:
            print("labs/ is stale; run `course assign` to regenerate:\n  " + "\n  ".join(changed), file=sys.stderr)
            return 1
        print("labs/ is up to date with solutions/")
        return 0
    print("\n".join(f"wrote labs/{n}" for n in changed) or "labs/ was already up to date")
    return 0


def _cmd_release(args: argparse.Namespace) -> int:
    from course.staff.release import build_bundle

    path = build_bundle(Path(args.out))
    print(f"wrote the student bundle {path}")
    return 0


def _cmd_similarity(args: argparse.Namespace) -> int:
    from course.staff.similarity import THRESHOLD, similarity

    threshold = THRESHOLD if args.threshold is None else args.threshold
    result = similarity(
        Path(args.submissions),
        Path(args.out),
        labs=args.labs or None,
        threshold=threshold,
        roster=Path(args.roster) if args.roster else None,
    )
    for note in result.notes:
        print(f"note: {note}")
    print(f"{len(result.flagged)} of {len(result.pairs)} pairs at or over {threshold:.0%} (either way):")
    for p in result.flagged:
        print(f"  {p.lab}  {p.a}  {p.b}  {p.a_to_b:.0%} / {p.b_to_a:.0%}  ({p.overlap} tokens in common)")
    if result.same_group:
        print(f"{len(result.same_group)} pair(s) of one group, not flagged (listed apart in the report):")
        for p in result.same_group:
            print(f"  {p.lab}  {p.a}  {p.b}  {p.a_to_b:.0%} / {p.b_to_a:.0%}  (group {p.group})")
    print(f"wrote {result.csv} (every pair, ranked) and {result.html} (side by side); read them before deciding")
    return 0


def _cmd_gradebook(args: argparse.Namespace) -> int:
    from course.staff.gradebook import write_gradebook

    columns = {}
    for spec in args.column or []:
        lab, sep, name = spec.partition("=")
        if not sep or not name:
            raise CourseError(f"--column {spec!r}: write LAB=NAME, e.g. --column 'lab01=Lab 1 (12345)'")
        columns[_labs.lab_id(lab)] = name
    book = write_gradebook(
        Path(args.graded),
        Path(args.out),
        roster=Path(args.roster) if args.roster else None,
        format=args.format,
        missing_as_zero=args.missing_as_zero,
        columns=columns,
    )
    print(f"wrote the {args.format} gradebook {book.path}")
    lines = [
        *(f"unknown: {s} was graded but is not in the roster; add it to the roster" for s in book.unknown),
        *(f"missing: {s} is in the roster but handed nothing in" for s in book.missing),
        *(f"not graded: {s} has no results.json; run the grading again (it resumes)" for s in book.not_graded),
        *(
            f"twice: {m} handed in alone and with {g}; the gradebook has {g}'s grade, decide which counts"
            for m, g in book.twice
        ),
    ]
    by_group: dict[str, list[str]] = {}
    for member, group in book.credited.items():
        by_group.setdefault(group, []).append(member)
    for group, members in by_group.items():
        print(f"credited {group}'s grade to {', '.join(members)}")
    for line in lines:
        print(line, file=sys.stderr)
    print(f"{len(lines)} student(s) unmatched, listed in {book.problems}" if lines else "every student matched")
    # A missing student is an ordinary absence; a grade that is in no gradebook (or one of two) is not.
    return 1 if book.unknown or book.not_graded or book.twice else 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from course.staff.analyze import analyze

    result = analyze(Path(args.graded), Path(args.out))
    for folder in result.klass.not_graded:
        print(f"not in the analysis: {folder} ({result.klass.problems.get(folder, 'no results.json')})")
    hardest = sorted(result.stats, key=lambda s: (s.pass_rate, s.lab))[:5]
    print(f"{len(result.klass.students)} students, {len(result.stats)} tests; the lowest pass rates:")
    for s in hardest:
        print(f"  {s.pass_rate:4.0%}  {s.lab}: {s.test}")
    print(f"wrote {result.html}, {result.tests_csv} and {result.messages_csv}")
    return 0


def _cmd_groups(args: argparse.Namespace) -> int:
    from course.staff.groups import write_groups

    result = write_groups(
        Path(args.roster),
        Path(args.out),
        size=args.size,
        seed=args.seed,
        avoid=Path(args.avoid) if args.avoid else None,
    )
    sizes = sorted({len(m) for m in result.groups.values()})
    print(
        f"wrote {len(result.groups)} groups of {' or '.join(map(str, sizes))} in "
        f"{len(set(result.section.values()))} section(s) to {args.out} (seed {args.seed})"
    )
    if args.avoid:
        print(f"{len(result.together_again)} pair(s) from {args.avoid} are together again (could not be kept apart)")
        for a, b in result.together_again:
            print(f"  {a}  {b}")
    return 0


IMPL_HELP = "labs (student files), solutions, or a folder of labNN_*.py files"


def _args_list(sub) -> None:
    p = sub.add_parser("list", help="list the labs")
    p.add_argument("--impl", help=IMPL_HELP)
    p.set_defaults(func=_cmd_list)


def _args_run(sub) -> None:
    p = sub.add_parser("run", help="run labs' demos and write their figures")
    p.add_argument("labs", nargs="+", metavar="LAB", help="lab01, 1, ... or `all`")
    p.add_argument("--out", default="figures", help="folder for the figures (default: figures/)")
    p.add_argument("--impl", help=f"{IMPL_HELP} (default: solutions where present)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        dest="quick",
        action="store_true",
        default=None,
        help="the short version of the long demos, lab10 and lab11 (their default on a CPU)",
    )
    mode.add_argument(
        "--full", dest="quick", action="store_false", help="the full version (the default on an accelerator)"
    )
    p.add_argument("--dataset", help="mnist or fashion_mnist (labs whose demo trains on one)")
    p.add_argument("--seed", type=int, help="the run's PRNG seed (labs whose demo trains)")
    p.set_defaults(func=_cmd_run)


def _args_grade(sub) -> None:
    p = sub.add_parser("grade", help="grade the labs, offline, and show the points")
    p.add_argument("labs", nargs="*", metavar="LAB", help="labs to grade (default: all)")
    p.add_argument("--impl", help=f"{IMPL_HELP}, or notebooks: a folder of .ipynb or one (default: labs)")
    p.add_argument("--results", metavar="PATH", help="also write Gradescope's results.json here")
    p.add_argument(
        "--metadata",
        metavar="PATH",
        help="with --results: Gradescope's submission_metadata.json, where present; its users are recorded in "
        "results.json's extra_data as members",
    )
    _grading_options(p)
    p.add_argument(
        "--fail-under", type=float, metavar="PCT", help="exit with status 1 when the score is under PCT percent"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="show full failure messages")
    _class_options(p)
    p.set_defaults(func=_cmd_grade)


def _grading_options(p: argparse.ArgumentParser) -> None:
    """The grading settings' flags; each not given keeps :class:`Settings`' default (or ``$COURSE_*``)."""
    from course.grader import Settings
    from course.grader.model import BUDGET_TIMEOUTS, ISOLATIONS

    p.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help=f"seconds one test may spend running lab code (default {Settings.timeout:g}, or $COURSE_TIMEOUT)",
    )
    p.add_argument(
        "--budget",
        metavar="S",
        help="seconds a lab's tests that do not pass may spend running lab code together; then the lab's other "
        f"tests are not run (default auto: {BUDGET_TIMEOUTS} x --timeout, or $COURSE_BUDGET; off: no budget)",
    )
    p.add_argument(
        "--seed",
        type=int,
        metavar="S",
        help=f"vary the tests' random inputs (default {Settings.seed}, the visible ones, or $COURSE_SEED)",
    )
    p.add_argument(
        "--jobs",
        "-j",
        type=int,
        metavar="N",
        help="grading processes at once (default: one per CPU core; one lab's tests are shared out between up to 4)",
    )
    p.add_argument(
        "--sandbox-user",
        metavar="USER",
        help="who runs the student's code: auto (the default: nobody when run as root), none, or a user name",
    )
    p.add_argument(
        "--isolation",
        choices=ISOLATIONS,
        help="each sandbox in Linux namespaces of its own, seeing nothing of other submissions: auto (where "
        "the machine allows; the default for one submission), required (the default with --submissions: "
        "refuse where it cannot), off (accept grading without it; results.json says so)",
    )


def _class_options(p: argparse.ArgumentParser) -> None:
    """``course grade --submissions``: a whole class."""
    p.add_argument(
        "--submissions",
        metavar="DIR",
        help="grade a whole class: one folder or .zip per student in DIR (see --out, --jobs)",
    )
    p.add_argument(
        "--out",
        default="grades",
        metavar="DIR",
        help="with --submissions: where each student's results.json and gradebook.csv go (default grades/)",
    )
    p.add_argument(
        "--cluster",
        metavar="local:N|ADDRESS",
        help="with --submissions: grade each submission as a task on Dask distributed workers: local:N, N worker "
        "processes here, or a running scheduler's address (tcp://host:8786); the gradebook is written here",
    )


def _args_gradescope(sub) -> None:
    p = sub.add_parser("gradescope", help="build the Gradescope autograder zip (no solution code)")
    p.add_argument("labs", nargs="*", metavar="LAB", help="the labs this assignment grades (default: all)")
    p.add_argument(
        "--seed", type=int, required=True, metavar="S", help="the hidden seed of the official grading (not 0)"
    )
    from course.staff.gradescope import build_autograder

    default = build_autograder.__kwdefaults__["timeout"]  # the one default, the function's own
    p.add_argument("--timeout", type=float, metavar="S", help=f"seconds per test on Gradescope (default {default:g})")
    p.add_argument("--out", default="dist", help="folder for the zip (default: dist/)")
    p.set_defaults(func=_cmd_gradescope)


def _args_assign(sub) -> None:
    p = sub.add_parser("assign", help="generate labs/ (student stubs) from solutions/")
    p.add_argument("--check", action="store_true", help="only check that labs/ is up to date; exit 1 if stale")
    p.set_defaults(func=_cmd_assign)


def _args_notebooks(sub) -> None:
    p = sub.add_parser("notebooks", help="build notebooks/ (students, from labs/) and the README's Colab/Binder links")
    p.add_argument("--check", action="store_true", help="only check that notebooks/ and the links are up to date")
    p.add_argument(
        "--solutions",
        action="store_true",
        help="also execute the solution notebooks, outputs inline, into --out (staff)",
    )
    p.add_argument("labs", nargs="*", metavar="LAB", help="with --solutions: the labs to execute (default: all)")
    p.add_argument("--out", default="solution-notebooks", help="folder for the executed solution notebooks")
    p.add_argument("--quick", action="store_true", help="with --solutions: COURSE_QUICK=1 (short training runs)")
    p.set_defaults(func=_cmd_notebooks)


def _args_similarity(sub) -> None:
    p = sub.add_parser("similarity", help="similar code between students, per lab: a ranked CSV and an HTML report")
    p.add_argument(
        "submissions", metavar="SUBMISSIONS", help="one folder or .zip per student, as for grade --submissions"
    )
    p.add_argument("labs", nargs="*", metavar="LAB", help="labs to compare (default: every lab handed in)")
    p.add_argument("--out", default="similarity", metavar="DIR", help="where similarity.csv and .html go")
    p.add_argument(
        "--threshold",
        type=float,
        metavar="F",
        help="flag a pair when either student shares at least this fraction of their own code (default 0.5, "
        "course.staff.similarity.THRESHOLD)",
    )
    p.add_argument(
        "--roster", metavar="CSV", help="a roster with a group column: pairs of one group are listed apart, not flagged"
    )
    p.set_defaults(func=_cmd_similarity)


def _args_gradebook(sub) -> None:
    p = sub.add_parser(
        "gradebook", help="a gradebook an LMS imports (Canvas' CSV, or the plain one) from a graded class"
    )
    p.add_argument(
        "graded", metavar="GRADED_DIR", help="the --out of `course grade --submissions` (STUDENT/results.json)"
    )
    p.add_argument(
        "--roster", metavar="CSV", help="folder,Student,ID,SIS User ID,SIS Login ID,Section (canvas: needed)"
    )
    p.add_argument("--format", choices=["canvas", "plain"], default="canvas", help="the gradebook's layout (canvas)")
    p.add_argument("--out", default="gradebook-canvas.csv", metavar="PATH", help="the gradebook CSV to write")
    p.add_argument(
        "--missing-as-zero", action="store_true", help="0 for a roster student with no submission (default: blank)"
    )
    p.add_argument(
        "--column",
        action="append",
        metavar="LAB=NAME",
        help="a lab's column name, e.g. 'lab01=Lab 1 (12345)' for an existing Canvas assignment (repeatable)",
    )
    p.set_defaults(func=_cmd_gradebook)


def _args_analyze(sub) -> None:
    p = sub.add_parser("analyze", help="what a graded class struggles with: tests.csv, messages.csv, index.html")
    p.add_argument(
        "graded", metavar="GRADED_DIR", help="the --out of `course grade --submissions` (STUDENT/results.json)"
    )
    p.add_argument("--out", default="analysis", metavar="DIR", help="where the page and the CSVs go (analysis/)")
    p.set_defaults(func=_cmd_analyze)


def _args_groups(sub) -> None:
    p = sub.add_parser("groups", help="homework groups within each section, from the roster: the roster + group")
    p.add_argument("roster", metavar="ROSTER", help="folder,Student,ID,SIS User ID,SIS Login ID,Section")
    p.add_argument("--size", type=int, required=True, metavar="K", help="students a group (sizes K or K+1)")
    p.add_argument(
        "--seed", type=int, required=True, metavar="N", help="the shuffle's seed: the same seed, the same groups"
    )
    p.add_argument("--out", default="groups.csv", metavar="PATH", help="the roster with a group column (groups.csv)")
    p.add_argument(
        "--avoid", metavar="CSV", help="earlier groups (folder,group): keep their members apart where possible"
    )
    p.set_defaults(func=_cmd_groups)


def _args_site(sub) -> None:
    p = sub.add_parser("site", help="build the course's website, offline (Sphinx; the `site` dependency group)")
    p.add_argument("--out", default="build/site", help="folder for the site, index.html at its root (build/site)")
    p.add_argument(
        "--cache",
        default="build/site-cache",
        help="the demos' figures, the pages' sources and Sphinx's cache, kept between builds (build/site-cache)",
    )
    p.add_argument(
        "--jobs", "-j", type=int, default=2, metavar="N", help="demos run in N processes at once (default 2)"
    )
    p.add_argument(
        "--no-check", action="store_true", help="skip the checks after Sphinx (links, outside files, solutions)"
    )
    p.set_defaults(func=_cmd_site)


def _args_release(sub) -> None:
    p = sub.add_parser("release", help="build the student bundle (no solution code)")
    p.add_argument("--out", default="dist", help="folder for the bundle (default: dist/)")
    p.set_defaults(func=_cmd_release)


COMMANDS = [
    _args_list,
    _args_run,
    _args_grade,
    _args_gradescope,
    _args_assign,
    _args_notebooks,
    _args_similarity,
    _args_gradebook,
    _args_analyze,
    _args_groups,
    _args_site,
    _args_release,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="course", description=__doc__.split("\n\n")[0].replace("``", ""))
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.command_line = argv is None  # the real command line, not a call from Python (a test, a notebook)
    if argv is None and args.command == "run":  # the real command line: train with huge pages where that helps
        from course.staff.hugepages import restart_with_hugepages

        restart_with_hugepages()  # starts this command over, once, with GLIBC_TUNABLES set (else returns)
    try:
        return args.func(args)
    except CourseError as exc:
        print(f"course: {exc}", file=sys.stderr)
        return 2
