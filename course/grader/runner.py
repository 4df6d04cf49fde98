"""The grader's parent process: starts workers, enforces time limits, and builds the report."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from course import labs as _labs

STATUSES = ("passed", "failed", "not attempted", "error", "timed out", "crashed", "skipped")
COLLECT_LIMIT_S = 300.0  # importing JAX and collecting: generous, a cold laptop can be slow


@dataclass
class Outcome:
    """One graded test's result."""

    nodeid: str
    lab: str
    points: float
    status: str = "crashed"
    message: str = ""
    duration: float = 0.0

    @property
    def earned(self) -> float:
        return self.points if self.status == "passed" else 0.0

    @property
    def name(self) -> str:
        return self.nodeid.split("::", 1)[-1]


@dataclass
class Report:
    """Every graded test's outcome, in the order the tests ran."""

    impl: str
    outcomes: list[Outcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what stopped whole files from being graded

    def by_lab(self) -> dict[str, list[Outcome]]:
        out: dict[str, list[Outcome]] = {}
        for o in self.outcomes:
            out.setdefault(o.lab, []).append(o)
        return out

    @property
    def score(self) -> float:
        return sum(o.earned for o in self.outcomes)

    @property
    def max_score(self) -> float:
        return sum(o.points for o in self.outcomes)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            sig = signal.Signals(-code)
            meaning = {"SIGSEGV": "a segmentation fault", "SIGKILL": "killed, perhaps out of memory",
                       "SIGABRT": "aborted", "SIGFPE": "a floating-point exception"}.get(sig.name, sig.name)
            return f"the test process died from signal {sig.name} ({meaning})"
        except ValueError:
            return f"the test process died from signal {-code}"
    return f"the test process exited with status {code} in the middle of this test (os._exit or a fatal error)"


class _Worker:
    """One pytest process running a list of node ids, read event by event."""

    def __init__(self, args: list[str], env: dict[str, str], log, cwd: Path) -> None:
        read_fd, write_fd = os.pipe()
        env = {**env, "COURSE_GRADER_FD": str(write_fd)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", *args],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            pass_fds=(write_fd,), start_new_session=True, cwd=cwd,
        )
        os.close(write_fd)
        self.stream = os.fdopen(read_fd, "r", encoding="utf-8")
        self.buffer = ""

    def next_event(self, deadline: float) -> dict | None:
        """The next event, or None at the deadline or when the worker has gone."""
        while "\n" not in self.buffer:
            wait = deadline - time.monotonic()
            if wait <= 0:
                return None
            ready, _, _ = select.select([self.stream], [], [], wait)
            if not ready:
                return None
            chunk = os.read(self.stream.fileno(), 65536).decode("utf-8", "replace")
            if not chunk:
                return None  # end of stream: the worker exited
            self.buffer += chunk
        line, self.buffer = self.buffer.split("\n", 1)
        return json.loads(line)

    def kill(self) -> int:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        code = self.proc.wait()
        self.stream.close()
        return code


def grade(
    labs: list[str] | None = None,
    *,
    impl: str | os.PathLike = "labs",
    timeout: float = 10.0,
    tests_dir: Path | None = None,
    log_path: Path | None = None,
) -> Report:
    """Run the graded tests of ``labs`` (all when None) against ``impl`` and score them.

    Args:
      labs: lab names such as ``["lab01"]``; None grades every lab that has tests.
      impl: ``"labs"``, ``"solutions"`` or the path of a folder of lab files.
      timeout: seconds one test may take (its setup, call and teardown) before it is scored "timed out".
      tests_dir: the folder of graded tests ``test_labNN*.py`` (default ``$COURSE_TESTS_DIR``, else ``tests/labs``).
      log_path: where the workers' own pytest output goes (default: a temporary file).
    """
    impl_dir = _labs.impl_dir(impl)
    tests_dir = Path(tests_dir or os.environ.get("COURSE_TESTS_DIR") or _labs.root() / "tests" / "labs").resolve()
    wanted = [_labs.lab_id(x) for x in labs] if labs else None
    files = sorted(p for p in tests_dir.glob("test_lab*.py") if wanted is None or p.name[5:10] in wanted)
    report = Report(impl=str(impl))
    if wanted:
        missing = sorted(set(wanted) - {p.name[5:10] for p in files})
        if missing:
            raise _labs.CourseError(f"no graded tests for {', '.join(missing)} in {tests_dir}")
    if not files:
        return report

    env = {**os.environ, "COURSE_IMPL": str(impl_dir), "COURSE_IMPL_DIR": str(impl_dir), "PYTHONUNBUFFERED": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    base = ["-p", "course.testing.plugin", "-p", "course.grader.worker", "-o", "addopts=",
            "-p", "no:cacheprovider", "-q", "--no-header", "--tb=no",
            f"--rootdir={tests_dir.parent}", f"--impl={impl_dir}"]
    log = open(log_path, "w+") if log_path else tempfile.TemporaryFile("w+")
    try:
        pending: list[str] | None = None  # node ids still to run; None until collected
        known: dict[str, Outcome] = {}
        while pending is None or pending:
            targets = [str(p) for p in files] if pending is None else pending
            worker = _Worker(base + targets, env, log, tests_dir.parent)
            current, deadline, progressed = None, time.monotonic() + COLLECT_LIMIT_S, False
            while True:
                event = worker.next_event(deadline)
                if event is None:
                    timed_out = time.monotonic() >= deadline and worker.proc.poll() is None
                    code = worker.kill()
                    if current is not None:
                        o = known[current]
                        o.status = "timed out" if timed_out else "crashed"
                        o.message = (f"it ran longer than the limit of {timeout:g} s (an infinite loop?)"
                                     if timed_out else _describe_exit(code))
                        o.duration = timeout if timed_out else o.duration
                        pending.remove(current)
                    elif pending is None or (pending and not progressed):
                        # Nothing was running and nothing got done: the worker cannot run these tests.
                        # (A worker that graded some tests and then died between two is simply restarted.)
                        tail = _tail(log)
                        report.problems.append(
                            "the tests could not be collected (a syntax error in a test file, or a broken "
                            f"install?); pytest said:\n{tail}" if pending is None else
                            f"the test process stopped unexpectedly (status {code}):\n{tail}")
                        for nodeid in pending or []:
                            known[nodeid].status, known[nodeid].message = "crashed", "the test process stopped"
                        pending = []
                    break
                if event["event"] == "collected":
                    if pending is None:
                        for t in event["tests"]:
                            known[t["nodeid"]] = Outcome(t["nodeid"], t["lab"], t["points"])
                        pending = [t["nodeid"] for t in event["tests"]]
                    deadline = time.monotonic() + COLLECT_LIMIT_S
                elif event["event"] == "start":
                    current, deadline = event["nodeid"], time.monotonic() + timeout
                elif event["event"] == "result":
                    o = known[event["nodeid"]]
                    o.status, o.message, o.duration = event["status"], event["message"], event["duration"]
                    pending.remove(event["nodeid"])
                    current, deadline, progressed = None, time.monotonic() + COLLECT_LIMIT_S, True
        report.outcomes = list(known.values())
        return report
    finally:
        log.close()


def _tail(log, lines: int = 25) -> str:
    try:
        log.flush()
        log.seek(0)
        return "\n".join(log.read().splitlines()[-lines:])
    except Exception:  # the log is diagnostics only
        return "(no output)"
