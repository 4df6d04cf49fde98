"""Notebooks: built from the labs, graded as submissions, checked inline (tests/e2e runs them in a kernel)."""

import contextlib
import io
import json
import re
import shutil

import pytest

from course import labs
from course.cli import main
from course.grader import check, grade, notebook
from course.staff import notebooks

LAB_IDS = list(labs.lab_files("labs"))
# The kernel runs the demos' short versions, and grading inside it gets CI's patience.
KERNEL_ENV = {"COURSE_QUICK": "1", "COURSE_TIMEOUT": "120", "COURSE_CHECK": "0"}
# ---------------------------------------------------------------------------------------------------
# building


@pytest.mark.solutions_only
def test_notebooks_folder_and_readme_links_are_up_to_date(capsys):
    assert main(["notebooks", "--check"]) == 0, capsys.readouterr().err


def test_check_reports_a_stale_notebook(tmp_path):
    out = tmp_path / "notebooks"
    assert notebooks.write_student_notebooks(out=out) == [
        f"notebooks/{labs.lab_files('labs')[x].stem}.ipynb" for x in LAB_IDS
    ]
    assert notebooks.write_student_notebooks(out=out, check=True) == []
    first = next(out.glob("lab01_*.ipynb"))
    first.write_text(first.read_text().replace("sigmoid", "sigmoidal"))
    assert notebooks.write_student_notebooks(out=out, check=True) == [f"notebooks/{first.name}"]


@pytest.mark.parametrize("lab", LAB_IDS)
def test_a_notebook_is_its_lab_file_with_setup_and_check_cells(lab):
    path = labs.lab_files("labs")[lab]
    nb = notebooks.build(path)
    assert nb.cells[0].source.startswith(notebook.SETUP_MARKER)
    assert nb.metadata["course"]["lab"] == lab and "jupytext" not in nb.metadata
    checks = [c.source for c in nb.cells if c.source.startswith(notebooks.CHECK_MARKER)]
    assert checks, f"{lab}'s notebook has no check cell"
    checked = {name for src in checks for name in json.loads("[" + src.rsplit("check(", 1)[1].rstrip(")") + "]")[1:]}
    stubs = {m.group(2).split(".")[0] for m in notebooks.STUB.finditer(path.read_text())}
    assert checked == stubs, "every function the student writes is checked once"
    # Everything else is the lab's own cells, in order: the .py file stays the one source.
    own = [c.source for c in nb.cells[1:] if not c.source.startswith(notebooks.CHECK_MARKER)]
    import jupytext

    assert own == [c.source for c in jupytext.read(path).cells]


def test_readme_table_gets_one_link_column_from_the_settings():
    text = "intro\n\n| lab | topic |\n| --- | --- |\n| `lab01_perceptron` | the perceptron |\n\nafter\n"
    conf = {"repository": "someone/fork", "branch": "spring"}
    new = notebooks.readme_with_links(text, ["lab01_perceptron.ipynb", "lab02_combining.ipynb"], conf)
    assert (
        "| `lab01_perceptron` | the perceptron | [Colab](https://colab.research.google.com/github/someone/fork/blob/spring/notebooks/lab01_perceptron.ipynb)"
        in new
    )
    assert "https://mybinder.org/v2/gh/someone/fork/spring?labpath=notebooks%2Flab02_combining.ipynb" in new
    assert new.startswith("intro\n") and new.endswith("\nafter\n")
    assert notebooks.readme_with_links(new, ["lab01_perceptron.ipynb", "lab02_combining.ipynb"], conf) == new


def test_setup_cell_does_nothing_where_the_course_is_installed():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(notebooks.setup_source(), "setup", "exec"), {})
    assert out.getvalue() == ""


def test_setup_cell_pins_jax_and_installs_the_checkout_or_a_clone():
    src = notebooks.setup_source({"repository": "someone/fork", "branch": "spring"})
    assert '"https://github.com/someone/fork.git"' in src and '"spring"' in src
    assert 'pins.append(f"{dist}=={version(dist)}")' in src and '"-e", src, *pins' in src
    compile(src, "setup", "exec")


# ---------------------------------------------------------------------------------------------------
# notebooks back into modules


def test_magics_shell_lines_and_setup_are_dropped_with_a_note_and_checks_do_nothing(monkeypatch):
    cells = [
        notebooks.setup_source(lab="lab01"),
        '"""Doc."""\nfrom __future__ import annotations\n!pip install foo\n%matplotlib inline\nimport math',
        "def f(x):\n    if x:\n        !echo hi\n    return 2 * x",
        "%%bash\necho not python",
        "from course import check\ncheck('lab01', 'f')\nresult = check('lab01')",
        "def f(x):\n    return 3 * x",
    ]
    source, notes, cells_at = notebook.module_source(cells, origin="nb.ipynb")
    assert source.startswith("from __future__ import annotations\n")
    monkeypatch.setenv("COURSE_SANDBOX", "1")  # as in the sandbox that imports the module
    ns = {}
    exec(compile(source, "m", "exec"), ns)
    assert ns["f"](2) == 6 and isinstance(ns["result"], check.NotChecked)
    assert "course setup" not in source and "echo not python" not in source and "warm_up" not in source
    assert notes == [
        "nb.ipynb, cell 2: dropped the line '!pip install foo'",
        "nb.ipynb, cell 2: dropped the line '%matplotlib inline'",
        "nb.ipynb, cell 3: dropped the line '!echo hi'",
        "nb.ipynb, cell 4: dropped the whole cell (a %%bash cell is not Python)",
    ]
    # Every kept cell keeps its lines where they were: line k of a cell is line start + k - 1.
    lines = source.splitlines()
    assert [c.label for c in cells_at] == ["cell 2", "cell 3", "cell 5", "cell 6"]
    assert lines[cells_at[1].start - 1 + 3] == "    return 2 * x"  # cell 3's fourth line
    assert lines[cells_at[3].start - 1] == "def f(x):"


def test_a_modules_line_is_shown_as_its_cell_and_line():
    from course.grader.locations import Locations, Source

    source, _, cells = notebook.module_source(
        [("Cell In[3]", "import math"), ("Cell In[7]", "def f(x):\n    y = x\n    return y / 0")]
    )
    line = source.splitlines().index("    return y / 0") + 1
    places = Locations({"/tmp/course-grade-x/impl/lab01_notebook.py": Source("", cells)})
    assert places.place("/tmp/course-grade-x/impl/lab01_notebook.py", line) == "Cell In[7], line 3"
    saved = Locations({"/tmp/g/impl/lab01.py": Source("lab01.ipynb", cells)})
    message = f'File "/tmp/g/impl/lab01.py", line {line}, in f; at /tmp/g/impl/lab01.py:{line}; (lab01.py, line {line})'
    assert saved.text(message) == (
        "File lab01.ipynb, Cell In[7], line 3, in f; at lab01.ipynb, Cell In[7], line 3; (lab01.ipynb, Cell In[7], line 3)"
    )


def test_history_cells_that_do_not_parse_are_left_out():
    source, notes, _ = notebook.module_source(
        ["def f(:\n  pass", "def f():\n    return 1"], origin="h", skip_unparsable=True
    )
    compile(source, "m", "exec")
    assert len(notes) == 1 and "left out" in notes[0]


def test_tests_for_finds_the_tests_that_use_a_function():
    test_file = labs.root() / "tests" / "labs" / "test_lab01_perceptron.py"
    assert check.tests_for(test_file, ["sigmoid"]) == ["test_sigmoid_matches_the_formula"]
    # Parametrized over function names: found through the decorator's strings.
    assert check.tests_for(test_file, ["hand_gradient"]) == ["test_gradient_matches_finite_differences"]
    # A string in a test's body (a dict key "accuracy") is not a use of the function accuracy.
    test06 = labs.root() / "tests" / "labs" / "test_lab06_digits.py"
    assert "test_train_learns_digits" not in check.tests_for(test06, ["accuracy"])
    assert "test_train_learns_digits" in check.tests_for(test06, ["train"])
    # Parametrized over a module-level table's keys.
    test02 = labs.root() / "tests" / "labs" / "test_lab02_combining.py"
    assert (
        check.tests_for(test02, ["tanh"]) == check.tests_for(test02, ["sigmoid"]) == ["test_activation_matches_numpy"]
    )


@pytest.mark.solutions_only
def test_a_saved_notebook_that_uses_checks_result_grades_as_the_code_it_holds(
    tmp_path, lab01_notebook_with, check_forms
):
    path = tmp_path / "lab01_perceptron.ipynb"
    path.write_text(notebooks.dumps(lab01_notebook_with(check_forms)))
    # Importing the module runs every check() form, so the tests of one function tell as much as all.
    report = grade(impl=path, timeout=120, keyword="sigmoid or augment")
    assert len(report.outcomes) >= 2 and report.score == report.max_score > 0, [
        (o.name, o.status, o.message) for o in report.outcomes
    ]


@pytest.mark.solutions_only
def test_an_error_in_a_notebook_names_its_cell_and_line_never_a_temporary_path(tmp_path, lab01_notebook_with):
    nb = lab01_notebook_with(["def sigmoid(z):\n    scale = 1.0\n    return undefined_name * z"])
    path = tmp_path / "lab01_perceptron.ipynb"
    path.write_text(notebooks.dumps(nb))
    position = len(nb.cells)  # the last cell, 1-based
    report = grade(["lab01"], impl=path, timeout=120)
    [o] = [o for o in report.outcomes if o.name == "test_sigmoid_matches_the_formula"]
    assert o.status == "error", o.message
    assert f"lab01_perceptron.ipynb, cell {position}, line 3 in sigmoid: return undefined_name * z" in o.message
    text = "\n".join([o.message for o in report.outcomes] + report.notes + report.problems)
    assert "/tmp/course-" not in text and "_notebook.py" not in text, text


def test_warm_up_starts_the_grader_with_the_labs_libraries_imported(monkeypatch):
    from course.grader import zygote

    monkeypatch.setenv("COURSE_CHECK", "0")
    zygote.shut_down()
    check.warm_up("lab01")
    assert zygote._shared is None, "COURSE_CHECK=0: nothing is started"
    monkeypatch.delenv("COURSE_CHECK")
    check.warm_up("lab01")
    assert zygote._shared is not None and zygote._shared.alive()
    # What lab 01 and its tests import is there already; another lab's libraries are imported when asked.
    assert zygote._shared.preload(["jax.numpy", "course.datasets", "pytest"]) == []
    assert zygote._shared.preload(["optax"]) == ["optax"]


def test_checks_html_table_shows_each_test_with_the_shells_statuses():
    from course.grader import Outcome, Report

    report = Report(
        impl="x",
        outcomes=[
            Outcome("t.py::test_a", "lab01", 1.0, status="passed"),
            Outcome("t.py::test_b", "lab01", 2.0, status="failed", message="expected <1>, got 2"),
            Outcome("t.py::test_c", "lab01", 1.0, status="not attempted", message="lab01: c is still a stub"),
        ],
    )
    result = check.CheckResult(report, "lab01 — 1/4 points\nTotal: 1/4 points", "a b")
    html = result._repr_html_()
    assert html.count("<tr>") == 1 + 1 + 3  # header, the lab's line, one row a test
    assert "lab01 a b — 1/4 points" in html
    for name, mark, points in [("test_a", "PASS", "1/1"), ("test_b", "FAIL", "0/2"), ("test_c", "TODO", "0/1")]:
        assert re.search(rf"<code>{name}</code>.*?{mark}</b>.*?{points}</td>", html), name
    assert "expected &lt;1&gt;, got 2" in html and "Total: 1/4 points" in html
    assert repr(result) == result.text  # plain text outside Jupyter


def test_the_student_notebooks_grade_as_not_attempted(tmp_path):
    folder = tmp_path / "submission"
    folder.mkdir()
    for lab in ["lab07"]:
        shutil.copy(labs.root() / "notebooks" / labs.lab_files("labs")[lab].with_suffix(".ipynb").name, folder)
    report = grade(impl=folder, timeout=120)
    assert {o.lab for o in report.outcomes} == {"lab07"}
    assert {o.status for o in report.outcomes} == {"not attempted"}, [
        (o.name, o.status, o.message) for o in report.outcomes
    ]


@pytest.mark.solutions_only
def test_binder_installs_the_cpu_stack_and_the_course():
    binder = labs.root() / "binder"
    assert re.fullmatch(r"python-3\.1[1-9]\n", (binder / "runtime.txt").read_text())
    assert "jax[cpu]" in (binder / "requirements.txt").read_text()
    post = binder / "postBuild"
    assert post.stat().st_mode & 0o111, "binder/postBuild must be executable"
    assert "pip install --no-cache-dir -e ." in post.read_text()


# ---------------------------------------------------------------------------------------------------
# a check says what to run next


def _lab01_with_only(*names: str) -> str:
    """lab01's solution as one kernel cell holding only the functions ``names`` (the cells run so far)."""
    import ast

    tree = ast.parse(labs.lab_files("solutions")["lab01"].read_text())
    tree.body = [n for n in tree.body if not isinstance(n, ast.FunctionDef) or n.name in names]
    return ast.unparse(tree)


@pytest.mark.solutions_only
def test_a_test_of_a_function_not_defined_yet_says_which_cell_to_run(monkeypatch):
    monkeypatch.setattr(check, "kernel_cells", lambda: [("Cell In[3]", _lab01_with_only("augment", "sigmoid"))])
    result = check.check("lab01", timeout=60)
    status = {o.name: o.status for o in result.report.outcomes}
    assert {n for n, s in status.items() if s == "passed"} == {
        "test_augment_appends_a_column_of_ones",
        "test_sigmoid_matches_the_formula",
    }, status
    waiting = [o for o in result.report.outcomes if o.status != "passed"]
    assert {o.status for o in waiting} == {"not defined"} and all(o.earned == 0 for o in waiting), status
    messages = {o.name.split("[")[0]: o.message for o in waiting}
    assert messages["test_training_separates_separable_data"] == "not defined yet: run the cell that defines `train`"
    assert messages["test_step"] == "not defined yet: run the cell that defines `step`"
    assert "NOT YET" in result.text and "_course_" not in result.text and "AttributeError" not in result.text
    assert "NOT YET" in result._repr_html_()


@pytest.mark.solutions_only
def test_a_check_cell_checks_only_the_tests_whose_functions_are_defined_above_it(monkeypatch):
    """lab01's check of `step` before `perceptron` is defined: step's own test, and a note for the one that
    also calls `perceptron`; never an ERROR for correct code so far."""
    monkeypatch.setattr(check, "kernel_cells", lambda: [("Cell In[7]", _lab01_with_only("augment", "step", "sigmoid"))])
    result = check.check("lab01", "step", timeout=60)
    assert {o.name.split("[")[0] for o in result.report.outcomes} == {"test_step"}, result.report.outcomes
    assert result.score == result.max_score > 0, [(o.name, o.status, o.message) for o in result.report.outcomes]
    waiting = [n for n in result.report.notes if n.startswith("not checked yet:")]
    assert waiting == [
        "not checked yet: test_perceptron_is_f_of_the_augmented_dot_product, which also calls perceptron: "
        "run the cell that defines it, then check again"
    ]
    # Nothing of a cell's functions can run yet: nothing is graded, and the note says what to run.
    monkeypatch.setattr(check, "kernel_cells", lambda: [("Cell In[1]", "import jax.numpy as jnp")])
    early = check.check("lab01", "train", timeout=60)
    assert early.report is None and "not checked yet:" in early.text and "train" in early.text


def test_a_saved_notebook_that_ran_out_of_order_is_graded_as_saved_and_says_which_cells(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"course": {"lab": "lab03"}})
    sources = [
        "import jax.numpy as jnp",
        "def mse(p, y):\n    return jnp.mean((p - y) ** 2)",
        "def mse(p, y):\n    return 0.0",
    ]
    nb.cells = [nbformat.v4.new_code_cell(s, execution_count=n) for s, n in zip(sources, [1, 9, 8])]
    (tmp_path / "lab03_mine.ipynb").write_text(nbformat.writes(nb))  # the right mse re-run after the scratch one
    conv = notebook.convert(tmp_path / "lab03_mine.ipynb")
    assert conv.source.rstrip().endswith("return 0.0")  # as saved: the scratch cell, below, defines mse last
    [note] = [n for n in conv.notes if "out of order" in n]
    assert "cell 2 (In [9])" in note and "cell 1" not in note and "cell 3" not in note, note
    nb.cells[1].execution_count = 2  # top to bottom: nothing to say
    (tmp_path / "lab03_mine.ipynb").write_text(nbformat.writes(nb))
    assert not [n for n in notebook.convert(tmp_path / "lab03_mine.ipynb").notes if "out of order" in n]


def test_a_notebook_of_any_name_is_the_lab_named_for_it(tmp_path):
    nb = notebooks.build(labs.lab_files("labs")["lab01"], checks=False)
    nb.metadata.pop("course", None)
    (tmp_path / "Untitled.ipynb").write_text(notebooks.dumps(nb))
    (tmp_path / "out").mkdir()
    found, notes, _, _ = notebook.convert_for_grading(tmp_path / "Untitled.ipynb", tmp_path / "out", ["lab01"])
    assert found == ["lab01"] and (tmp_path / "out" / "lab01_notebook.py").is_file(), notes
    found, notes, _, _ = notebook.convert_for_grading(tmp_path / "Untitled.ipynb", tmp_path / "out")
    assert found == [] and any("course grade lab01 --impl Untitled.ipynb" in n for n in notes), notes
