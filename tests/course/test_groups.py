"""Homework in groups: `course groups` (sizes, sections, a seed, earlier partners kept apart), a group's
submission credited to its members by `course gradebook`, not flagged by `course similarity`, and
Gradescope's members recorded in results.json."""

import csv
import json
import shutil
from itertools import combinations

import pytest

from course.cli import main
from course.errors import CourseError
from course.staff.gradebook import read_roster, write_gradebook
from course.staff.gradescope import members, record_members
from course.staff.groups import form_groups, read_groups, write_groups


def _roster(sections: dict[str, int]) -> str:
    """A roster of ``{section: students}``, the students s01, s02, ... in order."""
    lines, n = ["folder,Student,ID,SIS User ID,SIS Login ID,Section"], 0
    for section, count in sections.items():
        for _ in range(count):
            n += 1
            lines.append(f's{n:02d},"Student {n}",{100 + n},S{n:03d},login{n},{section}')
    return "\n".join(lines) + "\n"


def _rows(path):
    with path.open(newline="") as f:
        return list(csv.reader(f))


SECTIONS = {"A": [f"a{i}" for i in range(10)], "B": [f"b{i}" for i in range(7)], "C": ["c0", "c1"]}


@pytest.mark.parametrize("size", [2, 3, 4])
def test_groups_stay_in_their_section_with_sizes_differing_by_at_most_one(size):
    result = form_groups(SECTIONS, size=size, seed=7)
    placed = [m for members in result.groups.values() for m in members]
    assert sorted(placed) == sorted(s for students in SECTIONS.values() for s in students)  # each once
    for section, students in SECTIONS.items():
        groups = [m for g, m in result.groups.items() if result.section[g] == section]
        assert all(set(m) <= set(students) for m in groups)
        sizes = [len(m) for m in groups]
        assert max(sizes) - min(sizes) <= 1, (section, sizes)
        if len(students) >= size:  # never fewer than size; one group when the section is smaller
            assert min(sizes) >= size and len(groups) == len(students) // size
        else:
            assert len(groups) == 1


def test_the_same_seed_gives_the_same_groups_and_another_seed_others():
    a, b = form_groups(SECTIONS, size=3, seed=7), form_groups(SECTIONS, size=3, seed=7)
    assert a.groups == b.groups and a.section == b.section
    assert form_groups(SECTIONS, size=3, seed=8).groups != a.groups


def _pairs(groups):
    return {frozenset(p) for m in groups.values() for p in combinations(m, 2)}


def test_earlier_partners_are_kept_apart_where_the_section_allows():
    before = form_groups(SECTIONS, size=2, seed=1).groups
    after = form_groups(SECTIONS, size=2, seed=2, avoid=before)
    # Section A and B have room to part everyone; C's two students must work together again.
    assert after.together_again == [("c0", "c1")]
    assert _pairs(before) & _pairs(after.groups) == {frozenset(("c0", "c1"))}
    again = form_groups(SECTIONS, size=2, seed=2)  # the same seed without --avoid: some meet again
    assert len(_pairs(before) & _pairs(again.groups)) > 1


def test_a_section_of_three_in_one_group_before_cannot_be_parted():
    result = form_groups({"A": ["x", "y", "z"]}, size=3, seed=0, avoid={"old": ["x", "y", "z"]})
    assert result.together_again == [("x", "y"), ("x", "z"), ("y", "z")]


def test_a_group_has_two_students_at_least():
    with pytest.raises(CourseError, match="--size 1: a group has at least 2 students"):
        form_groups(SECTIONS, size=1, seed=0)


def test_the_command_writes_the_roster_with_a_group_column(tmp_path, capsys):
    (tmp_path / "roster.csv").write_text(_roster({"Section A": 7, "Section B": 4}))
    out = tmp_path / "groups.csv"
    assert main(["groups", str(tmp_path / "roster.csv"), "--size", "3", "--seed", "5", "--out", str(out)]) == 0
    assert "wrote 3 groups of 3 or 4 in 2 section(s)" in capsys.readouterr().out
    rows = _rows(out)
    assert rows[0] == ["folder", "Student", "ID", "SIS User ID", "SIS Login ID", "Section", "group"]
    assert [r[0] for r in rows[1:]] == [f"s{n:02d}" for n in range(1, 12)]  # the roster's order
    roster = read_roster(out)  # the groups file is a roster: gradebook and similarity read it as it is
    assert {r["group"] for r in roster.values()} == {"group-01", "group-02", "group-03"}
    groups = read_groups(out)
    assert sorted(len(m) for m in groups.values()) == [3, 4, 4]
    assert all(len({roster[m]["Section"] for m in members}) == 1 for members in groups.values())
    # Again, avoiding these groups: the 4 of section B were all in one group and must meet again somewhere.
    again = tmp_path / "again.csv"
    args = ["--size", "2", "--seed", "5", "--out", str(again), "--avoid", str(out)]
    assert main(["groups", str(tmp_path / "roster.csv"), *args]) == 0
    printed = capsys.readouterr().out
    result = write_groups(tmp_path / "roster.csv", tmp_path / "x.csv", size=2, seed=5, avoid=out)
    assert f"{len(result.together_again)} pair(s) from {out} are together again" in printed
    assert len(result.together_again) >= 2  # B: 2 groups of 2 from 4 who were all together


def test_an_avoid_file_without_groups_says_what_it_needs(tmp_path):
    (tmp_path / "roster.csv").write_text(_roster({"A": 4}))
    with pytest.raises(CourseError, match="no column 'group'"):
        write_groups(tmp_path / "roster.csv", tmp_path / "g.csv", size=2, seed=0, avoid=tmp_path / "roster.csv")
    with pytest.raises(CourseError, match="nowhere.csv: no such file"):
        read_groups(tmp_path / "nowhere.csv")


# ---------------------------------------------------------------------------------------------------
# The gradebook credits a group's submission to its members

GROUP_ROSTER = """folder,Student,ID,SIS User ID,SIS Login ID,Section,group
alice,"Liddell, Alice",101,S001,aliddell,Section A,
bob,"Builder, Bob",102,S002,bbuilder,Section A,
carol,"Carol C",103,S003,carolc,Section A,
dave,"Bowman, Dave",104,S004,dbowman,Section B,
erin,"Erin E",105,S005,erine,Section B,team-a
frank,"Frank F",106,S006,frankf,Section B,team-a
gina,"Gina G",107,S007,ginag,Section B,team-a
"""


@pytest.mark.solutions_only
def test_a_group_submission_graded_for_real_credits_every_member(graded_class, tmp_path, capsys):
    _, graded = graded_class
    (tmp_path / "roster.csv").write_text(GROUP_ROSTER)
    team = json.loads((graded / "team-a" / "results.json").read_text())
    assert 0 < team["score"] < team["max_score"]  # step(0) is wrong: not full marks, so the credit is its own
    out = tmp_path / "canvas.csv"
    assert main(["gradebook", str(graded), "--roster", str(tmp_path / "roster.csv"), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "credited team-a's grade to erin, frank, gina" in printed.out and "every student matched" in printed.out
    rows = {r[0]: r for r in _rows(out)}
    assert "team-a" not in rows  # the group is not a student
    for name in ("Erin E", "Frank F", "Gina G"):
        assert float(rows[name][5]) == team["score"]
    assert float(rows["Liddell, Alice"][5]) == team["max_score"]
    plain = write_gradebook(graded, tmp_path / "plain.csv", roster=tmp_path / "roster.csv", format="plain")
    by = {r[0]: r for r in _rows(plain.path)}
    want = [f"{team['score']:g}", f"{team['score']:g}", f"{team['max_score']:g}"]  # lab01, total, max
    assert [by[m][1:] for m in ("erin", "frank", "gina")] == [want] * 3
    assert plain.credited == {"erin": "team-a", "frank": "team-a", "gina": "team-a"}
    assert (plain.unknown, plain.missing, plain.twice) == ([], [], [])


@pytest.mark.solutions_only
def test_a_member_who_also_handed_in_alone_is_reported(graded_class, tmp_path, capsys):
    _, graded = graded_class
    copy = tmp_path / "grades"
    shutil.copytree(graded, copy)
    shutil.copytree(copy / "carol", copy / "gina")  # gina handed in the stub alone, as well as with team-a
    (tmp_path / "roster.csv").write_text(GROUP_ROSTER)
    out = tmp_path / "canvas.csv"
    assert main(["gradebook", str(copy), "--roster", str(tmp_path / "roster.csv"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "twice: gina handed in alone and with team-a" in err
    team = json.loads((copy / "team-a" / "results.json").read_text())["score"]
    problems = _rows(tmp_path / "canvas.csv.problems.csv")
    assert problems[1][:3] == ["twice", "gina", "Gina G"]
    assert f"handed in alone (0 points) and with team-a ({team:g} points)" in problems[1][3]
    assert {r[0]: r for r in _rows(out)}["Gina G"][5] == f"{team:g}"  # the group's, and said so


def test_a_group_named_like_a_student_is_refused(tmp_path):
    (tmp_path / "roster.csv").write_text(GROUP_ROSTER.replace(",team-a\n", ",alice\n"))
    with pytest.raises(CourseError, match="'alice' is both a student's folder and a group"):
        read_roster(tmp_path / "roster.csv")


# ---------------------------------------------------------------------------------------------------
# Similarity: one group's members are expected to share code


@pytest.mark.solutions_only
def test_similarity_does_not_flag_one_groups_members_and_lists_them_apart(graded_class, tmp_path, capsys):
    subs, _ = graded_class
    klass = tmp_path / "submissions"
    for folder in ("alice", "carol", "team-a"):
        shutil.copytree(subs / folder, klass / folder)
    shutil.copytree(subs / "team-a", klass / "erin")  # a member handed in the group's work as well
    (tmp_path / "roster.csv").write_text(GROUP_ROSTER)
    out = tmp_path / "similarity"
    assert main(["similarity", str(klass), "--out", str(out), "--roster", str(tmp_path / "roster.csv")]) == 0
    printed = capsys.readouterr().out
    assert "1 pair(s) of one group, not flagged" in printed and "lab01  erin  team-a" in printed
    rows = {(r["student_a"], r["student_b"]): r for r in csv.DictReader((out / "similarity.csv").open())}
    same = rows[("erin", "team-a")]
    assert float(same["max"]) == 1.0 and same["flagged"] == "" and same["group"] == "team-a"
    assert rows[("alice", "team-a")]["flagged"] == "yes" and rows[("alice", "team-a")]["group"] == ""
    page = (out / "similarity.html").read_text()
    assert "<h2>Pairs of one group</h2>" in page
    assert page.index("<td>erin</td><td>team-a</td>") > page.index("<h2>Pairs of one group</h2>")
    # Without the roster, the same pair is flagged like any other.
    assert main(["similarity", str(klass), "--out", str(tmp_path / "plain")]) == 0
    assert "lab01  erin  team-a" in capsys.readouterr().out.split("pair(s) of one group")[0]


# ---------------------------------------------------------------------------------------------------
# Gradescope: the members of a submission, from submission_metadata.json

METADATA = {  # Gradescope's documented layout (gradescope-autograders.readthedocs.io, "Submission Metadata")
    "id": 123456,
    "created_at": "2018-07-01T14:22:32.365935-07:00",
    "assignment": {"group_size": 4, "group_submission": True, "id": 25828, "title": "Programming Assignment 1"},
    "submission_method": "upload",
    "users": [
        {"email": "erin@example.com", "id": 1234, "name": "Erin E", "sid": "S005"},
        {"email": "frank@example.com", "id": 1235, "name": "Frank F"},
    ],
    "previous_submissions": [],
}


def test_the_members_are_read_from_gradescope_metadata(tmp_path):
    (tmp_path / "submission_metadata.json").write_text(json.dumps(METADATA))
    assert members(tmp_path / "submission_metadata.json") == [
        {"name": "Erin E", "email": "erin@example.com", "id": 1234, "sid": "S005"},
        {"name": "Frank F", "email": "frank@example.com", "id": 1235},
    ]
    (tmp_path / "results.json").write_text(json.dumps({"score": 1, "tests": [], "extra_data": {"timeout_s": 5}}))
    record_members(tmp_path / "results.json", tmp_path / "submission_metadata.json")
    extra = json.loads((tmp_path / "results.json").read_text())["extra_data"]
    assert extra["timeout_s"] == 5 and [m["name"] for m in extra["members"]] == ["Erin E", "Frank F"]
    assert record_members(tmp_path / "results.json", tmp_path / "absent.json") is None  # not on Gradescope


@pytest.mark.parametrize("text", ["{not json", '{"id": 1}', '{"users": "erin"}', '{"users": ["erin"]}'])
def test_metadata_without_a_list_of_users_is_an_error_naming_the_file(tmp_path, text):
    (tmp_path / "submission_metadata.json").write_text(text)
    with pytest.raises(CourseError, match="submission_metadata.json: not Gradescope's submission metadata"):
        members(tmp_path / "submission_metadata.json")


@pytest.mark.solutions_only
def test_course_grade_records_the_members_and_a_bad_file_costs_only_the_record(fresh_stubs, tmp_path, capsys):
    (tmp_path / "submission_metadata.json").write_text(json.dumps(METADATA))
    results = tmp_path / "results.json"
    args = ["grade", "lab01", "--impl", str(fresh_stubs), "--results", str(results), "--timeout", "20"]
    assert main([*args, "--metadata", str(tmp_path / "submission_metadata.json")]) == 0
    data = json.loads(results.read_text())
    assert [m["email"] for m in data["extra_data"]["members"]] == ["erin@example.com", "frank@example.com"]
    assert data["extra_data"]["timeout_s"] == 20 and data["tests"]
    (tmp_path / "submission_metadata.json").write_text("{not json")
    assert main([*args, "--metadata", str(tmp_path / "submission_metadata.json")]) == 0
    assert "warning: members not recorded" in capsys.readouterr().err
    assert "members" not in json.loads(results.read_text())["extra_data"]
