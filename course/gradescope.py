"""Build the Gradescope autograder: a zip with ``setup.sh``, ``run_autograder`` and the course, no solutions.

Gradescope unpacks the zip into ``/autograder/source``, runs ``setup.sh`` once when it builds the
image, and ``run_autograder`` for every submission, which it places in ``/autograder/submission``;
the grade is whatever ``/autograder/results/results.json`` says. Ours runs ``course grade`` on the
submission with the staff's hidden seed, so answers tabled from the visible tests fail.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path

from course import labs as _labs
from course import release as _release

NAME = "make-you-dangerous-autograder"

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (Ubuntu).
set -euo pipefail
cd "$(dirname "$0")"
apt-get update -y && apt-get install -y --no-install-recommends python3 python3-venv python3-pip
python3 -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --quiet uv
/autograder/venv/bin/python -m uv pip install --python /autograder/venv/bin/python .
# The sandbox runs the student's code as the unprivileged user nobody, who must read Python and the course.
chmod -R a+rX /autograder/venv "$(pwd)"
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this for every submission. AUTOGRADER_ROOT and COURSE_PYTHON exist for testing it.
set -uo pipefail
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
PYTHON="${{COURSE_PYTHON:-$ROOT/venv/bin/python}}"
cd "$ROOT/source"
mkdir -p "$ROOT/results"
exec "$PYTHON" -m course grade {labs}--impl "$ROOT/submission" --results "$ROOT/results/results.json" \\
    --seed "${{COURSE_SEED:-{seed}}}" --timeout "${{COURSE_TIMEOUT:-{timeout:g}}}"
"""


def build_autograder(out: Path, *, labs: list[str] | None = None, seed: int = 0, timeout: float = 30.0) -> Path:
    """Write ``out/make-you-dangerous-autograder.zip``; returns its path.

    Args:
      labs: the labs this assignment grades (default: every lab with tests).
      seed: the hidden seed the official grading uses (students grade themselves with seed 0).
      timeout: seconds one test may spend in the student's code on Gradescope's machine.
    """
    if not _labs.has_solutions():
        raise _labs.CourseError("the autograder is built from the staff repository, which has solutions/")
    if seed == 0:
        raise _labs.CourseError("choose a hidden seed (--seed S, not 0): with seed 0 the official inputs are "
                                "the ones students see")
    lab_ids = [_labs.lab_id(x) for x in labs] if labs else []
    out = Path(out).resolve()
    folder = out / NAME
    if folder.exists():
        shutil.rmtree(folder)
    src = _labs.root()
    for name in ("course", "tests/labs", "pyproject.toml", "README.md"):
        path = src / name
        if path.is_dir():
            shutil.copytree(path, folder / name, ignore=shutil.ignore_patterns(*_release.SKIP))
        else:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, folder / name)
    scripts = {"setup.sh": SETUP, "run_autograder": RUN.format(
        labs="".join(f"{lid} " for lid in lab_ids), seed=seed, timeout=timeout)}
    for name, text in scripts.items():
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    problems = _release.leaks(folder)
    if problems:
        shutil.rmtree(folder)
        raise _labs.CourseError("refusing to build; the autograder would contain solution code:\n  " + "\n  ".join(problems))
    archive = out / f"{NAME}.zip"
    tmp = archive.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo.from_file(path, path.relative_to(folder))  # at the zip's top, as Gradescope wants
                info.external_attr = (stat.S_IFREG | path.stat().st_mode & 0o777) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
    tmp.replace(archive)
    return archive
