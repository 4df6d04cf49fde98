"""Submissions the tests hand in: lab 01's solution as a notebook, damaged in the ways a notebook can be,
in a zip, and a class of them each malformed in its own way (tests/course/test_robust.py and the class's
run end to end in tests/e2e/test_grading_run.py); a lab that leaves traces in its process (the zygote's
fresh forks in tests/course/test_grader.py, the warm daemon in tests/e2e/test_daemon_run.py)."""

import copy
import io
import json
import warnings
import zipfile
from pathlib import Path

import nbformat

from course import labs
from course.staff import notebooks

LAB01 = labs.lab_files("solutions")["lab01"]
SYNTAX_ERROR = LAB01.read_text().replace("def sigmoid(z", "def sigmoid(z,,", 1)


def solution_notebook() -> dict:
    """Lab 01's solution notebook as its JSON."""
    return json.loads(nbformat.writes(notebooks.build(LAB01, checks=False)))


def damaged_notebook(change) -> dict:
    nb = copy.deepcopy(solution_notebook())
    change(nb)
    return nb


def first_code(nb: dict) -> dict:
    return next(c for c in nb["cells"] if c["cell_type"] == "code")


DAMAGED = {
    "course-metadata-a-string": (lambda nb: nb["metadata"].__setitem__("course", "lab01"), None),
    "lab-a-number": (lambda nb: nb["metadata"]["course"].__setitem__("lab", 1), None),
    "lab-a-list": (lambda nb: nb["metadata"]["course"].__setitem__("lab", [1]), None),
    "source-a-number": (lambda nb: first_code(nb).__setitem__("source", 5), "its code is a number, not text"),
    "source-an-object": (lambda nb: first_code(nb).__setitem__("source", {"a": 1}), "its code is an object"),
    "metadata-a-list": (lambda nb: nb.__setitem__("metadata", [1]), "not a readable notebook"),
    "cells-an-object": (lambda nb: nb.__setitem__("cells", {"x": 1}), "not a readable notebook"),
    "a-cell-a-number": (lambda nb: nb["cells"].insert(0, 7), "not a readable notebook"),
}


def zip_of(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": a zip a student's tool may well write
        for name, data in entries:
            zf.writestr(name, data)
    return buffer.getvalue()


def malformed_class(tmp_path) -> Path:
    """A class of lab 01 submissions, every one malformed in its own way, and one good one."""
    subs = tmp_path / "submissions"
    nb = solution_notebook()
    students = {
        "alice": {LAB01.name: LAB01.read_bytes()},
        "bob": {LAB01.name: SYNTAX_ERROR.encode()},
        "carol": {
            "lab01_perceptron.ipynb": json.dumps(damaged_notebook(DAMAGED["course-metadata-a-string"][0])).encode()
        },
        "dave": {"lab01_perceptron.ipynb": json.dumps(damaged_notebook(DAMAGED["source-an-object"][0])).encode()},
        "erin": {"lab01_perceptron.ipynb": b"this is not a notebook"},
        "gus": {"notes.txt": b"I did not do lab 01"},
        "jo": {LAB01.name: LAB01.read_text().replace("def augment(", "def augmented(").encode()},
        "hana": {"lab01_perceptron.ipynb": json.dumps({**nb, "metadata": {"course": {"lab": 1}}}).encode()},
    }
    for student, files in students.items():
        (subs / student).mkdir(parents=True)
        for name, data in files.items():
            (subs / student / name).write_bytes(data)
    (subs / "frank.zip").write_bytes(
        zip_of([("lab01_x.py", LAB01.read_bytes()), ("lab01_x.py/extra.py", b""), ("f" * 300 + "/a.py", b"")])
    )
    (subs / "ivan.zip").write_bytes(b"PK\x03\x04 and then nothing")
    return subs


STATEFUL_LAB = '''
"""A lab that leaves traces where it can: in a library module, the environment and a global."""
import json, os

json.TRACES = getattr(json, "TRACES", 0) + 1
os.environ["LEFT_BY_THE_LAB"] = str(json.TRACES)

def traces():
    return [json.TRACES, os.environ["LEFT_BY_THE_LAB"]]
'''

STATEFUL_TESTS = """
import json

def test_the_lab_is_fresh(lab):
    assert lab.traces() == [1, "1"]

def test_the_test_process_is_fresh():
    assert not hasattr(json, "TRACES_IN_TESTS")
    json.TRACES_IN_TESTS = True
"""


def stateful_lab(folder: Path) -> Path:
    """``folder`` holding lab 42, which leaves traces in its process, and its tests (``labs/``, ``tests/labs/``)."""
    (folder / "labs").mkdir()
    (folder / "tests" / "labs").mkdir(parents=True)
    (folder / "labs" / "lab42_state.py").write_text(STATEFUL_LAB)
    (folder / "tests" / "labs" / "test_lab42_state.py").write_text(STATEFUL_TESTS)
    return folder
