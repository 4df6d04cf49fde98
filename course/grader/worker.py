"""pytest plugin loaded in the grader's worker process: reports tests to the parent as JSON lines.

The parent passes a pipe's file descriptor in ``$COURSE_GRADER_FD``. Each line is one event:
``collected`` (the graded tests with their points), ``start`` (a test began) and ``result`` (its
status and a message written for the student).
"""

from __future__ import annotations

import json
import os
import re
import traceback
from pathlib import Path

import pytest

from course.assign import STUB_MESSAGE

# Errors whose JAX wording does not say what to do about them.
HINTS = [
    ("jax_numpy_rank_promotion='raise'", "broadcast explicitly: add the missing axis, e.g. b[None, :] for an (N, n) + (n,) sum"),
    ("jax_numpy_dtype_promotion='strict'", "the two operands have different dtypes; convert one, e.g. x.astype(jnp.float32)"),
    ("ConcretizationTypeError", "a Python `if`/`for`/int() on a traced value; use jnp.where or lax.cond, or mark the argument static"),
    ("TracerBoolConversionError", "a Python `if` on a traced value; use jnp.where or lax.cond instead"),
]

_RANK = {"passed": 0, "skipped": 1, "failed": 2, "not attempted": 3, "error": 4, "crashed": 5}
_stream = None
_results: dict[str, dict] = {}


def _send(**event) -> None:
    _stream.write(json.dumps(event) + "\n")
    _stream.flush()


def pytest_configure(config: pytest.Config) -> None:
    global _stream
    _stream = os.fdopen(int(os.environ["COURSE_GRADER_FD"]), "w", buffering=1, encoding="utf-8")


def _points(item: pytest.Item) -> float:
    marker = item.get_closest_marker("points")
    return float(marker.args[0]) if marker else 1.0


def pytest_collection_finish(session: pytest.Session) -> None:
    tests = []
    for item in session.items:
        m = re.search(r"test_(lab\d{2})", item.path.name)
        tests.append({"nodeid": item.nodeid, "lab": m.group(1) if m else "other", "points": _points(item)})
    _send(event="collected", tests=tests)


def pytest_runtest_logstart(nodeid: str, location) -> None:
    _results.pop(nodeid, None)
    _send(event="start", nodeid=nodeid)


def _student_frame(excinfo: pytest.ExceptionInfo) -> str:
    """Where in the student's own file the exception came from (innermost such frame)."""
    impl_dir = Path(os.environ["COURSE_IMPL_DIR"])
    exc = excinfo.value
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}: {(exc.text or '').strip()}"
    for frame in reversed(traceback.extract_tb(excinfo.tb)):
        if Path(frame.filename).resolve().is_relative_to(impl_dir):
            return f"{frame.filename}:{frame.lineno} in {frame.name}: {frame.line}"
    last = traceback.extract_tb(excinfo.tb)[-1]
    return f"{last.filename}:{last.lineno} in {last.name} (not in your lab file)"


def _classify(excinfo: pytest.ExceptionInfo) -> tuple[str, str]:
    exc = excinfo.value
    if isinstance(exc, NotImplementedError) and STUB_MESSAGE.match(str(exc)):
        return "not attempted", f"{exc} is still a stub (it raises NotImplementedError)"
    if isinstance(exc, (SystemExit, KeyboardInterrupt)):
        return "crashed", f"the code called sys.exit({getattr(exc, 'code', '')}) / raised {type(exc).__name__}"
    if isinstance(exc, (AssertionError, pytest.fail.Exception)):
        message = str(exc).strip() or "assertion failed"
        # pytest's assertion rewriting appends the compared expression; the first lines say it best.
        return "failed", "\n".join(message.splitlines()[:12])
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    text = text.split("\n--------------------")[0]  # JAX's note about filtered frames says nothing here
    hint = next((h for pattern, h in HINTS if pattern in text), "")
    return "error", f"{text}\n  at {_student_frame(excinfo)}" + (f"\n  hint: {hint}" if hint else "")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    current = _results.setdefault(item.nodeid, {"status": "passed", "message": "", "duration": 0.0})
    current["duration"] += report.duration
    if report.passed:
        return
    if report.skipped:
        status, message = "skipped", str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else "skipped"
    elif call.excinfo is not None:
        status, message = _classify(call.excinfo)
        if report.when != "call" and status == "error":
            message = f"(while setting up the test) {message}"
    else:
        status, message = "error", str(report.longrepr)[-2000:]
    if _RANK[status] > _RANK[current["status"]]:
        current.update(status=status, message=message)


def pytest_runtest_logfinish(nodeid: str, location) -> None:
    result = _results.pop(nodeid, {"status": "error", "message": "no report", "duration": 0.0})
    _send(event="result", nodeid=nodeid, **result)
