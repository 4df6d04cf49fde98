"""Grading speed: one lab, every lab, and a class of synthetic submissions (a table).

    python benchmarks/bench_grading.py [--class-size 50] [--class-labs lab01 lab02] [--jobs 2]

Everything is graded against copies made here: the solutions, the generated stubs, and "broken"
files (a solution with one function that loops, one that crashes the process, and a syntax error).
Compilation caches are warmed by a first run that is not timed.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course import assign, labs  # noqa: E402
from course.grader import grade  # noqa: E402
from course.grader.batch import grade_class  # noqa: E402
from course.testing.plugin import cache_root  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--class-size", type=int, default=50)
    parser.add_argument("--class-labs", nargs="+", default=["lab01", "lab02"])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--skip-all", action="store_true", help="skip grading every lab (the slow row)")
    args = parser.parse_args()

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
                warm_cache=cache_root() / "jax-sandbox",
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
