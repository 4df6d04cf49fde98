"""Fixtures for the staff tests: where the real MNIST files are."""

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
