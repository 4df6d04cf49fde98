"""`course gradebook`: Canvas' CSV and the plain one, exactly, from a graded class; unmatched students reported."""

import csv
import json

import pytest

from course.cli import main
from course.errors import CourseError
from course.staff.gradebook import read_graded, write_gradebook

ROSTER = """folder,Student,ID,SIS User ID,SIS Login ID,Section
alice,"Liddell, Alice",101,S001,aliddell,Section A
bob,"Builder, Bob",102,S002,bbuilder,Section A
dave,"Bowman, Dave",104,S004,dbowman,Section B
"""


def _results(lab_points: dict[str, list[tuple[float, float]]]) -> dict:
    """A results.json as `course grade` writes it: one entry per test, named "labNN: test"."""
    tests = [
        {"name": f"{lab}: test_{n}", "score": score, "max_score": top, "status": "passed" if score == top else "failed"}
        for lab, points in lab_points.items()
        for n, (score, top) in enumerate(points)
    ]
    return {"score": sum(t["score"] for t in tests), "max_score": sum(t["max_score"] for t in tests), "tests": tests}


@pytest.fixture
def graded(tmp_path):
    """alice: full marks; bob: part; carol: graded, not in the roster; erin: interrupted (no results.json);
    dave (in the roster) handed nothing in. lab02's tests are worth 3 and 2.5 points."""
    folder = tmp_path / "grades"
    students = {
        "alice": {"lab01": [(1, 1), (2, 2)], "lab02": [(3, 3), (2.5, 2.5)]},
        "bob": {"lab01": [(1, 1), (0, 2)], "lab02": [(0, 3), (2.5, 2.5)]},
        "carol": {"lab01": [(0, 1), (2, 2)], "lab02": [(3, 3), (0, 2.5)]},
    }
    for name, points in students.items():
        (folder / name).mkdir(parents=True)
        (folder / name / "results.json").write_text(json.dumps(_results(points)))
    (folder / "erin").mkdir()
    (folder / "gradebook.csv").write_text("student,lab01,lab02,total,max\n")  # what `course grade` writes too
    (tmp_path / "roster.csv").write_text(ROSTER)
    return folder


def _rows(path):
    with path.open(newline="") as f:
        return list(csv.reader(f))


def test_canvas_layout(graded, tmp_path):
    book = write_gradebook(graded, tmp_path / "canvas.csv", roster=tmp_path / "roster.csv", format="canvas")
    assert _rows(book.path) == [
        ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "lab01", "lab02"],
        ["Points Possible", "", "", "", "", "3", "5.5"],
        ["Liddell, Alice", "101", "S001", "aliddell", "Section A", "3", "5.5"],
        ["Builder, Bob", "102", "S002", "bbuilder", "Section A", "1", "2.5"],
        ["Bowman, Dave", "104", "S004", "dbowman", "Section B", "", ""],
    ]
    assert (book.unknown, book.missing, book.not_graded) == (["carol"], ["dave"], ["erin"])


def test_canvas_missing_as_zero_and_named_columns(graded, tmp_path):
    book = write_gradebook(
        graded,
        tmp_path / "canvas.csv",
        roster=tmp_path / "roster.csv",
        missing_as_zero=True,
        columns={"lab01": "Lab 1 (12345)"},
    )
    rows = _rows(book.path)
    assert rows[0][5:] == ["Lab 1 (12345)", "lab02"]
    assert rows[-1] == ["Bowman, Dave", "104", "S004", "dbowman", "Section B", "0", "0"]


def test_plain_layout_with_and_without_roster(graded, tmp_path):
    book = write_gradebook(graded, tmp_path / "plain.csv", roster=tmp_path / "roster.csv", format="plain")
    assert _rows(book.path) == [
        ["student", "lab01", "lab02", "total", "max"],
        ["alice", "3", "5.5", "8.5", "8.5"],
        ["bob", "1", "2.5", "3.5", "8.5"],
        ["dave", "", "", "", ""],
        ["carol", "2", "3", "5", "8.5"],  # not in the roster: kept, after the roster's students
    ]
    bare = write_gradebook(graded, tmp_path / "bare.csv", format="plain")
    assert [r[0] for r in _rows(bare.path)] == ["student", "alice", "bob", "carol"]
    assert (bare.unknown, bare.missing, bare.not_graded) == ([], [], ["erin"])


def test_unmatched_students_are_in_a_file_and_printed(graded, tmp_path, capsys):
    args = ["--roster", str(tmp_path / "roster.csv"), "--format", "canvas", "--out", str(tmp_path / "canvas.csv")]
    status = main(["gradebook", str(graded), *args])
    assert status == 1  # carol's and erin's grades are in no gradebook: the staff must act
    problems = _rows(tmp_path / "canvas.csv.problems.csv")
    assert [r[:3] for r in problems] == [
        ["problem", "folder", "Student"],
        ["unknown", "carol", ""],
        ["missing", "dave", "Bowman, Dave"],
        ["not graded", "erin", ""],
    ]
    printed = capsys.readouterr()
    assert "unknown: carol was graded but is not in the roster" in printed.err
    assert "missing: dave is in the roster" in printed.err and "not graded: erin" in printed.err
    assert "3 student(s) unmatched" in printed.out


def test_a_full_match_exits_0_with_an_empty_problems_file(tmp_path, capsys):
    folder = tmp_path / "grades"
    (folder / "alice").mkdir(parents=True)
    (folder / "alice" / "results.json").write_text(json.dumps(_results({"lab01": [(1, 1)]})))
    (tmp_path / "roster.csv").write_text(ROSTER.splitlines()[0] + "\n" + ROSTER.splitlines()[1] + "\n")
    out = tmp_path / "canvas.csv"
    assert main(["gradebook", str(folder), "--roster", str(tmp_path / "roster.csv"), "--out", str(out)]) == 0
    assert _rows(tmp_path / "canvas.csv.problems.csv") == [["problem", "folder", "Student", "what happened"]]
    assert "every student matched" in capsys.readouterr().out


@pytest.mark.parametrize(
    "roster, message",
    [
        ("folder,Student,ID\nalice,A,1\n", "no column 'SIS User ID', 'SIS Login ID', 'Section'"),
        (ROSTER + "alice,Again,105,S005,again,Section A\n", "line 5: folder 'alice' is there twice"),
        (ROSTER + ",Nobody,106,S006,nobody,Section A\n", "line 5: no folder"),
        (ROSTER + "frank,Frank,,,,Section A\n", "line 5 (frank): Canvas finds a student by ID"),
    ],
    ids=["columns", "twice", "no-folder", "no-id"],
)
def test_a_bad_roster_says_what_to_fix(graded, tmp_path, roster, message):
    (tmp_path / "roster.csv").write_text(roster)
    with pytest.raises(CourseError, match=message.replace("(", r"\(").replace(")", r"\)")):
        write_gradebook(graded, tmp_path / "out.csv", roster=tmp_path / "roster.csv")


def test_canvas_needs_a_roster_and_a_graded_folder(graded, tmp_path):
    with pytest.raises(CourseError, match="needs --roster"):
        write_gradebook(graded, tmp_path / "out.csv", format="canvas")
    with pytest.raises(CourseError, match="no such folder"):
        read_graded(tmp_path / "nowhere")
    (graded / "alice" / "results.json").write_text("{not json")
    with pytest.raises(CourseError, match="alice/results.json is not a results.json"):
        read_graded(graded)


@pytest.mark.solutions_only
def test_a_class_graded_for_real(graded_class, tmp_path):
    """`course grade --submissions` (the class tests/conftest.py grades) then `course gradebook`: the solution's
    lab01 earns the points possible, the untouched stub 0, a student who handed nothing in a blank."""
    _, grades = graded_class
    (tmp_path / "roster.csv").write_text(
        'folder,Student,ID,SIS User ID,SIS Login ID,Section\nalice,"Liddell, Alice",101,S001,aliddell,A\n'
        'carol,"Carol C",103,S003,ccarol,A\nzed,"Zed Z",105,S005,zzed,B\n'
    )
    book = write_gradebook(grades, tmp_path / "canvas.csv", roster=tmp_path / "roster.csv")
    header, possible, alice, carol, zed = _rows(book.path)
    assert header[5:] == ["lab01"] and float(possible[5]) > 0
    assert alice[5] == possible[5] and carol[5] == "0" and zed[5] == ""
