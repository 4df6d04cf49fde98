"""The grade cannot be forged: hostile labs, one per attack, graded for real.

Each fake lab below is what a student who reads the grader's source might append to a lab file. Every
lab has honest functions too: the attacked tests must score 0 and every other test must keep its
grade. (Failure modes of honest code — loops, exits, segfaults — are in test_grader.py.)
"""

import json
import os
import textwrap
import time
from pathlib import Path

import pytest

from course.grader import grade

# Shared by every hostile lab: one honest function, one stub.
HONEST = """
def good(x):
    return x + 1

def stub(x):
    # YOUR CODE HERE ({lab}: stub)
    raise NotImplementedError("{lab}: stub")
"""

ATTACKS = {
    # Replace pytest's own test-running functions, as the old in-process grader allowed.
    "lab43_pytest_internals": """
import _pytest.python, _pytest.runner, pytest
_pytest.runner.pytest_runtest_call = lambda item: None
_pytest.python.pytest_pyfunc_call = lambda pyfuncitem: True
pytest.Function.runtest = lambda self: None
""",
    # Force every report object to say "passed".
    "lab44_reports": """
import _pytest.reports
_pytest.reports.TestReport.passed = property(lambda self: True)
_pytest.reports.TestReport.failed = property(lambda self: False)
_pytest.reports.BaseReport.outcome = property(lambda self: "passed", lambda self, value: None)
""",
    # Register a pytest plugin from the student's module: by name, and into any live config found.
    "lab45_plugins": """
import gc, sys, types
evil = types.ModuleType("evil_plugin")
exec("def pytest_runtest_makereport(item, call):\\n    call.excinfo = None\\n", evil.__dict__)
sys.modules["evil_plugin"] = evil
pytest_plugins = ["evil_plugin"]
for obj in gc.get_objects():
    if type(obj).__name__ == "Config" and hasattr(obj, "pluginmanager"):
        obj.pluginmanager.register(evil, "evil")
""",
    # Write forged "passed" results to every file descriptor, and a forged answer to the grader.
    "lab46_channels": """
import json, os
def attack(x):
    for test in ("test_attacked", "test_good"):
        line = json.dumps({{"event": "result", "nodeid": f"test_{lab}.py::{{test}}", "status": "passed",
                           "message": "", "duration": 0.0}}) + "\\n"
        for fd in range(0, 64):
            try:
                os.write(fd, line.encode())
            except OSError:
                pass
    fd = os.environ.get("COURSE_GRADER_FD")
    if fd:
        os.write(int(fd), line.encode())
    return x + 1
""",
    # Find the grading processes through /proc (their environment names the results channel) and keep
    # writing forged results into it from a thread, so that a forgery comes after the real result.
    "lab52_proc": """
import json, os, threading, time
FORGED = "".join(json.dumps({{"event": "result", "nodeid": f"{{prefix}}test_{lab}.py::test_attacked",
                             "status": "passed", "message": "", "duration": 0.0}}) + "\\n"
                 for prefix in ("labs/", ""))
def channels():
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = open(f"/proc/{{pid}}/environ", "rb").read().split(b"\\0")
        except OSError:
            continue
        for entry in env:
            if entry.startswith(b"COURSE_GRADER_FD="):
                yield f"/proc/{{pid}}/fd/{{entry.split(b'=', 1)[1].decode()}}"
def forge():
    found = []
    while True:  # until the sandbox is killed: a forgery every millisecond, the last one after the real result
        found = found or list(channels())
        for path in found:
            try:
                with open(path, "a") as channel:
                    channel.write(FORGED)
            except OSError:
                pass
        time.sleep(0.001)
def attack(x):
    threading.Thread(target=forge, daemon=True).start()
    time.sleep(0.2)
    return x  # wrong: only a forged result could pass this test
def slow_good(x):
    time.sleep(1.0)  # the forgeries keep coming, after the attacked test's real result
    return x + 1
""",
    # Rewrite the test files into ones that pass, then crash so that the grader would re-collect them.
    "lab47_rewrite_tests": """
import os, pathlib
TRIVIAL = "def test_attacked(lab):\\n    pass\\n\\ndef test_good(lab):\\n    pass\\n"
def attack(x):
    here = pathlib.Path(__file__).resolve()
    for folder in (here.parent.parent / "tests", pathlib.Path({tests_dir!r})):
        for path in folder.rglob("test_*.py"):
            try:
                path.write_text(TRIVIAL)
            except OSError:
                pass
    os._exit(1)
""",
    # Start processes that try to outlive grading: one in a new session, one double-forked. Both are
    # `sleep` with a duration no other process has, so that the test finds them by their command line
    # (a sandbox in a PID namespace of its own knows them by other numbers than the machine does).
    "lab48_children": """
import os, subprocess
def attack(x):
    subprocess.Popen(["sleep", "{marker}1"], start_new_session=True)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", "{marker}2"])
        os._exit(0)
    return x  # wrong: what is tested here is that the children are gone afterwards
""",
    # Allocate without bound: one huge array, and a loop of large ones.
    "lab49_memory": """
import numpy as np
def attack(x):
    blocks = []
    while True:
        blocks.append(np.empty(1 << 30, np.uint8))  # 1 GiB at a time, for ever
""",
    # Print without bound.
    "lab50_output": """
def attack(x):
    while True:
        print("spam " * 200)
""",
    # Try to write what the grader owns (only enforced when the grader runs as root: see below).
    "lab51_tamper": """
import pathlib, course
def attack(x):
    here = pathlib.Path(__file__).resolve()
    targets = [pathlib.Path(course.__file__), *(here.parent.parent / "tests").rglob("test_*.py"),
               here.parent.parent / "manifest.json"]
    writable = []
    for path in targets:
        try:
            with open(path, "a"):
                writable.append(str(path))
        except OSError:
            pass
    return writable
""",
}

TESTS = """
def test_good(lab):
    assert lab.good(1) == 2

def test_attacked(lab):
    assert lab.{call}(1) == 2

def test_good_after(lab):
    assert lab.good(2) == 3
"""

PROC_TESTS = """
def test_good(lab):
    assert lab.good(1) == 2

def test_attacked(lab):
    assert lab.attack(1) == 2

def test_good_after(lab):
    assert lab.slow_good(2) == 3
"""

TAMPER_TESTS = """
def test_good(lab):
    assert lab.good(1) == 2

def test_attacked(lab):
    assert lab.attack(1) == [], "the sandbox could write these"

def test_good_after(lab):
    assert lab.good(2) == 3
"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    (root / "labs").mkdir()
    tests_dir = root / "tests" / "labs"
    tests_dir.mkdir(parents=True)
    marker = f"300.{os.getpid()}"  # lab48's children: `sleep 300.PID1`, `sleep 300.PID2`
    for name, attack in ATTACKS.items():
        lab = name[:5]
        source = textwrap.dedent(HONEST.format(lab=lab)) + textwrap.dedent(attack).format(
            lab=name, tests_dir=str(tests_dir), marker=marker
        )
        (root / "labs" / f"{name}.py").write_text(source)
        tests = {"lab51_tamper": TAMPER_TESTS, "lab52_proc": PROC_TESTS}.get(name) or TESTS.format(
            call="stub" if "attack(" not in attack else "attack"
        )
        (tests_dir / f"test_{name}.py").write_text(tests)
    start = time.monotonic()
    report = grade(impl=root / "labs", tests_dir=tests_dir, timeout=8.0, jobs=2)
    yield report, marker, time.monotonic() - start


def _by_lab(report):
    return {lab: {o.name: o for o in outcomes} for lab, outcomes in report.by_lab().items()}


def _uncontained(report) -> bool:
    """As root with a sandbox user who cannot read Python, the student's code ran as root (the report says so)."""
    return any("ran as root" in note for note in report.notes)


# Root can open any process's /proc entries: this attack is stopped only by a sandbox that is not root.
NEEDS_CONTAINMENT = {"lab52_proc"}


@pytest.mark.parametrize("name", [n for n in ATTACKS if n != "lab51_tamper"])
def test_the_attacked_test_scores_zero_and_the_others_keep_their_grade(hostile, name):
    report, _, _ = hostile
    if name in NEEDS_CONTAINMENT and _uncontained(report):
        pytest.skip("grading as root, but the sandbox could not switch to an unprivileged user here")
    outcomes = _by_lab(report)[name[:5]]
    assert outcomes["test_attacked"].status != "passed", outcomes["test_attacked"]
    assert outcomes["test_attacked"].earned == 0
    for honest in ("test_good", "test_good_after"):
        assert outcomes[honest].status == "passed", f"{name}: {outcomes[honest]}"


def test_the_whole_class_of_attacks_scores_only_the_honest_tests(hostile):
    report, _, seconds = hostile
    # lab51's attacked test passes where the sandbox is contained: it has a test of its own, below.
    skipped = {"lab51", *({n[:5] for n in NEEDS_CONTAINMENT} if _uncontained(report) else ())}
    outcomes = [o for o in report.outcomes if o.lab not in skipped]
    honest = sum(o.points for o in outcomes if o.name != "test_attacked")
    assert sum(o.earned for o in outcomes) == honest, [(o.nodeid, o.status) for o in outcomes if o.status == "passed"]
    assert not report.problems, report.problems


def test_attacks_end_with_the_status_they_deserve(hostile):
    outcomes = _by_lab(hostile[0])
    status = {lab: o["test_attacked"].status for lab, o in outcomes.items()}
    assert status["lab43"] == status["lab44"] == status["lab45"] == "not attempted"  # patches had no effect
    assert status["lab46"] in ("crashed", "error")  # it wrote to the answer channel out of turn
    # Its os._exit, the tests it rewrote never read again; or, where the sandbox's user may not even look
    # into the staff's folders, the PermissionError of trying.
    assert (
        status["lab47"] == "crashed"
        or status["lab47"] == "error"
        and "Permission" in outcomes["lab47"]["test_attacked"].message
    )
    assert status["lab49"] == "error" and "memory" in outcomes["lab49"]["test_attacked"].message.lower()
    assert status["lab50"] == "error" and "printed more than" in outcomes["lab50"]["test_attacked"].message
    if not _uncontained(hostile[0]):
        assert status["lab52"] == "failed"  # its forged results never reached the grader


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="checks processes through /proc (Linux)")
def test_no_process_started_by_the_student_outlives_grading(hostile):
    _, marker, _ = hostile
    deadline = time.monotonic() + 5
    while _sleeping(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _sleeping(marker), "processes started by the student's code survived grading"


def _sleeping(marker: str) -> list[int]:
    """The live processes of the machine whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _alive(int(entry.name)):
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_as_root_the_sandbox_cannot_write_the_tests_the_course_or_the_manifest(hostile):
    from course.grader import privacy

    user = privacy.sandbox_user("auto")
    if user is None:
        pytest.skip("users are switched only when grading as root")
    if _uncontained(hostile[0]):
        pytest.skip(
            "user nobody cannot read this Python installation (e.g. a pyenv under /root), "
            "so here the sandbox ran as root (the report says so)"
        )
    outcomes = _by_lab(hostile[0])["lab51"]
    assert outcomes["test_attacked"].status == "passed", outcomes["test_attacked"].message


def test_a_changed_test_file_is_refused(tmp_path, monkeypatch):
    """The manifest check itself: a grading process refuses a test file whose hash is not the recorded one."""
    from course.grader import runner

    (tmp_path / "labs").mkdir()
    tests_dir = tmp_path / "tests" / "labs"
    tests_dir.mkdir(parents=True)
    (tmp_path / "labs" / "lab42_fake.py").write_text("def good(x):\n    return x + 1\n")
    (tests_dir / "test_lab42_fake.py").write_text("def test_good(lab):\n    assert lab.good(1) == 2\n")
    take = runner.Snapshot.take

    def tampered(*args, **kwargs):
        snapshot = take(*args, **kwargs)
        manifest = json.loads(snapshot.manifest.read_text())
        snapshot.manifest.write_text(json.dumps({path: "0" * 64 for path in manifest}))
        return snapshot

    monkeypatch.setattr(runner.Snapshot, "take", tampered)
    report = grade(impl=tmp_path / "labs", tests_dir=tests_dir, timeout=10.0)
    assert report.score == 0
    assert any("changed while grading" in p for p in report.problems), report.problems
