"""`course analyze`: a class graded for real (tests/conftest.py's graded_class), its counts checked against
the results.json files read here, its messages grouped, its page self-contained."""

import csv
import json
import re
import shutil

import pytest

from course.cli import main
from course.errors import CourseError
from course.grader import Status
from course.staff.analyze import MESSAGES_HEADER, TESTS_HEADER, analyze, pattern, read_class, status_of

pytestmark = pytest.mark.solutions_only


@pytest.fixture(scope="module")
def analysis(graded_class, tmp_path_factory):
    _, graded = graded_class
    return analyze(graded, tmp_path_factory.mktemp("analysis"))


def _rows(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _results(graded):
    """Every student's results.json, as the grader wrote it."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(graded.glob("*/results.json"))}


def test_tests_csv_counts_are_the_results_json_files(graded_class, analysis):
    _, graded = graded_class
    results = _results(graded)
    title = {f"**{s.title}**": s.mark for s in Status}  # each status's heading, as results.json starts
    want: dict[tuple[str, str], dict] = {}
    for student, r in results.items():
        for t in r["tests"]:
            lab, test = t["name"].split(": ", 1)
            row = want.setdefault(
                (lab, test), {"n": 0, "score": 0.0, "max": t["max_score"], **dict.fromkeys(title.values(), 0)}
            )
            row["n"] += 1
            row["score"] += t["score"]
            row[title[t["output"].splitlines()[0]]] += 1
    rows = _rows(analysis.tests_csv)
    assert list(rows[0]) == TESTS_HEADER
    assert {(r["lab"], r["test"]) for r in rows} == set(want) and len(rows) == len(want) == 14
    for r in rows:
        w = want[(r["lab"], r["test"])]
        assert int(r["students"]) == w["n"] == len(results) == 5
        assert {m: int(r[m]) for m in title.values()} == {m: w[m] for m in title.values()}, r["test"]
        assert float(r["pass_rate"]) == pytest.approx(w["PASS"] / w["n"], abs=1e-3)
        assert float(r["mean_points"]) == pytest.approx(w["score"] / w["n"], abs=1e-3)
        assert float(r["points"]) == w["max"]


def test_each_student_of_the_class_ends_as_built(analysis):
    """The class was built so: alice passes all, carol's stub is TODO throughout, dave's loop times out and the
    budget stops the rest, bob's augment errors, team-a's step(0) fails."""
    status = {(st, t.test): t.status for st, tests in analysis.klass.students.items() for t in tests}
    tests = {t for _, t in status}
    assert all(status[("alice", t)] == "passed" for t in tests)
    assert all(status[("carol", t)] == "not attempted" for t in tests)
    assert status[("dave", "test_sigmoid_matches_the_formula")] == "timed out"
    assert "not run" in {status[("dave", t)] for t in tests}
    assert status[("bob", "test_augment_appends_a_column_of_ones")] == "error"
    assert [t for t in tests if status[("team-a", t)] != "passed"] == ["test_step[zero]"]
    assert status[("team-a", "test_step[zero]")] == "failed"


def test_messages_are_grouped_with_an_example_each(analysis):
    rows = _rows(analysis.messages_csv)
    assert list(rows[0]) == MESSAGES_HEADER
    by = {(r["test"], r["status"]): r for r in rows}
    train = by[("test_training_separates_separable_data", "TODO")]  # bob and carol: train is a stub in both
    assert train["students"] == "2" and train["example_student"] == "bob"
    assert train["message"] == "lab01: train is still a stub (it raises NotImplementedError)"
    augment = by[("test_augment_appends_a_column_of_ones", "ERROR")]
    assert "for shapes <shape>, <shape>" in augment["message"] and "(3, 2), (3, 1)" in augment["example"]
    step = by[("test_step[zero]", "FAIL")]
    assert step["example_student"] == "team-a" and "step(0.0)" in step["example"]
    assert step["message"].startswith("Checked: `step(<n>)` Expected: <array> (shape <shape>) Got: <array> (shape")
    assert not any(r["status"] == "PASS" for r in rows)
    timeout = by[("test_sigmoid_matches_the_formula", "TIMEOUT")]
    assert timeout["message"] == "it ran longer than the limit of <n> s (an infinite loop?)"


@pytest.mark.parametrize(
    "a, b",
    [
        ("shapes (3, 2), (3, 1) at /tmp/x/lab01.py:56", "shapes (16, 3), (16, 1) at /home/s/lab01.py:57"),
        ("expected [1.] (shape (1,)), got [0.]", "expected [-2.5e-3] (shape (7,)), got [nan]"),
        ("got () and (2,)", "got () and (3,)"),
        ("Expected: [0.1, -2. , 3.5] Got: [0.1 , 2.25, 3.5 ]", "Expected: [[1., 2.], [3., 4.]] Got: [5., ..., 6.]"),
    ],
    ids=["shapes-paths", "numbers", "scalars", "arrays"],
)
def test_a_pattern_forgets_numbers_shapes_and_paths(a, b):
    assert pattern(a) == pattern(b)


def test_a_pattern_keeps_the_words_and_the_lab():
    assert pattern("lab01: train is still a stub") == "lab01: train is still a stub"
    assert pattern("in [a, b] at (x, y)") == "in [a, b] at (x, y)"
    assert pattern("TypeError: x") != pattern("ValueError: x")


def test_the_page_stands_alone_and_shows_every_figure(analysis):
    page = analysis.html.read_text()
    assert "<script" not in page and not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "@import" not in page and "url(" not in page
    assert page.count("<svg") == 4  # the histogram of lab01, the pass rates, the grid, the times
    assert "lab01: students per score" in page
    for student in ("alice", "bob", "carol", "dave", "team-a"):
        assert f">{student}</text>" in page
    assert all(f">{s.mark}</span>" in page for s in Status)  # the grid's legend


def test_the_grid_puts_the_weakest_student_on_top(analysis):
    page = analysis.html.read_text()
    grid = page[page.index('aria-label="students by tests"') :]
    order = [m for m in re.findall(r'text-anchor="end">([\w-]+)</text>', grid)]
    assert order[0] == "carol" and order[-1] == "alice"


def test_the_command_and_a_folder_not_graded(graded_class, tmp_path, capsys):
    _, graded = graded_class
    copy = tmp_path / "grades"
    shutil.copytree(graded, copy)
    (copy / "zed").mkdir()  # an interrupted run: no results.json
    assert main(["analyze", str(copy), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "not in the analysis: zed (no results.json)" in printed
    assert "5 students, 14 tests; the lowest pass rates:" in printed
    assert (tmp_path / "out" / "index.html").exists() and (tmp_path / "out" / "tests.csv").exists()
    (copy / "bob" / "results.json").write_text("{not json")
    with pytest.raises(CourseError, match="bob/results.json is not a results.json"):
        read_class(copy)


def test_an_unknown_status_heading_is_an_error():
    assert status_of("**Timed out**\n\nit ran longer") == "timed out"
    with pytest.raises(ValueError, match="not a status"):
        status_of("**Partly right**")
