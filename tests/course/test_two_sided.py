"""The two-sided check: every graded test fails on the untouched stubs and passes on the solutions.

A graded test that passes on a stub is a bug (it cannot tell a student's work from none), and one that
fails on the solution is a bug too. The stubs are graded for real here; the solutions pass every graded
test in this same suite (tests/labs runs against them) and are graded for real, under a hidden seed, in
tests/e2e/test_grading_run.py (grading them here as well cost a minute of the suite's five).
"""

import pytest

from course import labs
from course.grader import grade

pytestmark = pytest.mark.solutions_only


def test_every_graded_test_fails_on_the_stubs(fresh_stubs):
    report = grade(impl=fresh_stubs, timeout=60)
    assert report.outcomes, "no graded tests were collected"
    passing = [o.nodeid for o in report.outcomes if o.status == "passed"]
    assert not passing, f"these graded tests pass on the untouched stubs, so they grade nothing: {passing}"
    other = [f"{o.nodeid}: {o.status}: {o.message}" for o in report.outcomes if o.status != "not attempted"]
    assert not other, "on the stubs every test should be 'not attempted':\n" + "\n".join(other)
    assert report.score == 0
    graded_labs = {o.lab for o in report.outcomes}
    assert graded_labs == set(labs.lab_files("solutions")), "every lab needs graded tests"
