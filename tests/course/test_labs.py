"""Every lab opens as a notebook and imports without running its demo (tests/e2e runs the demos)."""

import subprocess
import sys

import jupytext
import pytest

from course import labs
from course.cli import main
from course.errors import CourseError
from course.staff.running import run_lab

IMPL = labs.default_impl()
LAB_IDS = list(labs.lab_files(IMPL))


@pytest.mark.parametrize("lab", LAB_IDS)
def test_lab_opens_as_a_notebook(lab):
    notebook = jupytext.read(labs.lab_files(IMPL)[lab])
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds.count("markdown") >= 2, f"{lab} should explain its ideas in markdown cells"
    assert kinds.count("code") >= 2
    # The demo runs in a notebook (where __name__ == "__main__") but not on import.
    assert any('if __name__ == "__main__":' in cell.source for cell in notebook.cells)


@pytest.mark.parametrize("lab", LAB_IDS)
def test_lab_has_a_title_and_a_demo(lab, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = labs.load_lab(lab, IMPL)
    assert callable(module.demo)
    assert not any(tmp_path.iterdir()), "importing a lab must not run its demo"
    assert labs.lab_title(labs.lab_files(IMPL)[lab])


def test_run_options_reach_only_demos_that_take_them(tmp_path):
    # --quick/--full is a hint every demo may ignore (so `course run all --quick` works); other options must fit.
    with pytest.raises(CourseError) as info:
        run_lab("lab01", impl=IMPL, out=tmp_path, quick=True, dataset="fashion_mnist")
    assert "lab01's demo has no --dataset option" in str(info.value) and "--quick" not in str(info.value)


def test_lab_names_are_normalised():
    assert [labs.lab_id(x) for x in ["1", "01", "lab1", "lab01", "lab01_perceptron", "LAB01.py"]] == ["lab01"] * 6
    with pytest.raises(CourseError, match="not a lab name"):
        labs.lab_id("perceptron")


def test_cli_errors_are_one_clear_line(capsys):
    assert main(["run", "lab99", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("course: there is no lab99") and "the labs are: lab01" in err and "Traceback" not in err


def test_cli_list_and_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "course", "list"], capture_output=True, text=True, check=True).stdout
    for lab in LAB_IDS:
        assert lab in out


def test_running_a_stub_demo_says_what_is_missing(tmp_path):
    stub_dir = tmp_path / "stubs"
    stub_dir.mkdir()
    from course.staff.assign import generated

    if not labs.has_solutions():
        pytest.skip("needs solutions/ to generate fresh stubs")
    name, text = next(iter(generated().items()))
    (stub_dir / name).write_text(text)
    with pytest.raises(CourseError, match=r"still a stub .*--impl solutions"):
        run_lab(name, impl=stub_dir, out=tmp_path / "out")
