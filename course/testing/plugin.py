"""The pytest plugin every course test run loads (``-p course.testing.plugin``).

* ``--impl labs|solutions|PATH`` picks which implementation of the labs the tests import
  (default: ``$COURSE_IMPL``, else solutions where they exist, else labs);
* the ``lab`` fixture imports the lab that a test file is about (``test_lab01_*.py`` -> lab01);
* the ``key`` fixture is a fixed ``jax.random.key`` per test, derived from the test's name;
* JAX runs on the CPU with a persistent
  compilation cache so that re-grading skips most compiles.
"""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path

import pytest

from course import labs as _labs


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--impl",
        default=None,
        help="which labs the tests import: labs (student stubs), solutions, or a folder path "
        "(default: $COURSE_IMPL, else solutions if present, else labs)",
    )


def configure_jax(cache_dir: Path | None = None) -> None:
    """CPU and a persistent compilation cache (shared by tests and the grader)."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    cache = cache_dir or Path(os.environ.get("COURSE_CACHE_DIR", _labs.root() / ".cache")) / "jax"
    jax.config.update("jax_compilation_cache_dir", str(cache))
    # Cache every compile: the labs' programs are small, and a student re-runs the grader often.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "points(n): how many points a graded test is worth (default 1)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds on a laptop CPU")
    config.addinivalue_line("markers", "solutions_only: needs solutions/, so it is skipped in a student bundle")
    impl = config.getoption("--impl") or _labs.default_impl()
    os.environ["COURSE_IMPL"] = str(impl)
    os.environ.setdefault("MPLBACKEND", "Agg")
    configure_jax()


def pytest_report_header(config: pytest.Config) -> str:
    return f"course: testing implementation {os.environ['COURSE_IMPL']!r} ({_labs.impl_dir(os.environ['COURSE_IMPL'])})"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _labs.has_solutions():
        return
    skip = pytest.mark.skip(reason="needs solutions/, which a student bundle does not ship")
    for item in items:
        if item.get_closest_marker("solutions_only"):
            item.add_marker(skip)


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest):
    """The lab module a test file is about, from the implementation under test."""
    m = re.search(r"test_(lab\d{2})", Path(str(request.path)).name)
    if not m:
        raise pytest.UsageError(f"{request.path.name}: the `lab` fixture needs a file named test_labNN_*.py")
    return _InProcessLab(_labs.load_lab(m.group(1), os.environ["COURSE_IMPL"]))


class _InProcessLab:
    """Interim: the lab module plus ``run(fn, *args)`` = ``fn(module, *args)`` (the sandboxed grader replaces this)."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)

    def run(self, fn, *args, **kwargs):
        return fn(self._module, *args, **kwargs)


@pytest.fixture
def key(request: pytest.FixtureRequest):
    """A PRNG key fixed per test (a hash of its name), so a failure reproduces exactly."""
    import jax

    return jax.random.key(zlib.crc32(request.node.name.encode()))
