"""The pytest plugin every course test run loads (``-p course.grader.plugin``).

* ``--impl labs|solutions|PATH`` picks which implementation of the labs the tests exercise (default:
  solutions where they exist, else labs); it is the one way the implementation is chosen.
* The ``lab`` fixture is the lab a test file is about (``test_lab01_*.py`` -> lab01), running in a
  sandbox process: ``lab.sigmoid(x)`` calls the student's function there and returns data, and
  ``lab.run(fn, *args)`` runs ``fn(lab, *args)`` there (see :mod:`course.grader.remote`). The test's
  own process never imports student code.
* ``--lab-timeout S``: how long one test may spend in the sandbox (the grader passes its ``--timeout``).
* The ``key`` fixture is a fixed ``jax.random.key`` per test, derived from the test's name and ``--seed``
  (staff grade with a seed of their own, so answers tabled from the visible inputs fail).
* JAX runs with its defaults (as in a notebook) on the CPU, with a persistent compilation cache.
"""

from __future__ import annotations

import argparse
import os
import sys
import zlib
from pathlib import Path

import pytest

from course import labs as _labs

_clock = None  # the running test's TestClock (sandbox time left, hints); made in pytest_configure


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("course")
    group.addoption(
        "--impl",
        default=None,
        help="which labs the tests exercise: labs (student stubs), solutions, or a folder path "
        "(default: solutions if present, else labs)",
    )
    group.addoption(
        "--lab-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="seconds one test may spend running lab code in the sandbox (default 300)",
    )
    group.addoption(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="vary every test's random inputs: the keys depend on S (default 0: the visible inputs)",
    )
    group.addoption(
        "--sandbox-user",
        default="auto",
        metavar="USER",
        help="run lab code as this user: auto (nobody when running as root), none, or a name",
    )
    group.addoption(
        "--sandbox-cache",
        default=None,
        metavar="DIR",
        help="the sandboxes' JAX compilation cache (default: .cache/jax-sandbox[-UID])",
    )
    group.addoption(
        "--isolate",
        action="store_true",
        help="run each lab in namespaces of its own (Linux; course.grader.isolation), seeing nothing but its lab",
    )
    # The grader's: how messages name the copies it runs (course.grader.locations), as the student knows them.
    group.addoption("--locations", default=None, help=argparse.SUPPRESS)
    # The grader's: its settings as one file in the snapshot (never on a command line a sandbox could read).
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


def grading_setting(config: pytest.Config, name: str):
    """A grading setting: from the grader's settings file (``--settings``) where it has one, else the option."""
    return config.stash[_SETTINGS].get(name, config.getoption(f"--{name.replace('_', '-')}"))


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
    from course.grader.remote import TestClock

    config.addinivalue_line("markers", "points(n): how many points a graded test is worth (default 1)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds on a laptop CPU")
    config.addinivalue_line("markers", "solutions_only: needs solutions/, so it is skipped in a student bundle")
    config.addinivalue_line("markers", "unverifiable: checks something only the sandbox can see (a jaxpr); few points")
    config.addinivalue_line(
        "markers", "visibility(v): Gradescope visibility: visible (default), hidden, after_due_date, after_published"
    )
    config.addinivalue_line("markers", "tags(*names): Gradescope tags for the test (its lab is always one)")
    import json

    settings = config.getoption("--settings")
    config.stash[_SETTINGS] = json.loads(Path(settings).read_text()) if settings else {}
    impl = config.getoption("--impl") or _labs.default_impl()
    config.stash[_IMPL] = _labs.impl_dir(impl)
    os.environ.setdefault("MPLBACKEND", "Agg")
    configure_jax()
    _clock = TestClock(timeout=config.getoption("--lab-timeout"))
    from course.grader import testing

    testing.SEED = int(grading_setting(config, "seed"))
    if config.getoption("--locations"):
        from course.grader import locations

        locations.use(locations.Locations.read(Path(config.getoption("--locations"))))


_IMPL = pytest.StashKey[Path]()
_SETTINGS = pytest.StashKey[dict]()


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

        from course.grader import remote

        remote.warm_up()  # the fork server imports JAX while pytest finishes collecting
        for module in {item.module for item in items if getattr(item, "module", None) is not None}:
            # Test modules are not importable in the sandbox: their functions travel by value.
            cloudpickle.register_pickle_by_value(module)


def pytest_unconfigure(config: pytest.Config) -> None:
    from course.grader import remote

    remote.shut_down()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _clock.reset()


def current_clock():
    """The running test's clock: its sandbox time left, and the hints its calls collected."""
    return _clock


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest):
    """The lab a test file is about, running in a sandbox: calls return data."""
    from course.grader import privacy, remote

    lid = _labs.lab_of(request.path)
    if lid is None:
        raise pytest.UsageError(f"{request.path.name}: the `lab` fixture needs a file named test_labNN_*.py")
    config = request.config
    folder = impl_dir(config)
    setting = config.getoption("--sandbox-user")
    user = privacy.sandbox_user(setting)
    path = _labs.lab_path(lid, folder)
    unreadable = user and privacy.unreadable_as(*user, [str(path), *privacy.needed_by_sandboxes()])
    if unreadable:  # e.g. a pyenv under /root, which the unprivileged user cannot even read
        if setting != "auto":
            raise pytest.UsageError(f"--sandbox-user {setting}: that user cannot read {unreadable}")
        print(f"course: user nobody cannot read {unreadable}; running the lab as this user instead", file=sys.stderr)
        user = None
    cache = Path(
        grading_setting(config, "sandbox_cache")
        or cache_root() / ("jax-sandbox" if user is None else f"jax-sandbox-{user[0]}")
    )
    isolate = bool(grading_setting(config, "isolate")) and not (user is None and os.geteuid() == 0)
    warm = config.stash[_SETTINGS].get("warm_cache")
    sandbox = remote.Sandbox(
        path, user=user, jax_cache=cache, warm_cache=Path(warm) if warm and isolate else None, isolate=isolate
    )
    yield remote.RemoteLab(sandbox, _clock)
    sandbox.stop()


@pytest.fixture
def key(request: pytest.FixtureRequest):
    """A PRNG key fixed per test (a hash of its name, varied by ``--seed``), so a failure reproduces exactly."""
    from course.grader.testing import seeded_key

    return seeded_key(zlib.crc32(request.node.name.encode()))
