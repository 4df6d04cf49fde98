"""What a sandbox sees of the machine (course.grader.isolation): only itself.

One fake lab whose functions report what they can see and reach from inside the sandbox: processes,
the network, the staff's files, the grader's environment. Its graded tests (written here, run in the
trusted process) check the answers; a test passes when the sandbox saw nothing it should not.
The attacks of a whole class on each other are tests/e2e/test_isolation_class.py.
"""

import os
import socket
import textwrap
from pathlib import Path

import pytest

from course import labs
from course.grader import grade, isolation

pytestmark = pytest.mark.skipif(isolation.unavailable() is not None, reason=f"{isolation.unavailable()}")

LAB = """
import os, socket

def processes():
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())

def connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return "connected"
    except OSError as exc:
        return type(exc).__name__

def readable(paths):
    found = []
    for path in paths:
        try:
            os.listdir(path) if os.path.isdir(path) else open(path, "rb").close()
            found.append(path)
        except OSError:
            pass
    return found

def environment():
    return dict(os.environ)

def write(paths):
    done = []
    for path in paths:
        try:
            with open(path, "w") as f:
                f.write("planted")
            done.append(path)
        except OSError:
            pass
    return done

def identity():
    return [os.getuid(), os.getgid()]
"""

TESTS = """
import os

def test_sees_no_other_process(lab):
    seen = lab.processes()
    assert seen and seen[0] == 1 and len(seen) <= 3, seen

def test_has_no_network(lab):
    assert lab.connect({port}) != "connected"

def test_reads_none_of_the_staff_files(lab):
    assert lab.readable({secret_paths!r}) == []

def test_reads_python_and_the_course(lab):
    assert len(lab.readable({needed_paths!r})) == {needed_count}

def test_inherits_none_of_the_grader_environment(lab):
    env = lab.environment()
    assert "STAFF_TOKEN" not in env and "COURSE_SEED" not in env, sorted(env)
    assert set(env) <= set({allowed!r}), sorted(env)

def test_writes_nowhere_the_machine_keeps(lab):
    lab.write({targets!r})
    for path in {kept!r}:
        assert not os.path.exists(path), path

def test_has_an_identity_of_its_own(lab):
    uid, gid = lab.identity()
    assert uid == {uid} if {uid} >= 0 else uid >= {uid_base}
"""


@pytest.fixture(scope="module")
def view(tmp_path_factory):
    """The lab and its tests; the listener they try to reach stays open while the module runs."""
    tmp_path = tmp_path_factory.mktemp("view")
    (tmp_path / "labs").mkdir()
    tests_dir = tmp_path / "tests" / "labs"
    tests_dir.mkdir(parents=True)
    (tmp_path / "labs" / "lab61_view.py").write_text(LAB)
    listener = socket.create_server(("127.0.0.1", 0))  # something to reach on this machine's loopback
    root = labs.root()
    secrets = [root / "solutions", root / "tests", root / "pyproject.toml", tests_dir, Path.home()]
    host_tmp = Path("/tmp") / f"course-planted-{os.getpid()}"
    targets = [str(host_tmp), str(root / "course" / "planted.py"), str(tmp_path / "labs" / "planted")]
    import jax

    needed = [str(root / "course" / "grader"), os.path.dirname(os.__file__), os.path.dirname(jax.__file__)]
    from course.grader.inside import ENVIRONMENT

    allowed = {*ENVIRONMENT, "HOME", "TMPDIR", "MPLBACKEND", "MPLCONFIGDIR", "JAX_PLATFORMS", "COURSE_SANDBOX"}
    (tests_dir / "test_lab61_view.py").write_text(
        textwrap.dedent(TESTS).format(
            port=listener.getsockname()[1],
            secret_paths=[str(p) for p in secrets if p.exists()],
            needed_paths=needed,
            needed_count=len(needed),
            allowed=sorted(allowed),
            targets=targets,
            kept=targets,
            uid=-1 if os.geteuid() == 0 else os.geteuid(),
            uid_base=isolation.UID_BASE,
        )
    )
    yield tmp_path / "labs", tests_dir
    listener.close()
    host_tmp.unlink(missing_ok=True)  # written by the unisolated run below


def test_a_sandbox_sees_only_itself(view, monkeypatch):
    monkeypatch.setenv("STAFF_TOKEN", "s3cr3t")
    monkeypatch.setenv("COURSE_SEED", "4242")
    report = grade(impl=view[0], tests_dir=view[1], timeout=20.0, jobs=1, isolation="required")
    assert report.isolation == "namespaces"
    failed = [(o.name, o.status, o.message) for o in report.outcomes if o.status != "passed"]
    assert not failed and len(report.outcomes) == 7, failed


def test_the_same_tests_fail_without_isolation(view):
    """The tests above can fail: unisolated, the sandbox sees the machine's processes, loopback and files."""
    report = grade(impl=view[0], tests_dir=view[1], timeout=20.0, jobs=1, isolation="off")
    status = {o.name: o.status for o in report.outcomes}
    for name in ("test_sees_no_other_process", "test_has_no_network", "test_reads_none_of_the_staff_files"):
        assert status[name] == "failed", (name, status)
    assert status["test_reads_python_and_the_course"] == "passed"


def test_a_class_run_refuses_to_grade_unisolated_unless_told(tmp_path, monkeypatch):
    from course.errors import CourseError
    from course.grader import batch

    (tmp_path / "subs" / "ann").mkdir(parents=True)
    monkeypatch.setattr(isolation, "unavailable", lambda: "user namespaces are turned off")
    with pytest.raises(CourseError, match="--isolation off"):
        batch.grade_class(tmp_path / "subs", tmp_path / "out", labs=["lab01"], log=lambda line: None)
    assert not (tmp_path / "out" / "gradebook.csv").exists()


def test_the_staff_may_accept_grading_unisolated_and_every_result_says_so(tmp_path):
    from course.grader import Report
    from course.grader.runner import isolation_setting

    report = Report(impl="x")
    assert isolation_setting("off", report) is False
    assert report.isolation.startswith("none") and any("not isolated" in n for n in report.notes)


FORGE = """import pytest

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    outcome.get_result().outcome = "passed"
"""


def test_the_trusted_side_reads_no_configuration_above_its_snapshot(tmp_path, monkeypatch, fresh_stubs):
    """A conftest.py that makes every test pass, and a pytest.ini, in the folder that holds the grader's
    snapshots (where an unisolated sandbox could write them): the trusted test processes read neither."""
    import tempfile

    folder = tmp_path / "tmp"
    folder.mkdir()
    (folder / "conftest.py").write_text(FORGE)
    (folder / "pytest.ini").write_text("[pytest]\naddopts = -p conftest\n")
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    report = grade(["lab01"], impl=fresh_stubs, isolation="off", jobs=1)
    assert report.outcomes and report.score == 0, [(o.name, o.status) for o in report.outcomes]
    assert {o.status for o in report.outcomes} == {"not attempted"}
