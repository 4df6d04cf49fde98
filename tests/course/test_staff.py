"""Course staff: the hidden seed's keys, the Gradescope autograder's refusals, a class's submissions found
(the autograder run end to end: tests/e2e/test_gradescope_run.py)."""

import json
import os
import zipfile
import zlib

import jax
import numpy as np
import pytest

from course.errors import CourseError
from course.grader import grade, testing
from course.staff.gradescope import build_autograder

pytestmark = pytest.mark.solutions_only

DOUBLE_TEST = """
import jax

def test_double(lab, key):
    x = jax.random.normal(key, (3,))
    got = lab.double(x)
    assert abs(got - 2 * x).max() < 1e-6, f"double({x}) returned {got}"
"""


def test_seeded_key_is_the_plain_key_at_seed_0_and_deterministic_otherwise(monkeypatch):
    plain = jax.random.key_data(jax.random.key(5))
    monkeypatch.setattr(testing, "SEED", 0)
    assert np.array_equal(jax.random.key_data(testing.seeded_key(5)), plain)
    monkeypatch.setattr(testing, "SEED", 7)
    a, b = (jax.random.key_data(testing.seeded_key(5)) for _ in range(2))
    assert np.array_equal(a, b) and not np.array_equal(a, plain)
    monkeypatch.setattr(testing, "SEED", 7 + (1 << 32))  # a seed longer than fold_in's 32 bits
    long = jax.random.key_data(testing.seeded_key(5))
    assert not np.array_equal(long, a) and not np.array_equal(long, plain)


def test_a_hidden_seed_defeats_answers_tabled_from_the_visible_inputs(tmp_path):
    # The cheat: the answer to the visible test, computed once and returned whatever the input.
    visible = 2 * np.asarray(jax.random.normal(jax.random.key(zlib.crc32(b"test_double")), (3,)))
    (tmp_path / "labs").mkdir()
    (tmp_path / "labs" / "lab42_table.py").write_text(
        f"import numpy as np\ndef double(x):\n    return np.array({visible.tolist()})\n"
    )
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_lab42_table.py").write_text(DOUBLE_TEST)
    kwargs = dict(impl=tmp_path / "labs", tests_dir=tmp_path / "tests", timeout=20.0)
    assert grade(**kwargs).score == 1, "the tabled answer passes the visible inputs (seed 0)"
    hidden = grade(**kwargs, seed=1234)
    assert hidden.score == 0 and hidden.outcomes[0].status == "failed", hidden.outcomes


def test_a_test_marked_hidden_until_the_due_date_says_so_in_the_results(tmp_path):
    from course.grader.report import write_gradescope

    (tmp_path / "labs").mkdir()
    (tmp_path / "labs" / "lab42_vis.py").write_text("def double(x):\n    return 2 * x\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_lab42_vis.py").write_text(
        "import pytest\n\ndef test_shown(lab):\n    assert lab.double(1) == 2\n\n"
        "@pytest.mark.visibility('after_due_date')\n@pytest.mark.points(3)\n"
        "def test_hidden(lab):\n    assert lab.double(2) == 4\n"
    )
    report = grade(impl=tmp_path / "labs", tests_dir=tmp_path / "tests", timeout=20.0)
    write_gradescope(report, tmp_path / "results.json")
    tests = {t["name"].split(": ", 1)[1]: t for t in json.loads((tmp_path / "results.json").read_text())["tests"]}
    assert tests["test_shown"]["visibility"] == "visible" and tests["test_hidden"]["visibility"] == "after_due_date"
    assert tests["test_hidden"]["max_score"] == 3 == tests["test_hidden"]["score"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="users are switched only as root")
def test_as_root_a_sandbox_user_who_cannot_read_the_tests_is_refused_or_noted(tmp_path):
    """run_autograder names nobody: then grading refuses to start rather than run student code as root."""
    from course.grader import Report, runner

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    snapshot = runner.Snapshot({}, private, private, private, private / "manifest.json", private)
    with pytest.raises(CourseError, match="sandbox user .nobody. cannot read /"):
        runner.sandbox_setting("nobody", snapshot, Report(impl="x"))
    report = Report(impl="x")
    assert runner.sandbox_setting("auto", snapshot, report) == "none"
    assert any("ran as root" in note for note in report.notes), report.notes


def test_building_the_autograder_needs_a_hidden_seed(tmp_path):
    with pytest.raises(CourseError, match="hidden seed"):
        build_autograder(tmp_path, seed=0)


def test_two_submissions_of_one_student_are_refused_before_anything_is_graded(tmp_path):
    from course.grader.batch import discover

    (tmp_path / "alice").mkdir()
    with zipfile.ZipFile(tmp_path / "alice.zip", "w") as zf:
        zf.writestr("lab01_perceptron.py", "")
    with pytest.raises(CourseError, match="two submissions for alice: alice and alice.zip"):
        discover(tmp_path)
