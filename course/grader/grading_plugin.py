"""The pytest plugin of a grading process: decides each test's status and reports it to the grader.

This process is trusted: it runs the tests, whose ``lab`` runs the student's code in a sandbox
(:mod:`course.grader.outside`), and never imports that code itself. Each line written to the pipe in
``$COURSE_GRADER_FD`` is one JSON event: ``collected`` (the graded tests with their lab and points)
and ``result`` (a test's status and a message written for the student; for a failed comparison of
image-like arrays, its picture as base64 PNG, or a sentence saying why there is none).

The lab's time budget (the grader's settings, :class:`course.grader.model.ProcessSettings`): the seconds
of the student's code that each lab's tests which do not pass may spend together in this process. Once
they have, the lab's remaining tests are "not run" (0 points); the
time is the sandbox's (the tests' clock, :class:`course.grader.outside.TestClock`), measured here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import traceback
from pathlib import Path

import pytest

from course import labs as _labs
from course.errors import CourseError
from course.grader import lab_plugin, locations
from course.grader.model import Status
from course.grader.outside import SandboxFailure, StudentError
from course.grader.privacy import set_dumpable
from course.labs import STUB_MESSAGE

# Errors whose JAX wording does not say what to do about them, and the advice to give.
HINTS = [
    ("TracerBoolConversionError", "a Python `if` on a traced value; use jnp.where or lax.cond instead"),
    (
        "ConcretizationTypeError",
        "a Python `if`/`for`/int() on a traced value; use jnp.where or lax.cond, or mark the argument static",
    ),
    (
        "TracerIntegerConversionError",
        "int() or indexing with a traced value; keep shapes and sizes static (Python ints)",
    ),
    ("NonConcreteBooleanIndexError", "boolean masks change the shape; use jnp.where(mask, x, 0) instead of x[mask]"),
    ("codec can't decode", "the file is not saved as UTF-8 (a letter typed in another encoding?): save it as UTF-8"),
    ("Non-UTF-8 code", "the file is not saved as UTF-8 (a letter typed in another encoding?): save it as UTF-8"),
    ("null bytes", "the file holds NUL bytes, so it is not a text file: save it again as plain UTF-8 text"),
]
RANK_HINT = (
    "implicit rank promotion at {where}: {shapes}. Broadcasting an (N, 1) against an (N,) "
    "array makes an (N, N) matrix — the classic loss bug; reshape one side explicitly if that is not what you meant"
)

MESSAGE_LINES = 20  # of a failed assertion's message, kept: a comparison's two windows and its detail fit
_MODULE_NAME = re.compile(r"module '_course_(?P<lab>lab\d{2})\w*_[0-9a-f]{8}'")
_NO_FUNCTION = re.compile(_MODULE_NAME.pattern + r" has no attribute '(?P<name>\w+)'")
_stream = None
_results: dict[str, dict] = {}
_spent: dict[str, float] = {}  # lab -> seconds its tests that did not pass spent in the student's code


class BudgetSpent(Exception):
    """A test not run because its lab's time budget was spent by the tests before it."""


def _send(**event) -> None:
    _stream.write(json.dumps(event) + "\n")
    _stream.flush()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("course")
    group.addoption(
        "--share", default="0/1", help="I/N: run every N-th test from the I-th (the grader's groups of one lab)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep this process's share of the tests; remember where each stands among all of them."""
    i, n = (int(x) for x in config.getoption("--share").split("/"))
    for position, item in enumerate(items):
        item.stash[_POSITION] = position
        _LAB_OF[item.nodeid] = _labs.lab_of(item.path) or "other"  # the one rule, applied once a test
    if n > 1:
        config.hook.pytest_deselected(items=[item for p, item in enumerate(items) if p % n != i])
        items[:] = [item for p, item in enumerate(items) if p % n == i]


_POSITION = pytest.StashKey[int]()
_LAB_OF: dict[str, str] = {}  # nodeid -> its lab, for the hooks that are given only a nodeid


def pytest_configure(config: pytest.Config) -> None:
    global _stream
    # First: no sandbox of our own user may open our results channel (or read our environment, which
    # names it) through /proc. See course.grader.privacy.
    set_dumpable(False)
    from course.grader import outside

    outside.fork_server()  # started now, it imports JAX while this process imports the tests
    _stream = os.fdopen(int(os.environ["COURSE_GRADER_FD"]), "w", buffering=1, encoding="utf-8")


def _points(item: pytest.Item) -> float:
    marker = item.get_closest_marker("points")
    return float(marker.args[0]) if marker else 1.0


def _visibility(item: pytest.Item) -> str:
    marker = item.get_closest_marker("visibility")
    return str(marker.args[0]) if marker else "visible"


def _tags(item: pytest.Item) -> list[str]:
    return [str(t) for m in item.iter_markers("tags") for t in m.args]


def pytest_collection_finish(session: pytest.Session) -> None:
    # The tests were copied and hashed before any student code ran; a test file that differs now was
    # changed by someone else in the meantime, and no test of it is graded.
    manifest = json.loads(Path(lab_plugin.settings(session.config).manifest).read_text())
    changed = sorted(
        {
            str(item.path)
            for item in session.items
            if hashlib.sha256(item.path.read_bytes()).hexdigest() != manifest.get(str(item.path))
        }
    )
    tests = [
        {
            "nodeid": item.nodeid,
            "lab": _LAB_OF[item.nodeid],
            "points": _points(item),
            "visibility": _visibility(item),
            "tags": _tags(item),
            "position": item.stash.get(_POSITION, 0),
        }
        for item in session.items
    ]
    _send(event="collected", tests=tests, changed=changed)
    if changed:
        session.items.clear()


def pytest_runtest_logstart(nodeid: str, location) -> None:
    _results.pop(nodeid, None)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Run no more of a lab's tests once its budget is spent (before the fixtures, which may run lab code)."""
    budget = lab_plugin.settings(item.config).budget
    lab = _LAB_OF[item.nodeid]
    if budget is not None and _spent.get(lab, 0.0) >= budget:
        raise BudgetSpent("the lab's time budget is spent")  # the grader says how (runner.spend_budgets)
    clock = lab_plugin.current_clock()
    if clock is not None:  # the lab's import, if this test starts its sandbox, may take what is left
        clock.budget_left = None if budget is None else budget - _spent.get(lab, 0.0)


def _where(frames: list) -> str:
    """The innermost frame in the student's code, as ``file:line in function: code`` (a notebook: its cell)."""
    places = locations.current()
    for filename, lineno, name, line in reversed(frames):
        if isinstance(filename, str) and places.is_student(filename):
            return f"{places.place(filename, lineno)} in {name}: {line}".rstrip(": ")
    return "(not in your lab file)"


def _not_defined(exc: StudentError) -> str | None:
    """What to run next, where a test asked a notebook's lab for a function it has not defined (yet)."""
    found = _NO_FUNCTION.search(exc.message) if exc.type_name == "AttributeError" else None
    places = locations.current()
    if found is None or any(isinstance(f[0], str) and places.is_student(f[0]) for f in exc.frames):
        return None  # the student's own code asked for it: an error of theirs, with its line
    notebook = places.notebook_of(found["lab"])
    if notebook is None:  # a lab file: its AttributeError names the file
        return None
    if not notebook:
        return f"not defined yet: run the cell that defines `{found['name']}`"
    return f"not defined yet: {notebook} has no cell that defines `{found['name']}`"


def classify(exc: BaseException, tb) -> tuple[Status, str]:
    """A test's status and message, from the exception that ended it."""
    if isinstance(exc, SandboxFailure):
        return exc.status, str(exc)
    if isinstance(exc, BudgetSpent):
        return Status.NOT_RUN, str(exc)
    if isinstance(exc, CourseError):  # the grader's own words: a lab that could not be graded, and why
        return Status.ERROR, str(exc)
    if isinstance(exc, StudentError):
        if exc.type_name == "NotImplementedError" and STUB_MESSAGE.match(exc.message):
            return Status.NOT_ATTEMPTED, f"{exc.message} is still a stub (it raises NotImplementedError)"
        not_defined = _not_defined(exc)
        if not_defined is not None:
            return Status.NOT_DEFINED, not_defined
        if exc.type_name in ("SystemExit", "KeyboardInterrupt"):
            return Status.CRASHED, f"the code called sys.exit({exc.message}) / raised {exc.type_name}"
        text = f"{exc.type_name}: {exc.message}".split("\n--------------------")[0]  # JAX's note on filtered frames
        # The module's name is the grader's (course.labs.import_file); the student knows their file.
        text = _MODULE_NAME.sub(lambda m: f"your {m['lab']} file", text)
        hint = next((h for pattern, h in HINTS if pattern in exc.type_name or pattern in text), "")
        return Status.ERROR, f"{text}\n  at {_where(exc.frames)}" + (f"\n  hint: {hint}" if hint else "")
    if isinstance(exc, (AssertionError, pytest.fail.Exception)):
        message = str(exc).strip() or "assertion failed"
        return Status.FAILED, "\n".join(message.splitlines()[:MESSAGE_LINES])
    # An exception in the test itself, usually because the code returned something of the wrong kind.
    last = traceback.extract_tb(tb)[-1] if tb is not None else None
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    at = f"\n  at {Path(last.filename).name}:{last.lineno} in the test, using what your code returned" if last else ""
    return Status.ERROR, f"{text}{at}"


def rank_hints(hints: list) -> list[str]:
    out = []
    for h in hints:
        frames = h.get("frames") if isinstance(h.get("frames"), list) else []
        where = _where([f for f in frames if isinstance(f, list) and len(f) == 4])
        shapes = (
            str(h.get("message", "")).split(" Set the ")[0].replace("Following NumPy automatic rank promotion for ", "")
        ).rstrip(".")
        line = "hint: " + RANK_HINT.format(where=where, shapes=shapes)
        if line not in out:
            out.append(line)
    return out[:3]


def picture_of(exc: BaseException) -> dict[str, str]:
    """A failed comparison's picture (:mod:`course.grader.picture`), as the event carries it: the PNG in
    base64 (``picture``), or a sentence saying why there is none (``picture_note``); nothing when the
    arrays compared were not image-like. Drawn here, in the trusted process, from the arrays the test
    compared (:func:`course.grader.testing._failure`)."""
    compared = getattr(exc, "compared", None)
    if not (isinstance(compared, tuple) and len(compared) == 4):
        return {}
    from course.grader import picture

    what, want, got, worst = compared
    drawn = picture.draw(want, got, worst, what)
    if isinstance(drawn, picture.Picture):
        return {"picture": base64.b64encode(drawn.png).decode("ascii")}
    return {"picture_note": drawn} if drawn else {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    current = _results.setdefault(item.nodeid, {"status": Status.PASSED, "message": "", "duration": 0.0})
    current["duration"] += report.duration
    if report.passed:
        return
    if report.skipped:
        status, message = Status.SKIPPED, str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else "skipped"
    elif call.excinfo is not None:
        status, message = classify(call.excinfo.value, call.excinfo.tb)
        if report.when != "call" and status == Status.ERROR and not isinstance(call.excinfo.value, CourseError):
            message = f"(while setting up the test) {message}"
    else:
        status, message = Status.ERROR, str(report.longrepr)[-2000:]
    if status.rank > current["status"].rank:
        current.pop("picture", None)
        current.pop("picture_note", None)
        drawn = picture_of(call.excinfo.value) if status == Status.FAILED and call.excinfo is not None else {}
        current.update(status=status, message=message, **drawn)


def pytest_runtest_logfinish(nodeid: str, location) -> None:
    result = _results.pop(nodeid, {"status": Status.ERROR, "message": "no report", "duration": 0.0})
    clock = lab_plugin.current_clock()
    # The clock was reset for every test that ran (a "not run" or skipped test may see the one before).
    ran = clock is not None and result["status"] not in (Status.NOT_RUN, Status.SKIPPED)
    if result["status"] != Status.PASSED and ran and clock.hints:
        result["message"] = "\n".join([result["message"], *rank_hints(clock.hints)]).strip()
    result["student_seconds"] = round(clock.spent, 3) if ran else 0.0
    if result["status"].charged:
        lab = _LAB_OF[nodeid]
        _spent[lab] = _spent.get(lab, 0.0) + result["student_seconds"]
        result["charged"] = result["student_seconds"]
    _send(event="result", nodeid=nodeid, **result)
