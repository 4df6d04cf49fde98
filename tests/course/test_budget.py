"""A lab's time budget, and the Markdown feedback of results.json, graded for real.

The budget: once a lab's tests that did not pass have run the student's code for ``budget`` seconds,
its other tests are "not run" (0 points) and every earlier verdict stands; a test that passes is never
charged. The feedback: each failure laid out for a person (checked, expected, got, where, hint).
"""

import ast
import json
import textwrap
import time

import pytest

from course import cli, labs
from course.errors import CourseError
from course.grader import Outcome, Settings, grade
from course.grader.model import BUDGET_TIMEOUTS
from course.grader.report import markdown, write_gradescope

TIMEOUT = 2.0
# The labs here never end, but sleep rather than spin: to the grader the same endless function, charged by
# the clock, and the core stays free for the suite's other worker.
NEVER_ENDS = "import time\nwhile True:\n    time.sleep(0.05)"
OVERHEAD_S = 15.0  # starting the grader and its sandboxes (one per timeout) on a loaded 2-core machine


def looping_lab01(folder, *, keep=("augment",)):
    """lab01's solution with every function's body replaced by ``NEVER_ENDS``, but those in ``keep``."""
    source = labs.lab_files("solutions")["lab01"]
    tree = ast.parse(source.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name not in keep:
            node.body = ast.parse(NEVER_ENDS).body
    folder.mkdir()
    (folder / source.name).write_text(ast.unparse(tree))
    return folder


@pytest.fixture(scope="module")
def loops(tmp_path_factory):
    """An every-function-loops lab01 (augment, the first test's function, is honest) graded by
    ``course grade --timeout 3`` with the default budget, and what it wrote and how long it took."""
    root = tmp_path_factory.mktemp("loops")
    impl, results = looping_lab01(root / "impl"), root / "results.json"
    start = time.monotonic()
    code = cli.main(["grade", "lab01", "--impl", str(impl), "--timeout", f"{TIMEOUT:g}", "--results", str(results)])
    return code, json.loads(results.read_text()), time.monotonic() - start


def _status(test: dict) -> str:
    return test["output"].splitlines()[0].strip("*")


def test_a_looping_lab_costs_its_budget_not_a_timeout_per_test(loops):
    code, results, seconds = loops
    budget = BUDGET_TIMEOUTS * TIMEOUT
    assert code == 0
    assert results["extra_data"]["timeout_s"] == TIMEOUT and results["extra_data"]["budget_s"] == budget
    # Without a budget each of its 13 looping tests would take TIMEOUT: 26 s.
    assert seconds < budget + OVERHEAD_S < 13 * TIMEOUT, seconds
    assert budget <= results["extra_data"]["budget_spent_s"]["lab01"] < budget + 1.0


def test_earlier_verdicts_stand_and_later_tests_are_not_run_for_0_points(loops):
    tests = loops[1]["tests"]
    statuses = [_status(t) for t in tests]
    assert statuses[0] == "Passed" and tests[0]["score"] == tests[0]["max_score"] == 1  # augment: not charged
    assert statuses[1 : 1 + BUDGET_TIMEOUTS] == ["Timed out"] * BUDGET_TIMEOUTS
    rest = tests[1 + BUDGET_TIMEOUTS :]
    assert rest and {_status(t) for t in rest} == {"Not run"}
    assert all(t["score"] == 0 and t["status"] == "failed" for t in rest)
    assert "the lab's time budget is spent" in rest[0]["output"]
    assert f"{len(rest)} of its tests were not run" in loops[1]["output"]


FAKE_LAB = """
def good(x):
    return x + 1

def loops(x):
    import time
    while True:
        time.sleep(0.05)
"""

FAKE_TESTS = "".join(
    f"def test_{name}(lab):\n    assert lab.{call}(1) == 2\n\n"
    for name, call in [("good", "good"), *((f"loops_{i}", "loops") for i in range(4)), ("good_last", "good")]
)


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake")
    (root / "labs").mkdir()
    (root / "tests").mkdir()
    (root / "labs" / "lab42_fake.py").write_text(FAKE_LAB)
    (root / "tests" / "test_lab42_fake.py").write_text(FAKE_TESTS)
    return root


@pytest.mark.parametrize("budget, jobs", [("off", 1), (2.0, 1), (2.0, 2)])
def test_the_budget_is_what_stops_the_lab(fake, budget, jobs):
    # jobs=2 shares the lab's tests out between two processes: the grade is the same as in one.
    report = grade(impl=fake / "labs", tests_dir=fake / "tests", timeout=1.0, budget=budget, jobs=jobs)
    got = {o.name: o.status for o in report.outcomes}
    if budget == "off":
        assert report.budget is None
        assert got == {
            "test_good": "passed",
            **{f"test_loops_{i}": "timed out" for i in range(4)},
            "test_good_last": "passed",
        }
    else:
        assert report.budget == 2.0
        assert got == {
            "test_good": "passed",
            "test_loops_0": "timed out",
            "test_loops_1": "timed out",
            "test_loops_2": "not run",
            "test_loops_3": "not run",
            "test_good_last": "not run",
        }
        assert report.score == 1 and report.budget_spent()["lab42"] >= 2.0


def test_a_lab_that_never_finishes_importing_costs_at_most_its_budget(tmp_path):
    """Importing the lab is the student's code too: charged to the budget, and cut off by it."""
    source = labs.lab_files("solutions")["lab01"]
    (tmp_path / "impl").mkdir()
    (tmp_path / "impl" / source.name).write_text(source.read_text() + "\n" + NEVER_ENDS + "\n")
    start = time.monotonic()
    report = grade(["lab01"], impl=tmp_path / "impl", timeout=TIMEOUT, jobs=1)
    seconds = time.monotonic() - start
    budget = BUDGET_TIMEOUTS * TIMEOUT
    assert seconds < budget + OVERHEAD_S < 120, seconds  # not the 120 s an import may otherwise take
    first, *rest = report.outcomes
    assert first.status == "timed out" and "importing the lab took longer than" in first.message, first
    assert budget <= first.charged < budget + 1.0, first.charged
    assert {o.status for o in rest} == {"not run"} and report.score == 0


def test_an_honest_solution_keeps_full_marks_under_the_default_budget():
    report = grade(["lab01"], impl="solutions")
    assert report.budget == BUDGET_TIMEOUTS * report.timeout
    assert report.score == report.max_score > 0, [(o.name, o.status) for o in report.outcomes if o.status != "passed"]
    assert report.budget_spent() == {"lab01": 0.0}
    assert all(o.student_seconds > 0 for o in report.outcomes)  # the time was measured, only not charged


def test_a_budget_is_seconds_auto_or_off():
    def budget_s(budget):
        return Settings(timeout=10, budget=budget).budget_s

    assert budget_s("auto") == BUDGET_TIMEOUTS * 10
    assert budget_s("off") is None and budget_s(None) is None
    assert budget_s("45") == 45.0
    for bad in ("0", "-3", "soon"):
        with pytest.raises(CourseError, match="budget"):
            budget_s(bad)


WRONG = """

def sigmoid(z):
    return 1 / (1 + jnp.exp(z))  # the sign of z is wrong


@jax.jit
def step(z):
    if z >= 0:  # a Python `if` on a traced value
        return jnp.ones_like(z)
    return jnp.zeros_like(z)
"""


def test_results_json_lays_out_a_failure_in_markdown(tmp_path):
    source = labs.lab_files("solutions")["lab01"]
    (tmp_path / "impl").mkdir()
    (tmp_path / "impl" / source.name).write_text(source.read_text() + textwrap.dedent(WRONG))
    report = grade(["lab01"], impl=tmp_path / "impl")
    write_gradescope(report, tmp_path / "results.json")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["output_format"] == "md" and {t["output_format"] for t in results["tests"]} == {"md"}
    tests = {t["name"].split(": ", 1)[1]: t["output"] for t in results["tests"]}

    sigmoid = tests["test_sigmoid_matches_the_formula"]
    assert sigmoid.startswith("**Failed**")
    assert "**Checked:** `sigmoid(z) on [-8, 8]`" in sigmoid
    window = "(elements [0:8] of shape (33,))\n"  # 33 values: the window of each around the worst, z = -8
    assert f"**Expected:**\n\n```text\n{window}[0.00034, 0.00055" in sigmoid  # 1 / (1 + e^8)
    assert f"**Got:**\n\n```text\n{window}[0.99966, 0.99945" in sigmoid
    assert "Largest difference 0.999" in sigmoid

    step = tests["test_step[zero]"]
    assert step.startswith("**Error**\n\n```text\nTracerBoolConversionError")
    assert "**Where:** `" in step and f"{source.name}:" in step and " in step`\n\n```python\nif z >= 0" in step
    assert "**Hint:** a Python `if` on a traced value; use jnp.where or lax.cond instead" in step
    assert tests["test_augment_appends_a_column_of_ones"] == "**Passed**"
    assert not any("Traceback" in output or "site-packages" in output for output in tests.values())


def test_markdown_fences_whatever_backticks_a_message_holds():
    o = Outcome("t.py::test_x", "lab01", 1.0, status="failed", message="f(`x`): expected ```1```, got 2")
    text = markdown(o)
    assert "**Checked:** `` f(`x`) ``" in text and "````text\n```1```\n````" in text
