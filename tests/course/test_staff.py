"""Course staff: the hidden seed's keys, the Gradescope autograder run end to end, a class's submissions found."""

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import jax
import numpy as np
import pytest

from course import labs
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


def _autograder(tmp_path, zip_path, submission_files):
    """A folder laid out like Gradescope's /autograder, with the zip unpacked and one submission."""
    root = tmp_path / "autograder"
    (root / "submission" / "my-work").mkdir(parents=True)  # students often upload a folder
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(root / "source")
    for name, text in submission_files.items():
        (root / "submission" / "my-work" / name).write_text(text)
    return root


def _sandbox_user_here(root) -> str:
    """run_autograder's nobody where this machine allows it; else what grading here can do."""
    if os.geteuid() != 0:
        return "none"  # only root switches users
    from course.grader import privacy

    user = pwd.getpwnam("nobody")
    needed = [str(root / "source" / "course"), *privacy.python_dirs()]
    # Gradescope's Python is readable by nobody (setup.sh sees to it); a pyenv under /root is not.
    return "nobody" if privacy.unreadable_as(user.pw_uid, user.pw_gid, needed) is None else "auto"


def _run_autograder(root):
    env = {
        **os.environ,
        "AUTOGRADER_ROOT": str(root),
        "COURSE_PYTHON": sys.executable,
        "COURSE_SANDBOX_USER": _sandbox_user_here(root),
    }
    run = subprocess.run(
        ["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads((root / "results" / "results.json").read_text())


@pytest.fixture
def open_tmp():
    """A temporary folder others may enter (pytest's tmp_path is private to us), as /autograder is."""
    folder = Path(tempfile.mkdtemp(prefix="course-autograder-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_the_gradescope_autograder_runs_end_to_end(open_tmp, fresh_stubs):
    tmp_path = open_tmp
    zip_path = build_autograder(tmp_path / "dist", labs=["lab01"], seed=99, timeout=30)
    names = zipfile.ZipFile(zip_path).namelist()
    assert {"setup.sh", "run_autograder", "pyproject.toml"} <= set(names)
    assert any(n.startswith("course/grader/") for n in names) and any(
        n.startswith("tests/labs/test_lab01") for n in names
    )
    assert not any(n.startswith("solutions/") for n in names) and not any(n.startswith("tests/course/") for n in names)
    lab01 = labs.lab_files("solutions")["lab01"]

    full = _run_autograder(_autograder(tmp_path / "a", zip_path, {lab01.name: lab01.read_text()}))
    assert full["score"] == full["max_score"] > 0
    assert full["execution_time"] > 0
    for t in full["tests"]:
        assert {"name", "number", "score", "max_score", "status", "output", "tags", "visibility"} <= set(t)
        assert t["tags"][0] == "lab01" and t["visibility"] == "visible"
    assert [t["number"] for t in full["tests"]][:2] == ["1.1", "1.2"]

    none = _run_autograder(_autograder(tmp_path / "b", zip_path, {lab01.name: (fresh_stubs / lab01.name).read_text()}))
    assert none["score"] == 0 and none["max_score"] == full["max_score"]


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
