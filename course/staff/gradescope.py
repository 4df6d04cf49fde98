"""Build the Gradescope autograder: a zip with ``setup.sh``, ``run_autograder`` and the course, no solutions.

Gradescope unpacks the zip into ``/autograder/source``, runs ``setup.sh`` once when it builds the
image, and ``run_autograder`` for every submission, which it places in ``/autograder/submission``;
the grade is whatever ``/autograder/results/results.json`` says. Ours runs ``course grade`` on the
submission with the staff's hidden seed, so answers tabled from the visible tests fail. Gradescope
also writes ``/autograder/submission_metadata.json``, whose ``users`` are the submission's members
(several for a group submission); they are recorded in results.json's ``extra_data``.
"""

from __future__ import annotations

import json
from pathlib import Path

from course import labs as _labs
from course.errors import CourseError
from course.grader import Settings
from course.staff import release as _release

NAME = "make-you-dangerous-autograder"
# What is kept of each of submission_metadata.json's users: Gradescope documents name, email and id
# (https://gradescope-autograders.readthedocs.io/en/latest/submission_metadata/); sid where a course has one.
MEMBER_FIELDS = ("name", "email", "id", "sid")

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (Ubuntu).
set -euo pipefail
cd "$(dirname "$0")"
apt-get update -y && apt-get install -y --no-install-recommends python3 python3-venv python3-pip
python3 -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --quiet uv
/autograder/venv/bin/python -m uv pip install --python /autograder/venv/bin/python .
# The sandbox runs the student's code as the unprivileged user nobody, who must read Python and the course
# (run_autograder names nobody, so grading refuses to start rather than run the student's code as root).
chmod -R a+rX /autograder/venv "$(pwd)"
chmod a+x "$(cd .. && pwd)"
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this for every submission. AUTOGRADER_ROOT, COURSE_PYTHON and COURSE_SANDBOX_USER exist
# for testing it; the student's code runs as nobody, never as root.
set -uo pipefail
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
PYTHON="${{COURSE_PYTHON:-$ROOT/venv/bin/python}}"
cd "$ROOT/source"
mkdir -p "$ROOT/results"
# One submission per container: a warm grader for this run only, no daemon left behind.
export COURSE_WARM="${{COURSE_WARM:-1}}"
exec "$PYTHON" -m course grade {labs}--impl "$ROOT/submission" --results "$ROOT/results/results.json" \\
    --seed "${{COURSE_SEED:-{seed}}}" --timeout "${{COURSE_TIMEOUT:-{timeout:g}}}" \\
    --budget "${{COURSE_BUDGET:-{budget}}}" \\
    --sandbox-user "${{COURSE_SANDBOX_USER:-nobody}}" --metadata "$ROOT/submission_metadata.json"
"""


def build_autograder(
    out: Path, *, labs: list[str] | None = None, seed: int = 0, timeout: float = 30.0, budget: float | str = "auto"
) -> Path:
    """Write ``out/make-you-dangerous-autograder.zip``; returns its path.

    Args:
      labs: the labs this assignment grades (default: every lab with tests).
      seed: the hidden seed the official grading uses (students grade themselves with seed 0).
      timeout: seconds one test may spend in the student's code on Gradescope's machine.
      budget: seconds a lab's tests that do not pass may spend there together (``auto``: 3 x ``timeout``;
        ``off``); ``COURSE_BUDGET`` overrides it at grading time, as ``COURSE_TIMEOUT`` does the timeout.
    """
    if not _labs.has_solutions():
        raise CourseError("the autograder is built from the staff repository, which has solutions/")
    if seed == 0:
        raise CourseError(
            "choose a hidden seed (--seed S, not 0): with seed 0 the official inputs are the ones students see"
        )
    Settings(timeout=timeout, budget=budget)  # a budget that is not seconds, auto or off fails here, not on Gradescope
    lab_ids = [_labs.lab_id(x) for x in labs] if labs else []
    run = RUN.format(labs="".join(f"{lid} " for lid in lab_ids), seed=seed, timeout=timeout, budget=budget)
    return _release.pack(
        out,
        NAME,
        ["course", "tests/labs", "pyproject.toml", "README.md"],
        scripts={"setup.sh": SETUP, "run_autograder": run},
        what="the autograder",
    )


def members(metadata: Path) -> list[dict]:
    """The submission's members from Gradescope's ``submission_metadata.json``: each user's name, email, id
    (and sid where present), in its order; several for a group submission."""
    metadata = Path(metadata)
    try:
        users = json.loads(metadata.read_text(encoding="utf-8"))["users"]
        if not isinstance(users, list) or not all(isinstance(u, dict) for u in users):
            raise TypeError("users is not a list of objects")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CourseError(f"{metadata}: not Gradescope's submission metadata, no list of users ({exc})") from None
    return [{k: u[k] for k in MEMBER_FIELDS if k in u} for u in users]


def record_members(results: Path, metadata: Path) -> list[dict] | None:
    """Add the members in ``metadata`` to ``results``' ``extra_data`` (as ``members``); None where there is no
    metadata file (grading outside Gradescope)."""
    if not Path(metadata).exists():
        return None
    found = members(metadata)
    results = Path(results)
    data = json.loads(results.read_text(encoding="utf-8"))
    data.setdefault("extra_data", {})["members"] = found
    tmp = results.with_name(results.name + ".tmp")  # atomically, as write_gradescope does
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(results)
    return found
