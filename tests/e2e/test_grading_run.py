"""Grading at full size: every lab's solution under a hidden seed, a whole class in one run, and a class of
submissions each malformed in its own way.

Minutes on 2 cores (every lab's tests compiled afresh for new inputs; a hanging submission waits out its
timeouts), so `python -m nox -s e2e` runs them (tests/e2e/README.md).
"""

import csv
import json
import shutil
import zipfile

import pytest
from submissions import LAB01, malformed_class

from course import labs
from course.grader import batch, grade
from course.grader.batch import grade_class

pytestmark = pytest.mark.solutions_only


def test_with_a_hidden_seed_solutions_keep_full_marks_and_stubs_score_zero(fresh_stubs):
    report = grade(impl="solutions", timeout=120, seed=20261125)
    failing = [f"{o.nodeid}: {o.status}: {o.message}" for o in report.outcomes if o.status != "passed"]
    assert not failing, "with seed 20261125 these fail on the solutions:\n" + "\n".join(failing)
    assert report.score == report.max_score > 0
    stub_report = grade(["lab01", "lab03"], impl=fresh_stubs, timeout=60, seed=20261125)
    assert stub_report.score == 0 and {o.status for o in stub_report.outcomes} == {"not attempted"}


HANGS = "\ndef sigmoid(z):\n    while True:\n        pass\n"
CRASHES = "\nimport os\ndef step(z):\n    os._exit(3)\n"


def test_a_whole_class_in_one_run_with_a_hanging_and_a_crashing_submission(tmp_path, fresh_stubs):
    lab01 = labs.lab_files("solutions")["lab01"]
    solution, stub = lab01.read_text(), (fresh_stubs / lab01.name).read_text()
    subs = tmp_path / "submissions"
    for student, text in {
        "alice": solution,
        "bob": stub,
        "carol": solution + HANGS,
        "dave": solution + CRASHES,
    }.items():
        (subs / student).mkdir(parents=True)
        (subs / student / lab01.name).write_text(text)
    with zipfile.ZipFile(subs / "erin.zip", "w") as zf:  # a zip with a folder inside
        zf.writestr(f"erin/{lab01.name}", solution)
    (subs / "frank.zip").write_text("not a zip")  # costs frank's row only
    out, lines = tmp_path / "grades", []
    gradebook = grade_class(subs, out, labs=["lab01"], jobs=2, timeout=5, seed=3, log=lines.append)
    rows = {r["student"]: r for r in csv.DictReader(gradebook.open())}
    assert set(rows) == {"alice", "bob", "carol", "dave", "erin", "frank"}
    assert float(rows["frank"]["total"]) == 0
    assert "frank.zip is not a zip file" in json.loads((out / "frank" / "results.json").read_text())["output"]
    assert rows["frank"]["not graded"].startswith("frank.zip is not a zip file")  # the gradebook lists it
    assert [s for s, r in rows.items() if r["not graded"]] == ["frank"]
    full = float(rows["alice"]["max"])
    assert float(rows["alice"]["total"]) == float(rows["erin"]["total"]) == full > 0
    assert float(rows["bob"]["total"]) == 0
    assert 0 < float(rows["carol"]["total"]) < full and 0 < float(rows["dave"]["total"]) < full
    assert rows["alice"]["lab01"] == rows["alice"]["total"]
    carol = json.loads((out / "carol" / "results.json").read_text())
    assert any("limit of 5 s" in t["output"] for t in carol["tests"])
    dave = json.loads((out / "dave" / "results.json").read_text())
    assert any("status 3" in t["output"] for t in dave["tests"])

    # Interrupted and run again: nothing is regraded, except a submission that changed.
    (subs / "bob" / lab01.name).write_text(solution)
    lines.clear()
    grade_class(subs, out, labs=["lab01"], jobs=2, timeout=5, seed=3, log=lines.append)
    assert sorted(line.split(":")[0] for line in lines if "already graded" in line) == [
        "alice",
        "carol",
        "dave",
        "erin",
        "frank",
    ]
    rows = {r["student"]: r for r in csv.DictReader(gradebook.open())}
    assert float(rows["bob"]["total"]) == full
    shutil.rmtree(out / "alice")  # lost results are regraded, not guessed
    lines.clear()
    grade_class(subs, out, labs=["lab01"], jobs=2, timeout=5, seed=3, log=lines.append)
    graded = [line for line in lines if line.split(":")[0] in rows and "already graded" not in line]
    assert [line.split(":")[0] for line in graded] == ["alice"]
    assert any(line.startswith("could not grade 1 submission") for line in lines)  # frank, every run


def test_a_class_of_malformed_submissions_ends_with_its_gradebook(tmp_path):
    out, lines = tmp_path / "grades", []
    gradebook = batch.grade_class(malformed_class(tmp_path), out, labs=["lab01"], jobs=2, timeout=30, log=lines.append)
    rows = {r["student"]: r for r in csv.DictReader(gradebook.open())}
    full = float(rows["alice"]["max"])
    assert full > 0 and all(float(r["max"]) == full for r in rows.values()), rows
    assert {s for s, r in rows.items() if float(r["total"]) == full} == {"alice", "carol", "frank", "hana"}
    assert all(float(rows[s]["total"]) == 0 for s in ("bob", "dave", "erin", "gus", "ivan"))
    assert 0 < float(rows["jo"]["total"]) < full
    assert rows["ivan"][batch.NOT_GRADED].startswith("ivan.zip is not a zip file")
    assert [s for s, r in rows.items() if r[batch.NOT_GRADED]] == ["ivan"]
    assert any("could not grade 1 submission" in line for line in lines) and any("  ivan: " in x for x in lines)

    def outputs(student):
        results = json.loads((out / student / "results.json").read_text())
        return [t["output"] for t in results["tests"]], results.get("output", "")

    tests, _ = outputs("bob")
    assert all("SyntaxError" in t and f"`{LAB01.name}:" in t for t in tests)  # their file, as they named it
    tests, _ = outputs("dave")
    assert all("cell" in t and "its code is an object, not text" in t for t in tests)
    tests, _ = outputs("erin")
    assert all("is not a readable notebook" in t for t in tests)
    tests, _ = outputs("gus")
    assert all("the submission has no lab01 file" in t for t in tests)
    tests, top = outputs("ivan")
    assert all("ivan.zip is not a zip file" in t for t in tests) and "ivan.zip is not a zip file" in top
    tests, _ = outputs("jo")
    assert any("AttributeError: your lab01 file has no attribute 'augment'" in t for t in tests)
    _, top = outputs("frank")
    assert "could not be unpacked" in top and "name is too long" in top
    for student in rows:
        for text in [*outputs(student)[0], outputs(student)[1]]:
            assert "course-student-" not in text and "course-grade-" not in text and "Traceback" not in text
            assert "_course_" not in text  # the grader's name for the module
