"""Grading speed: the student's loop (check, course grade, nox -s grade) warm and cold, the new way beside
the old, then one lab, every lab, and a class of synthetic submissions (tables).

    python benchmarks/bench_grading.py [--lab lab01] [--function step] [--repeat 5]
                                       [--class-size 50] [--class-labs lab01 lab02] [--jobs 2]
    python benchmarks/bench_grading.py --throughput [--class-size 6] [--class-labs lab01] [--timeout 5]
    python benchmarks/bench_grading.py --isolation-only [--repeat 5]

Every run starts with the isolation table: the student's loop (``check`` in a warm kernel, ``course
grade``) and a class of six (honest, and a hostile mix) with each sandbox in namespaces of its own
(after, :mod:`course.grader.isolation`) and without (before, ``--isolation off``), interleaved.

The loop's table times each way a student checks, with the grader's processes forked from a warm
zygote (now) and started from scratch (``COURSE_WARM=0``: the old path), interleaved, median of
``--repeat`` runs, on the solution so that every test runs to its end:

  * ``check(lab, function)`` and ``check(lab)`` in one long-lived process, as a notebook's kernel
    calls them (a saved solution notebook, ``notebook=``);
  * ``python -m course grade lab`` and ``python -m nox -s grade -- lab`` from a shell;
  * a lab's first grade: ``course grade`` with an empty compilation cache and no daemon yet
    (``COURSE_WARM=1``), as on a new machine; ``--first-grades``: every lab's.

Everything is graded against copies made here: the solutions, the generated stubs, and "broken"
files (a solution with one function that loops, one that crashes the process, and a syntax error).
Compilation caches are warmed by a first run that is not timed.

``--throughput`` adds the class's table after the loop's: submissions a minute through ``grade_class`` at
``--jobs 1`` and ``--jobs 2``, for an honest class (every submission a solution) and a hostile mix (a
third each: solutions, solutions whose ``sigmoid`` loops, solutions whose ``step`` exits the process),
each without a time budget (``--budget off``, before) and with the default one (3 x ``--timeout``, after).
``loops everywhere`` is every function of the lab looping (``loops_everywhere``), the case the budget is for;
BROKEN's one looping function costs one or two timeouts, under the budget either way.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course import labs  # noqa: E402
from course.grader import check, grade  # noqa: E402
from course.grader.batch import grade_class  # noqa: E402
from course.grader.lab_plugin import sandbox_cache_for  # noqa: E402
from course.staff import assign, notebooks

BROKEN = {
    "loops": "\ndef sigmoid(z):\n    while True:\n        pass\n",
    "crashes": "\nimport os\ndef step(z):\n    os._exit(3)\n",
    "syntax": "\ndef oops(:\n",
}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def make_class(folder: Path, size: int, lab_ids: list[str], seed: int = 0) -> dict[str, int]:
    """``size`` students, each lab a solution, a stub or a broken solution, drawn at random."""
    rng = random.Random(seed)
    solutions = labs.lab_files("solutions")
    stubs = assign.generated()
    kinds = {"solution": 0, "stub": 0, **{k: 0 for k in BROKEN}}
    for i in range(size):
        student = folder / f"student{i:03d}"
        student.mkdir(parents=True)
        for lid in lab_ids:
            path = solutions[lid]
            kind = rng.choice(list(kinds))
            kinds[kind] += 1
            text = stubs[path.name] if kind == "stub" else path.read_text() + BROKEN.get(kind, "")
            (student / path.name).write_text(text)
    return kinds


def loops_everywhere(source: str) -> str:
    """A lab file with every function's body replaced by ``while True: pass``."""
    import ast

    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            node.body = ast.parse("while True:\n    pass").body
    return ast.unparse(tree)


def mixed_class(folder: Path, size: int, lab_ids: list[str], kinds: list[str]) -> dict[str, int]:
    """``size`` students, the i-th submitting ``kinds[i % len(kinds)]`` for every lab: a solution, one
    of ``BROKEN``'s (a solution with a function that exits the process, ...), or ``loops everywhere``."""
    solutions = labs.lab_files("solutions")
    counts = dict.fromkeys(kinds, 0)
    for i in range(size):
        kind = kinds[i % len(kinds)]
        counts[kind] += 1
        (folder / f"student{i:03d}").mkdir(parents=True)
        for lid in lab_ids:
            path = solutions[lid]
            text = path.read_text()
            text = loops_everywhere(text) if kind == "loops everywhere" else text + BROKEN.get(kind, "")
            (folder / f"student{i:03d}" / path.name).write_text(text)
    return counts


def throughput_table(size: int, lab_ids: list[str], timeout: float, jobs: list[int]) -> None:
    """Class throughput (submissions/min) before the time budget (off) and after (the default), as a table."""
    grade(lab_ids, impl="solutions", timeout=timeout)  # warm the compilation caches
    mixes = {"honest": ["solution"], "hostile": ["solution", "loops everywhere", "crashes"]}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mix, kinds in mixes.items():
            counts = mixed_class(Path(tmp) / mix, size, lab_ids, kinds)
            for n in jobs:
                cells = {}
                for budget in ("off", "auto"):  # interleaved, so that the machine's load weighs on both alike
                    out = Path(tmp) / f"grades-{mix}-{n}-{budget}"
                    seconds, gradebook = timed(
                        lambda: grade_class(
                            Path(tmp) / mix,
                            out,
                            labs=lab_ids,
                            jobs=n,
                            timeout=timeout,
                            budget=budget,
                            warm_cache=sandbox_cache_for("solutions"),
                            log=lambda line: None,
                        )
                    )
                    with gradebook.open(newline="") as f:
                        total = sum(float(row["total"]) for row in csv.DictReader(f))
                    cells[budget] = (seconds, total)
                mixed = ", ".join(f"{c} {k}" for k, c in counts.items())
                rows.append((f"{mix} ({mixed})", n, cells))
    budget = f"budget {3 * timeout:g} s"
    width = max(len(r[0]) for r in rows)
    print(
        f"\nClass throughput: {size} submissions of {' '.join(lab_ids)}, --timeout {timeout:g}; "
        "submissions/min (seconds; the class's points)"
    )
    print(f"{'class':<{width}}  jobs  {'budget off (before)':>24}  {budget + ' (after)':>24}  after/before")
    for what, n, cells in rows:
        shown = [f"{60 * size / sec:6.1f} ({sec:5.1f} s; {pts:g})" for sec, pts in (cells["off"], cells["auto"])]
        speedup = cells["off"][0] / cells["auto"][0]
        print(f"{what:<{width}}  {n:>4}  {shown[0]:>24}  {shown[1]:>24}  {speedup:11.2f}x", flush=True)


@contextlib.contextmanager
def old_path(old: bool):
    """``COURSE_WARM=0`` inside the block when ``old``: every grading process started from scratch (the
    kernel's zygote stays, unused, as a notebook's does between checks)."""
    before = os.environ.get("COURSE_WARM")
    if old:
        os.environ["COURSE_WARM"] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("COURSE_WARM", None)
        else:
            os.environ["COURSE_WARM"] = before


def shell(args: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, env={**os.environ, **(env or {})}, capture_output=True, text=True, cwd=labs.root())
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds


def loop_table(lab: str, function: str, repeat: int) -> None:
    """The student's loop, now (warm zygote) and the old path (processes from scratch), as a table."""
    lid = labs.lab_id(lab)
    with tempfile.TemporaryDirectory() as tmp:
        notebook = Path(tmp) / f"{labs.lab_files('solutions')[lid].stem}.ipynb"
        notebook.write_text(notebooks.dumps(notebooks.build(labs.lab_files("solutions")[lid], checks=False)))
        course = [sys.executable, "-m", "course", "grade", lid, "--impl", "solutions"]
        rows = {
            f"check({lid!r}, {function!r}), warm kernel": lambda: check.check(lid, function, notebook=notebook),
            f"check({lid!r}), warm kernel": lambda: check.check(lid, notebook=notebook),
            f"python -m course grade {lid}": lambda: shell(course),
        }
        nox = [sys.executable, "-m", "nox"] if _has("nox") else [shutil.which("nox")] if shutil.which("nox") else None
        if nox:
            nox += ["-s", "grade", "--", lid, "--impl", "solutions"]
            rows[f"python -m nox -s grade -- {lid}"] = lambda: shell(nox)
        times: dict[tuple[str, bool], list[float]] = {}
        for old in (False, True):  # warm both ways first: compilation caches, the kernel's zygote
            with old_path(old):
                for fn in rows.values():
                    fn()
        for _ in range(repeat):
            for old in (False, True):
                with old_path(old):
                    for what, fn in rows.items():
                        start = time.perf_counter()
                        result = fn()
                        took = result if isinstance(result, float) else time.perf_counter() - start
                        times.setdefault((what, old), []).append(took)
        for old in (False, True):  # a lab's first grade: no compilation cache at all
            for _ in range(max(1, repeat // 2)):
                with tempfile.TemporaryDirectory() as cache:
                    took = shell(course, {"COURSE_CACHE_DIR": cache, "COURSE_WARM": "0" if old else "1"})
                times.setdefault((f"{lid}'s first grade (empty compilation cache)", old), []).append(took)
    whats = list(dict.fromkeys(w for w, _ in times))
    width = max(map(len, whats))
    print(
        f"\nThe student's loop: {lid}, solutions, median of {repeat} (s); old = COURSE_WARM=0, processes from scratch"
    )
    print(f"{'what':<{width}}  {'now':>6}  {'old':>6}  {'now/old':>7}  runs now")
    for what in whats:
        now, old = statistics.median(times[(what, False)]), statistics.median(times[(what, True)])
        runs = " ".join(f"{t:.2f}" for t in times[(what, False)])
        print(f"{what:<{width}}  {now:6.2f}  {old:6.2f}  {now / old:6.2f}x  {runs}")


@contextlib.contextmanager
def unisolated(off: bool):
    """Inside the block when ``off``: ``check()`` and ``grade()`` grade as before the namespaces
    (``isolation`` auto then finds them unavailable); ``course grade`` is given ``--isolation off``."""
    from course.grader import isolation

    before = isolation.unavailable
    if off:
        isolation.unavailable = lambda: "turned off for the benchmark"
    try:
        yield
    finally:
        isolation.unavailable = before


def isolation_table(lab: str, function: str, repeat: int, size: int, lab_ids: list[str], timeout: float) -> None:
    """The student's loop and a class's throughput, the sandboxes isolated (after) and not (before), interleaved."""
    from course.grader import isolation

    if isolation.unavailable() is not None:
        print(f"\nIsolation: not available here ({isolation.unavailable()}); no table")
        return
    lid = labs.lab_id(lab)
    times: dict[tuple[str, bool], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        notebook = Path(tmp) / f"{labs.lab_files('solutions')[lid].stem}.ipynb"
        notebook.write_text(notebooks.dumps(notebooks.build(labs.lab_files("solutions")[lid], checks=False)))
        course = [sys.executable, "-m", "course", "grade", lid, "--impl", "solutions"]
        rows = {
            f"check({lid!r}, {function!r}), warm kernel": lambda off: check.check(lid, function, notebook=notebook),
            f"check({lid!r}), warm kernel": lambda off: check.check(lid, notebook=notebook),
            f"python -m course grade {lid}": lambda off: shell(course + (["--isolation", "off"] if off else [])),
        }
        for _ in range(repeat + 1):  # the first round warms the caches, and is not counted
            for off in (True, False):
                with unisolated(off):
                    for what, fn in rows.items():
                        start = time.perf_counter()
                        result = fn(off)
                        took = result if isinstance(result, float) else time.perf_counter() - start
                        times.setdefault((what, off), []).append(took)
        for kind, kinds in {"honest": ["solution"], "hostile": ["solution", "loops everywhere", "crashes"]}.items():
            counts = mixed_class(Path(tmp) / kind, size, lab_ids, kinds)
            what = f"class of {size}, {kind} ({', '.join(f'{c} {k}' for k, c in counts.items())}), --jobs 2"
            for off in (True, False) * 2:  # twice each, interleaved
                out = Path(tmp) / f"grades-{kind}-{off}-{len(times.get((what, off), []))}"
                seconds, _ = timed(
                    lambda: grade_class(
                        Path(tmp) / kind,
                        out,
                        labs=lab_ids,
                        jobs=2,
                        timeout=timeout,
                        isolation="off" if off else "required",
                        warm_cache=sandbox_cache_for("solutions"),
                        log=lambda line: None,
                    )
                )
                times.setdefault((what, off), [None]).append(60 * size / seconds)  # submissions/min
    starts = sandbox_starts(repeat * 4)
    whats = list(dict.fromkeys(w for w, _ in times)) + list(starts)
    width = max(map(len, whats))
    print(
        f"\nIsolation (course.grader.isolation): {lid}, solutions; the loop in s, median of {repeat}; a class of "
        f"{' '.join(lab_ids)} at --timeout {timeout:g} in submissions/min; before = --isolation off"
    )
    print(f"{'what':<{width}}  {'before':>7}  {'after':>7}  {'after/before':>12}")
    for what in whats:
        if what in starts:
            before, after = starts[what]
        else:
            before = statistics.median(times[(what, True)][1:])
            after = statistics.median(times[(what, False)][1:])
        print(f"{what:<{width}}  {before:7.3f}  {after:7.3f}  {after / before:11.2f}x", flush=True)


def sandbox_starts(repeat: int) -> dict[str, tuple[float, float]]:
    """A sandbox's start (s, median): a fork of a process that has imported JAX, alone (before) and then
    entering its namespaces (after); and bubblewrap's way, which must exec Python and import JAX again."""
    import jax.numpy  # noqa: F401 - as the fork server has

    from course.grader import isolation

    def once(isolate: bool) -> float:
        read, write = os.pipe()
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            if isolate:
                os.setsid()
                isolation.enter(lab_path=isolation.__file__, workdir="/tmp/w", uid=None, gid=None, cache=None)
            os.write(write, b"x")
            os._exit(0)
        os.read(read, 1)
        took = time.perf_counter() - start
        os.waitpid(pid, 0)
        os.close(read)
        os.close(write)
        return took

    runs: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeat):
        for isolate in (False, True):
            runs[isolate].append(once(isolate))
    plain, isolated = statistics.median(runs[False]), statistics.median(runs[True])
    rows = {"a sandbox's start: fork, then its namespaces": (plain, isolated)}
    bwrap = shutil.which("bwrap")
    if bwrap:
        command = [bwrap, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "--dev", "/dev"]
        took = [shell([*command, sys.executable, "-c", "import jax.numpy"]) for _ in range(3)]
        rows["a sandbox's start: fork; bwrap + exec + import jax"] = (plain, statistics.median(took))
    return rows


def first_grades() -> None:
    """Each lab's first grade (``course grade``, no compilation cache), now and on the old path."""
    print("\nA lab's first grade: python -m course grade LAB --impl solutions, empty compilation cache (s)")
    print(f"{'lab':<6}  {'now':>6}  {'old':>6}  {'now/old':>7}")
    for lid in labs.lab_files("solutions"):
        command = [sys.executable, "-m", "course", "grade", lid, "--impl", "solutions"]
        took = {}
        for old in (False, True):
            with tempfile.TemporaryDirectory() as cache:
                took[old] = shell(command, {"COURSE_CACHE_DIR": cache, "COURSE_WARM": "0" if old else "1"})
        print(f"{lid:<6}  {took[False]:6.1f}  {took[True]:6.1f}  {took[False] / took[True]:6.2f}x", flush=True)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def header() -> None:
    versions = ", ".join(f"{d} {metadata.version(d)}" for d in ("jax", "jaxlib", "pytest"))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"== {time.strftime('%Y-%m-%d %H:%M')}; {platform.machine()}, {os.cpu_count()} cores; Python")
    print(f"   {platform.python_version()}, {versions}; load average {load}; user {os.geteuid()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", default="lab01", help="the lab of the loop's table")
    parser.add_argument("--function", default="step", help="the function of check(lab, function)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--loop-only", action="store_true", help="only the loop's table")
    parser.add_argument("--first-grades", action="store_true", help="also every lab's first grade, now and old")
    parser.add_argument("--class-size", type=int, default=50)
    parser.add_argument("--class-labs", nargs="+", default=["lab01", "lab02"])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--skip-all", action="store_true", help="skip grading every lab (the slow row)")
    parser.add_argument(
        "--throughput",
        action="store_true",
        help="after the loop's table, the class's throughput before and after the time budget (then stop)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="--throughput: seconds per test (default 10)")
    parser.add_argument(
        "--isolation-only", action="store_true", help="only the table of isolated sandboxes, before and after"
    )
    args = parser.parse_args()

    header()
    isolation_table(args.lab, args.function, args.repeat, 6, args.class_labs[:1], 5.0)
    if args.isolation_only:
        return
    loop_table(args.lab, args.function, args.repeat)
    if args.first_grades:
        first_grades()
    if args.throughput:
        throughput_table(args.class_size, args.class_labs, args.timeout, sorted({1, args.jobs} | {2}))
    print(f"   load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.loop_only or args.throughput:
        return
    rows = []
    grade(["lab01"], impl="solutions")  # warm the compilation caches
    seconds, report = timed(lambda: grade(["lab01"], impl="solutions"))
    rows.append(("one lab (lab01), solutions", seconds, f"{report.score:g}/{report.max_score:g}"))
    if not args.skip_all:
        grade(impl="solutions", jobs=args.jobs)
        seconds, report = timed(lambda: grade(impl="solutions", jobs=args.jobs))
        rows.append((f"every lab, solutions, --jobs {args.jobs}", seconds, f"{report.score:g}/{report.max_score:g}"))
    with tempfile.TemporaryDirectory() as tmp:
        kinds = make_class(Path(tmp) / "subs", args.class_size, args.class_labs)
        seconds, _ = timed(
            lambda: grade_class(
                Path(tmp) / "subs",
                Path(tmp) / "grades",
                labs=args.class_labs,
                jobs=args.jobs,
                warm_cache=sandbox_cache_for("solutions"),
                log=lambda line: None,
            )
        )
        mix = ", ".join(f"{n} {k}" for k, n in kinds.items())
        rows.append(
            (
                f"class of {args.class_size} ({' '.join(args.class_labs)}; {mix})",
                seconds,
                f"{60 * args.class_size / seconds:.1f} submissions/min",
            )
        )
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'seconds':>8}  result")
    for what, seconds, result in rows:
        print(f"{what:<{width}}  {seconds:8.1f}  {result}")


if __name__ == "__main__":
    main()
