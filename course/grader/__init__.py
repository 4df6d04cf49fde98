"""The autograder: run the graded tests against an implementation and score them, robustly.

The tests run in a worker process (pytest plus :mod:`course.grader.worker`) that reports each test's
start and result over a pipe. This process watches the clock: a test that runs past its time limit
is killed and scored "timed out"; a worker that dies (``os._exit``, a segfault, running out of
memory) scores the test it was running as "crashed". Either way a fresh worker picks up the tests
that had not run yet, so one broken function never costs the grades of the others, and nothing that
did not report success is ever scored as passed.
"""

from course.grader.runner import Outcome, Report, grade

__all__ = ["Outcome", "Report", "grade"]
