"""The pytest plugin every course test run loads (``-p course.grader.lab_plugin``).

* ``--impl labs|solutions|PATH`` picks which implementation of the labs the tests exercise (default:
  solutions where they exist, else labs); it is the one way the implementation is chosen.
* The ``lab`` fixture is the lab a test file is about (``test_lab01_*.py`` -> lab01), running in a
  sandbox process: ``lab.sigmoid(x)`` calls the student's function there and returns data, and
  ``lab.run(fn, *args)`` runs ``fn(lab, *args)`` there (see :mod:`course.grader.outside`). The test's
  own process never imports student code.
* ``--settings FILE``: what the grader tells a grading process (:class:`course.grader.model.ProcessSettings`:
  the test timeout, the seed, the sandbox's user and cache...); a plain ``pytest`` run of the course's
  own tests has none and uses the test suite's (a generous timeout, seed 0).
* The ``key`` fixture is a fixed ``jax.random.key`` per test, derived from the test's name and the seed
  (staff grade with a seed of their own, so answers tabled from the visible inputs fail).
* JAX runs with its defaults (as in a notebook) on the CPU, with a persistent compilation cache.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zlib
from pathlib import Path

import pytest

from course import labs as _labs
from course.grader.model import ProcessSettings

_clock = None  # the running test's TestClock (sandbox time left, hints); made in pytest_configure


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("course")
    group.addoption(
        "--impl",
        default=None,
        help="which labs the tests exercise: labs (student stubs), solutions, or a folder path "
        "(default: solutions if present, else labs)",
    )
    # The grader's: its settings as one file in the snapshot (course.grader.model.ProcessSettings), never
    # on a command line a sandbox could read; without one, the course's own test suite's.
    group.addoption("--settings", default=None, help=argparse.SUPPRESS)


def cache_root() -> Path:
    return Path(os.environ.get("COURSE_CACHE_DIR", _labs.root() / ".cache"))


def sandbox_cache_for(impl: str | os.PathLike) -> Path:
    """The JAX compilation cache that the sandboxes of one submission (``impl``, as staff named it) write.

    One per submission, so that no submission's sandbox can plant a compiled program that another's
    would load; the solutions' is the staff's warm cache, which a class's sandboxes only read.
    """
    import hashlib

    name = str((_labs.root() / str(impl) if str(impl) in _labs.IMPLS else Path(impl)).resolve())
    return cache_root() / "jax-sandbox" / hashlib.sha256(name.encode()).hexdigest()[:16]


def settings(config: pytest.Config) -> ProcessSettings:
    """What the grader told this process (``--settings``), else the course's own test suite's settings."""
    return config.stash[_SETTINGS]


def configure_jax(cache_dir: Path | None = None) -> None:
    """CPU and a persistent compilation cache (re-grading skips most compiles); JAX's defaults otherwise."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    jax.config.update("jax_compilation_cache_dir", str(cache_dir or cache_root() / "jax"))
    # Cache every compile: the labs' programs are small, and a student re-runs the grader often.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_configure(config: pytest.Config) -> None:
    global _clock
    from course.grader.outside import TestClock

    config.addinivalue_line("markers", "points(n): how many points a graded test is worth (default 1)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds on a laptop CPU")
    config.addinivalue_line("markers", "solutions_only: needs solutions/, so it is skipped in a student bundle")
    config.addinivalue_line("markers", "unverifiable: checks something only the sandbox can see (a jaxpr); few points")
    config.addinivalue_line(
        "markers", "visibility(v): Gradescope visibility: visible (default), hidden, after_due_date, after_published"
    )
    config.addinivalue_line("markers", "tags(*names): Gradescope tags for the test (its lab is always one)")
    told = config.getoption("--settings")
    config.stash[_SETTINGS] = ProcessSettings.read(told) if told else ProcessSettings.test_suite()
    impl = config.getoption("--impl") or _labs.default_impl()
    config.stash[_IMPL] = _labs.impl_dir(impl)
    os.environ.setdefault("MPLBACKEND", "Agg")
    configure_jax()
    _clock = TestClock(timeout=settings(config).timeout)
    from course.grader import testing

    testing.SEED = settings(config).seed
    if settings(config).locations:
        from course.grader import locations

        locations.use(locations.Locations.read(Path(settings(config).locations)))


_IMPL = pytest.StashKey[Path]()
_SETTINGS = pytest.StashKey[ProcessSettings]()


def impl_dir(config: pytest.Config) -> Path:
    """The folder of lab files under test."""
    return config.stash[_IMPL]


def pytest_report_header(config: pytest.Config) -> str:
    return f"course: testing the labs in {impl_dir(config)} (each in a sandbox process)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _labs.has_solutions():
        skip = pytest.mark.skip(reason="needs solutions/, which a student bundle does not ship")
        for item in items:
            if item.get_closest_marker("solutions_only"):
                item.add_marker(skip)
    if any("lab" in getattr(item, "fixturenames", ()) for item in items):
        import cloudpickle

        from course.grader import outside

        outside.fork_server()  # started now, it imports JAX while pytest finishes collecting
        for module in {item.module for item in items if getattr(item, "module", None) is not None}:
            # Test modules are not importable in the sandbox: their functions travel by value.
            cloudpickle.register_pickle_by_value(module)


def pytest_unconfigure(config: pytest.Config) -> None:
    from course.grader import outside

    outside.shut_down()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _clock.reset()


def current_clock():
    """The running test's clock: its sandbox time left, and the hints its calls collected."""
    return _clock


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest):
    """The lab a test file is about, running in a sandbox: calls return data."""
    from course.grader import outside, privacy

    lid = _labs.lab_of(request.path)
    if lid is None:
        raise pytest.UsageError(f"{request.path.name}: the `lab` fixture needs a file named test_labNN_*.py")
    config = request.config
    folder, told = impl_dir(config), settings(request.config)
    setting = told.sandbox_user
    user = privacy.sandbox_user(setting)
    path = _lab_file(config, lid, folder)
    unreadable = user and privacy.unreadable_as(*user, [str(path), *privacy.needed_by_sandboxes()])
    if unreadable:  # e.g. a pyenv under /root, which the unprivileged user cannot even read
        if setting != "auto":
            raise pytest.UsageError(f"--sandbox-user {setting}: that user cannot read {unreadable}")
        print(f"course: user nobody cannot read {unreadable}; running the lab as this user instead", file=sys.stderr)
        user = None
    cache = Path(told.sandbox_cache or cache_root() / ("jax-sandbox" if user is None else f"jax-sandbox-{user[0]}"))
    isolate = told.isolate and not (user is None and os.geteuid() == 0)
    warm = told.warm_cache
    sandbox = outside.Sandbox(
        path, user=user, jax_cache=cache, warm_cache=Path(warm) if warm and isolate else None, isolate=isolate
    )
    yield outside.RemoteLab(sandbox, _clock)
    sandbox.stop()


def _lab_file(config: pytest.Config, lid: str, folder: Path) -> Path:
    """The lab's file under test, or a :class:`CourseError` saying, in the student's terms, why there is none."""
    from course.errors import CourseError

    reasons = settings(config).not_graded
    if reasons:
        why = json.loads(Path(reasons).read_text(encoding="utf-8")).get(lid)
        if why:
            raise CourseError(f"{lid} could not be graded: {why}")
    path = _labs.lab_files(folder).get(lid)
    if path is None:
        raise CourseError(
            f"{lid} could not be graded: the submission has no {lid} file (name it like the course's, "
            f"{lid}_<topic>.py, or hand in its notebook {lid}_<topic>.ipynb)"
        )
    return path


@pytest.fixture
def key(request: pytest.FixtureRequest):
    """A PRNG key fixed per test (a hash of its name, varied by ``--seed``), so a failure reproduces exactly."""
    from course.grader.testing import seeded_key

    return seeded_key(zlib.crc32(request.node.name.encode()))
