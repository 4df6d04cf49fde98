"""Every submission gets a result, whatever it holds: a file that does not parse or decode, a notebook that
is not one or has metadata of any type, a zip that cannot be unpacked whole, a lab missing. Each costs
that submission (or that lab) its points, with the reason in the student's words; the class's run ends
with its gradebook. The fuzz tests feed the readers random and mutated inputs: a result or a
CourseError, never another exception.
"""

import copy
import json
from pathlib import Path

import nbformat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from submissions import DAMAGED, LAB01, SYNTAX_ERROR, damaged_notebook, solution_notebook, zip_of

from course import cli, labs
from course.errors import CourseError
from course.grader import batch, runner
from course.grader.notebook import convert, convert_for_grading, notebook_lab
from course.staff import notebooks

pytestmark = pytest.mark.solutions_only


LATIN1 = (
    LAB01.read_text()
    .replace('"""The logistic function', '"""The logistic function, café', 1)
    .encode("latin-1", "replace")
)


# ------------------------------------------------------------------------------------ the lab file


@pytest.mark.parametrize(
    "content",
    [SYNTAX_ERROR.encode(), LATIN1, b"\x00\xff\xfe", b'"""\x00"""', b"(" * 300, b""],
    ids=["syntax-error", "latin-1", "binary", "nul-in-docstring", "deeply-nested", "empty"],
)
def test_a_lab_that_does_not_parse_or_decode_has_its_name_for_a_title(tmp_path, content):
    path = tmp_path / "lab01_perceptron.py"
    path.write_bytes(content)
    assert labs.lab_title(path) == "lab01_perceptron"
    assert cli._titles(str(tmp_path)) == {"lab01": "lab01_perceptron"}


def test_course_grade_reports_a_syntax_error_at_its_line_and_writes_results(tmp_path, capsys):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / LAB01.name).write_text(SYNTAX_ERROR)
    results = tmp_path / "results.json"
    assert cli.main(["grade", "lab01", "--impl", str(tmp_path / "work"), "--results", str(results)]) == 0
    shown = capsys.readouterr().out
    line = SYNTAX_ERROR.splitlines().index(next(x for x in SYNTAX_ERROR.splitlines() if "z,," in x)) + 1
    assert f"{LAB01.name}:{line}" in shown and "SyntaxError" in shown and "Traceback" not in shown
    data = json.loads(results.read_text())
    assert data["score"] == 0 and data["max_score"] > 0
    assert all("SyntaxError" in t["output"] and f"{LAB01.name}:{line}" in t["output"] for t in data["tests"])


# -------------------------------------------------------------------------------------- notebooks


@pytest.mark.parametrize("name", list(DAMAGED))
def test_a_notebook_with_metadata_of_any_type_is_converted_or_refused_in_words(tmp_path, name):
    change, refused = DAMAGED[name]
    path = tmp_path / "lab01_perceptron.ipynb"
    path.write_text(json.dumps(damaged_notebook(change)))
    if refused is None:
        assert convert(path).lab == "lab01"
        return
    with pytest.raises(CourseError, match=refused) as info:
        convert(path)
    assert "Error" not in str(info.value) and "NotebookNode" not in str(info.value)
    # In a folder, it costs that lab (its tests say why) and no other notebook.
    (tmp_path / "lab02_combining.ipynb").write_text(
        nbformat.writes(notebooks.build(labs.lab_files("solutions")["lab02"], checks=False))
    )
    (tmp_path / "out").mkdir()
    found, _, _, damaged = convert_for_grading(tmp_path, tmp_path / "out")
    assert found == ["lab02"] and refused in damaged["lab01"] and str(tmp_path) not in damaged["lab01"]


def test_which_lab_a_notebook_is_ignores_metadata_of_the_wrong_type():
    assert notebook_lab(Path("lab03_x.ipynb"), {"metadata": {"course": "lab01"}}) == "lab03"
    assert notebook_lab(Path("mine.ipynb"), {"metadata": {"course": {"lab": 2}}}) == "lab02"
    assert notebook_lab(Path("mine.ipynb"), {"metadata": {"course": {"lab": True}}}) is None
    assert notebook_lab(Path("lab04.ipynb"), {"metadata": {"course": {"lab": "not a lab"}}}) == "lab04"


# ------------------------------------------------------------------------------------------- zips


def test_a_zip_that_cannot_be_unpacked_whole_loses_only_the_entries_in_the_way(tmp_path):
    path = tmp_path / "erin.zip"
    path.write_bytes(
        zip_of(
            [
                ("lab01_x.py", b"x = 1\n"),
                ("lab01_x.py/extra.py", b"y = 2\n"),
                ("d" * 300 + "/lab02_y.py", b"z = 3\n"),
                (LAB01.name, LAB01.read_bytes()),
            ]
        )
    )
    impl, notes = batch._unpack(batch.Submission("erin", path), tmp_path / "unpacked")
    assert (impl / LAB01.name).read_bytes() == LAB01.read_bytes() and (impl / "lab01_x.py").read_text() == "x = 1\n"
    assert len(notes) == 2, notes
    assert "'lab01_x.py/extra.py'" in notes[0] and "in the way" in notes[0]
    assert "name is too long" in notes[1]
    assert not any(str(tmp_path) in note for note in notes)


def _central(content: bytes, offset: int, patch: bytes) -> bytes:
    """``content`` with ``patch`` written over its last central-directory header, ``offset`` bytes in."""
    at = content.rindex(b"PK\x01\x02") + offset
    return content[:at] + patch + content[at + len(patch) :]


@pytest.mark.parametrize(
    "damage",
    [
        lambda c: _central(c, 46, b"\x00"),  # a name of one NUL, which zipfile reads as the empty name
        lambda c: _central(c, 6, b"@\x00"),  # "zip file version 6.4", which Python's zipfile cannot read
    ],
    ids=["empty-name", "unreadable-version"],
)
def test_zips_the_fuzzer_found_are_unpacked_or_refused_in_words(tmp_path, damage):
    (tmp_path / "s.zip").write_bytes(damage(zip_of([("lab01_perceptron.py", LAB01.read_bytes()), ("0", b"")])))
    try:
        impl, notes = batch._unpack(batch.Submission("s", tmp_path / "s.zip"), tmp_path / "unpacked")
    except CourseError as exc:
        assert "s.zip is not a zip file" in str(exc)
    else:
        assert all(p.resolve().is_relative_to(impl.resolve()) for p in impl.rglob("*"))


def test_a_folder_named_like_a_lab_file_is_not_one(tmp_path):
    path = tmp_path / "kim.zip"
    path.write_bytes(zip_of([("lab01_x.py/extra.py", b"y = 2\n"), ("lab01_x.py", LAB01.read_bytes())]))
    impl, notes = batch._unpack(batch.Submission("kim", path), tmp_path / "unpacked")
    assert (impl / "lab01_x.py").is_dir() and len(notes) == 1 and "'lab01_x.py'" in notes[0]
    assert labs.lab_files(impl) == {}  # so lab01's tests say that there is no lab01 file


# ----------------------------------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_KEYS = ["metadata", "cells", "nbformat", "nbformat_minor", "course", "lab", "source", "cell_type", "outputs"]


def _mutate(value, data):
    """``value`` with one place (chosen by hypothesis) replaced by arbitrary JSON."""
    if not isinstance(value, (dict, list)) or not value or not data.draw(st.booleans()):
        return data.draw(_JSON)
    keys = list(value) if isinstance(value, dict) else list(range(len(value)))
    key = data.draw(st.sampled_from(keys))
    value = copy.copy(value)
    value[key] = _mutate(value[key], data)
    return value


@settings(FUZZ, max_examples=200)  # each reads a whole notebook (about 0.1 s)
@given(data=st.data())
def test_fuzz_the_notebook_reader(tmp_path_factory, data):
    base = solution_notebook()
    kind = data.draw(st.sampled_from(["mutated", "random-json", "bytes", "metadata"]))
    if kind == "mutated":
        content = json.dumps(_mutate(base, data)).encode()
    elif kind == "metadata":
        content = json.dumps({**base, "metadata": {"course": data.draw(_JSON)}}).encode()
    elif kind == "random-json":
        content = json.dumps(data.draw(st.dictionaries(st.sampled_from(_KEYS), _JSON, max_size=5))).encode()
    else:
        raw = json.dumps(base).encode()
        cut = data.draw(st.integers(0, len(raw)))
        content = raw[:cut] + data.draw(st.binary(max_size=40))
    folder = tmp_path_factory.mktemp("nb")
    path = folder / "lab01_perceptron.ipynb"
    path.write_bytes(content)
    try:
        assert convert(path).lab == "lab01"
    except CourseError:
        pass
    (folder / "out").mkdir()
    found, _, _, damaged = convert_for_grading(folder, folder / "out")  # never raises: a damaged lab says why
    assert found == ["lab01"] or set(damaged) == {"lab01"}


_NAMES = st.sampled_from(["lab01_perceptron.py", "lab01_x.py", "lab01_x.py/extra.py", "a/", "../up.py", "/abs.py"]) | (
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1, max_size=300)
)


@FUZZ
@given(data=st.data())
def test_fuzz_the_zip_reader(tmp_path_factory, data):
    kind = data.draw(st.sampled_from(["entries", "mutated", "bytes"]))
    if kind == "bytes":
        content = data.draw(st.binary(max_size=200))
    else:
        entries = data.draw(st.lists(st.tuples(_NAMES, st.binary(max_size=50)), min_size=1, max_size=6))
        content = zip_of(entries)
        if kind == "mutated":
            at = data.draw(st.integers(0, len(content) - 1))
            content = content[:at] + data.draw(st.binary(min_size=1, max_size=8)) + content[at + 8 :]
    folder = tmp_path_factory.mktemp("zip")
    (folder / "s.zip").write_bytes(content)
    try:
        impl, notes = batch._unpack(batch.Submission("s", folder / "s.zip"), folder / "unpacked")
    except CourseError:
        return
    assert impl.is_dir() and all(isinstance(n, str) and str(folder) not in n for n in notes)
    assert all(p.resolve().is_relative_to(impl.resolve()) for p in impl.rglob("*"))


_SOURCE = st.sampled_from([LAB01.read_bytes(), SYNTAX_ERROR.encode(), LATIN1])


@FUZZ
@given(data=st.data())
def test_fuzz_the_lab_file_reader(tmp_path_factory, data):
    base = data.draw(_SOURCE)
    kind = data.draw(st.sampled_from(["mutated", "truncated", "bytes", "text"]))
    if kind == "mutated":
        at = data.draw(st.integers(0, len(base) - 1))
        content = base[:at] + data.draw(st.binary(min_size=1, max_size=16)) + base[at + 1 :]
    elif kind == "truncated":
        content = base[: data.draw(st.integers(0, len(base)))]
    elif kind == "bytes":
        content = data.draw(st.binary(max_size=300))
    else:
        content = data.draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")
    folder = tmp_path_factory.mktemp("lab")
    path = folder / "lab01_perceptron.py"
    path.write_bytes(content)
    assert isinstance(labs.lab_title(path), str)
    assert isinstance(runner.imports_of([path]), list)
    assert set(cli._titles(str(folder))) == {"lab01"}
