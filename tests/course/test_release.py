"""`course release`: the student bundle has what students need and no solution code."""

import os
import subprocess
import sys
import zipfile

import pytest

from course import labs
from course.staff import release

pytestmark = pytest.mark.solutions_only


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    return release.build_bundle(out)


def test_bundle_has_the_student_files_and_no_solutions(bundle):
    names = zipfile.ZipFile(bundle).namelist()
    top = {n.split("/")[1] for n in names}
    assert {"course", "labs", "tests", "noxfile.py", "pyproject.toml", "README.md"} <= top
    assert "solutions" not in top
    # Graded tests only: the staff's tests train real models with working losses and accuracies.
    assert any(n.startswith(f"{release.BUNDLE}/tests/labs/test_lab06") for n in names)
    assert not any(n.startswith(f"{release.BUNDLE}/tests/course/") for n in names)
    for lab_file in labs.lab_files("solutions").values():
        assert f"{release.BUNDLE}/labs/{lab_file.name}" in names
    assert release.leaks(bundle.parent / release.BUNDLE) == []


def test_leak_check_catches_solution_code(tmp_path):
    (tmp_path / "labs").mkdir()
    lab = next(iter(labs.lab_files("solutions").values()))
    (tmp_path / "labs" / lab.name).write_text(lab.read_text())  # a solution where the stub should be
    found = release.leaks(tmp_path)
    assert any("BEGIN SOLUTION marker" in f for f in found)
    assert any("a solution region of" in f for f in found)


def test_the_bundle_grades_its_untouched_stubs_as_not_attempted(bundle):
    root = bundle.parent / release.BUNDLE
    env = {**os.environ, "COURSE_ROOT": str(root)}
    run = subprocess.run(
        [sys.executable, "-m", "course", "grade", "lab01"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=root,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Total: 0/" in run.stdout and "not attempted" in run.stdout and "passed" not in run.stdout
