"""Fixtures for the staff tests: where the real MNIST files are, and freshly generated stubs."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mnist_data_dir() -> Path:
    """``$COURSE_DATA_DIR`` when it holds ``mnist/``. CI must have it (fail); elsewhere, skip."""
    base = os.environ.get("COURSE_DATA_DIR")
    if base and (Path(base) / "mnist").is_dir():
        return Path(base)
    message = (f"needs the four MNIST files in $COURSE_DATA_DIR/mnist (COURSE_DATA_DIR={base!r}); "
               ".ci/run points it at ../shared/data")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def fresh_stubs(tmp_path_factory) -> Path:
    """Stubs generated from the solutions now, so that no check depends on a stale labs/."""
    from course import assign

    folder = tmp_path_factory.mktemp("stubs")
    for name, text in assign.generated().items():
        (folder / name).write_text(text)
    return folder

