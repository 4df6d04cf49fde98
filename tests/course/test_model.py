"""course.grader.model: the grader's words, each defined once, and the settings' one reading of $COURSE_*."""

import json

import pytest

from course.cli import build_parser
from course.errors import CourseError
from course.grader import Outcome, Report, Settings, Status, grade
from course.grader.model import BUDGET_TIMEOUTS, ProcessSettings
from course.grader.report import gradescope, render


def test_every_status_has_one_mark_title_colour_and_rank():
    assert [s.value for s in Status] == [
        "passed",
        "failed",
        "not attempted",
        "not defined",
        "error",
        "timed out",
        "crashed",
        "skipped",
        "not run",
    ]
    for attribute in ("mark", "title", "rank"):
        values = [getattr(s, attribute) for s in Status]
        assert len(set(values)) == len(values), attribute  # no two statuses read alike
    assert all(s.colour.startswith("#") and len(s.colour) == 7 for s in Status)
    assert Status.PASSED.rank == 0 and max(Status, key=lambda s: s.rank) is Status.CRASHED
    assert {s for s in Status if s.charged} == {
        Status.FAILED,
        Status.NOT_ATTEMPTED,
        Status.NOT_DEFINED,
        Status.ERROR,
        Status.TIMED_OUT,
        Status.CRASHED,
    }


def test_a_status_is_its_value_wherever_it_is_written():
    assert Status("timed out") is Status.TIMED_OUT and Status.TIMED_OUT == "timed out"
    assert f"{Status.NOT_RUN}" == "not run" and json.dumps([Status.ERROR]) == '["error"]'
    o = Outcome("t.py::test_x", "lab01", 2.0, status="passed")  # read back from an event: made a Status
    assert o.status is Status.PASSED and o.earned == 2.0


def test_the_shell_and_results_json_use_the_statuses_words():
    report = Report(impl="x", outcomes=[Outcome("t.py::test_a", "lab01", 1.0, Status.TIMED_OUT, "too slow")])
    assert "  TIMEOUT   0/1  test_a" in render(report)
    assert gradescope(report)["tests"][0]["output"].startswith("**Timed out**")


def test_settings_defaults_then_the_environment_then_the_flags():
    assert Settings().timeout == 10.0 and Settings().budget_s == BUDGET_TIMEOUTS * 10.0
    env = {"COURSE_TIMEOUT": "4", "COURSE_BUDGET": "off", "COURSE_SEED": "17"}
    read = Settings.from_environment(env)
    assert (read.timeout, read.budget_s, read.seed) == (4.0, None, 17)
    flags = Settings.from_environment(env, timeout=6.0, seed=None)  # a flag not given (None) keeps the setting
    assert (flags.timeout, flags.seed) == (6.0, 17)
    assert Settings.from_environment({}) == Settings()


def test_a_class_grades_two_at_once_with_isolation_required():
    klass = Settings.for_class()
    assert (klass.jobs, klass.isolation) == (2, "required")
    assert Settings.from_environment({"COURSE_SEED": "3"}, base=klass).replace(jobs=4) == Settings(
        seed=3, isolation="required", jobs=4
    )


@pytest.mark.parametrize(
    "change, words",
    [({"budget": "soon"}, "budget"), ({"budget": "0"}, "budget"), ({"isolation": "maybe"}, "--isolation")],
)
def test_a_setting_that_is_not_one_is_refused_in_words(change, words):
    with pytest.raises(CourseError, match=words):
        Settings(**change)


def test_an_environment_variable_that_is_not_a_number_is_named():
    with pytest.raises(CourseError, match=r"\$COURSE_TIMEOUT='soon' is not a float"):
        Settings.from_environment({"COURSE_TIMEOUT": "soon"})


def test_the_process_settings_travel_as_one_private_file(tmp_path):
    told = ProcessSettings(timeout=3.0, budget=9.0, seed=4242, sandbox_user="nobody", isolate=True)
    path = told.write(tmp_path / "settings.json")
    assert path.stat().st_mode & 0o777 == 0o600  # the hidden seed is in it
    assert ProcessSettings.read(path) == told
    assert ProcessSettings.test_suite().timeout > Settings().timeout  # the course's own suite: generous


def test_the_command_line_defaults_nothing_of_its_own():
    """Every grading flag not given is None, so Settings' default (or $COURSE_*) decides."""
    args = build_parser().parse_args(["grade", "lab01"])
    assert all(getattr(args, k) is None for k in ("timeout", "budget", "seed", "jobs", "sandbox_user", "isolation"))


@pytest.mark.solutions_only
def test_the_timeout_reaches_the_grading_process(tmp_path):
    """A timeout given to grade() is the one the sandbox runs with: a test of a lab that loops is cut at it."""
    (tmp_path / "lab01_perceptron.py").write_text("def augment(x):\n    while True:\n        pass\n", encoding="utf-8")
    report = grade(["lab01"], impl=tmp_path, timeout=1.5, budget="off", keyword="augment")
    timed_out = [o for o in report.outcomes if o.status == Status.TIMED_OUT]
    assert timed_out and all("limit of 1.5 s" in o.message for o in timed_out), report.outcomes
    assert report.timeout == 1.5 and report.budget is None
