"""The Gradescope autograder built by ``build_autograder`` and run as Gradescope runs it: unpacked into a
folder laid out like /autograder, ``run_autograder`` graded a solution (a group's), the stub and a syntax error."""

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from course import labs
from course.staff.gradescope import build_autograder

pytestmark = pytest.mark.solutions_only


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

    root = _autograder(tmp_path / "a", zip_path, {lab01.name: lab01.read_text()})
    users = [
        {"email": "erin@example.com", "id": 1234, "name": "Erin E"},
        {"email": "f@example.com", "id": 5, "name": "F"},
    ]
    (root / "submission_metadata.json").write_text(json.dumps({"id": 1, "users": users}))  # a group's submission
    full = _run_autograder(root)
    assert full["score"] == full["max_score"] > 0
    assert full["extra_data"]["members"] == [{"name": u["name"], "email": u["email"], "id": u["id"]} for u in users]
    assert full["execution_time"] > 0
    for t in full["tests"]:
        assert {"name", "number", "score", "max_score", "status", "output", "tags", "visibility"} <= set(t)
        assert t["tags"][0] == "lab01" and t["visibility"] == "visible"
    assert [t["number"] for t in full["tests"]][:2] == ["1.1", "1.2"]

    none = _run_autograder(_autograder(tmp_path / "b", zip_path, {lab01.name: (fresh_stubs / lab01.name).read_text()}))
    assert none["score"] == 0 and none["max_score"] == full["max_score"]
    assert "members" not in none["extra_data"]  # no submission_metadata.json: graded outside Gradescope

    # A syntax error gets results too: 0, with the error at the student's line.
    broken = lab01.read_text().replace("def sigmoid(z", "def sigmoid(z,,", 1)
    line = next(n for n, text in enumerate(broken.splitlines(), 1) if "z,," in text)
    syntax = _run_autograder(_autograder(tmp_path / "c", zip_path, {lab01.name: broken}))
    assert syntax["score"] == 0 and syntax["max_score"] == full["max_score"]
    assert all("SyntaxError" in t["output"] and f"{lab01.name}:{line}" in t["output"] for t in syntax["tests"])
