"""The grader never mis-scores: deliberately broken labs, graded for real in worker processes.

A fake lab (lab42) has one function per way student code goes wrong. Each test of the fake lab calls
one of them; the grader must give each its proper status and keep every other test's grade.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from course import cli
from course.grader import grade
from course.grader.report import gradescope, render

FAKE_LAB = '''
"""A lab that goes wrong in every way a student's code can."""
import ctypes, os, sys

def good(x):
    return x + 1

def wrong(x):
    return x - 1

def stub(x):
    # YOUR CODE HERE (lab42: stub)
    raise NotImplementedError("lab42: stub")

def loops_forever(x):
    while True:
        x += 1

def exits(x):
    sys.exit(3)

def hard_exits(x):
    os._exit(7)

def segfaults(x):
    return ctypes.string_at(0)

def raises(x):
    return {}["missing"]
'''

FAKE_TESTS = """
import pytest

def test_good_first(lab):
    assert lab.good(1) == 2

def test_wrong(lab):
    got = lab.wrong(1)
    assert got == 2, f"wrong(1): expected 2, got {got}"

def test_stub(lab):
    assert lab.stub(1) == 2

def test_loops_forever(lab):
    assert lab.loops_forever(1) == 2

@pytest.mark.points(3)
def test_good_after_timeout(lab):
    assert lab.good(2) == 3

def test_exits(lab):
    assert lab.exits(1) == 2

def test_hard_exits(lab):
    assert lab.hard_exits(1) == 2

def test_good_after_hard_exit(lab):
    assert lab.good(3) == 4

def test_segfaults(lab):
    assert lab.segfaults(1) == 2

def test_raises(lab):
    assert lab.raises(1) == 2

def test_good_last(lab):
    assert lab.good(4) == 5
"""

EXPECTED = {
    "test_good_first": "passed",
    "test_wrong": "failed",
    "test_stub": "not attempted",
    "test_loops_forever": "timed out",
    "test_good_after_timeout": "passed",
    "test_exits": "crashed",
    "test_hard_exits": "crashed",
    "test_good_after_hard_exit": "passed",
    "test_segfaults": "crashed",
    "test_raises": "error",
    "test_good_last": "passed",
}


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake")
    (root / "labs").mkdir()
    (root / "tests" / "labs").mkdir(parents=True)
    (root / "labs" / "lab42_fake.py").write_text(textwrap.dedent(FAKE_LAB))
    (root / "tests" / "labs" / "test_lab42_fake.py").write_text(textwrap.dedent(FAKE_TESTS))
    return root


@pytest.fixture(scope="module")
def report(fake):
    return grade(impl=fake / "labs", tests_dir=fake / "tests" / "labs", timeout=3.0)


def test_every_failure_mode_gets_its_status(report):
    got = {o.name: o.status for o in report.outcomes}
    assert got == EXPECTED


def test_only_passing_tests_earn_points(report):
    earned = {o.name: o.earned for o in report.outcomes}
    assert earned == {
        name: (3.0 if name == "test_good_after_timeout" else 1.0) if status == "passed" else 0.0
        for name, status in EXPECTED.items()
    }
    assert report.score == 6.0
    assert report.max_score == 13.0


def test_messages_explain_what_happened(report):
    msg = {o.name: o.message for o in report.outcomes}
    assert "expected 2, got 0" in msg["test_wrong"]
    assert "lab42: stub" in msg["test_stub"]
    assert "limit of 3 s" in msg["test_loops_forever"]
    assert "sys.exit(3)" in msg["test_exits"]
    assert "status 7" in msg["test_hard_exits"]
    assert "SIGSEGV" in msg["test_segfaults"]
    # An error points at the line of the student's file that raised it.
    assert "KeyError: 'missing'" in msg["test_raises"]
    assert "lab42_fake.py" in msg["test_raises"] and "in raises" in msg["test_raises"]


def test_render_and_gradescope_agree_with_the_report(report):
    text = render(report)
    assert "lab42" in text and "6/13 points" in text and "TIMEOUT" in text and "CRASH" in text
    results = gradescope(report)
    assert results["score"] == 6.0
    assert {t["status"] for t in results["tests"]} == {"passed", "failed"}
    assert sum(t["max_score"] for t in results["tests"]) == 13.0
    for t in results["tests"]:
        assert set(t) >= {"name", "score", "max_score", "status", "output"}
        assert (t["status"] == "passed") == (t["score"] == t["max_score"])


def test_a_syntax_error_in_the_lab_is_an_error_per_test_not_a_lost_run(tmp_path):
    (tmp_path / "labs").mkdir()
    (tmp_path / "tests" / "labs").mkdir(parents=True)
    (tmp_path / "labs" / "lab42_fake.py").write_text("def good(x)\n    return x + 1\n")
    (tmp_path / "tests" / "labs" / "test_lab42_fake.py").write_text(
        "def test_a(lab):\n    assert lab.good(1) == 2\n\ndef test_b(lab):\n    assert lab.good(2) == 3\n"
    )
    report = grade(impl=tmp_path / "labs", tests_dir=tmp_path / "tests" / "labs", timeout=10.0)
    assert [o.status for o in report.outcomes] == ["error", "error"]
    own = str(tmp_path / "labs" / "lab42_fake.py")
    assert "SyntaxError" in report.outcomes[0].message and f"{own}:1" in report.outcomes[0].message
    assert "course-grade-" not in report.outcomes[0].message, "the student's own file, not the grader's copy"


def test_cli_writes_results_and_fail_under_sets_the_exit_status(tmp_path, monkeypatch, capsys):
    (tmp_path / "labs").mkdir()
    (tmp_path / "tests" / "labs").mkdir(parents=True)
    (tmp_path / "labs" / "lab42_fake.py").write_text(textwrap.dedent(FAKE_LAB))
    (tmp_path / "tests" / "labs" / "test_lab42_fake.py").write_text(
        "def test_good(lab):\n    assert lab.good(1) == 2\n\ndef test_wrong(lab):\n    assert lab.wrong(1) == 2\n"
    )
    results = tmp_path / "out" / "results.json"
    args = ["grade", "--impl", str(tmp_path / "labs")]
    monkeypatch.setenv("COURSE_TESTS_DIR", str(tmp_path / "tests" / "labs"))
    # Once as a student runs it, a process of its own; then through the same main(), in this one.
    run = subprocess.run(
        [sys.executable, "-m", "course", *args, "--results", str(results)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr  # a finished run exits 0 whatever the score
    assert "Total: 1/2 points" in run.stdout
    assert json.loads(results.read_text())["score"] == 1.0
    assert cli.main([*args, "--fail-under", "60"]) == 1 and "under --fail-under 60%" in capsys.readouterr().err
    assert cli.main([*args, "--fail-under", "50"]) == 0, capsys.readouterr().err


HINT_LAB = '''
"""Bugs that JAX reports in words that do not say what to do."""
import jax
import jax.numpy as jnp

def mse(pred, y):
    return jnp.mean((pred - y) ** 2)  # pred (N, 1), y (N,): an (N, N) matrix of differences

def dense(x, w, b):
    return x @ w + b  # (N, n) + (n,): the ordinary, intended broadcast

def relu(x):
    return x if x > 0 else 0.0  # a Python `if` on a traced value

def total(x):
    return jnp.sum(x[x > 0])  # a boolean mask under jit: the shape depends on the values

def count(x):
    return jnp.zeros(int(x)).sum()  # int() of a traced value: a shape that depends on the values

def pick(x, i):
    return [x, 2 * x][i]  # a Python list indexed with a traced integer
'''

HINT_TESTS = """
import jax
import jax.numpy as jnp
import numpy as np

def test_mse(lab):
    pred, y = jnp.array([[1.0], [2.0], [3.0]]), jnp.array([1.0, 2.0, 4.0])
    got = lab.mse(pred, y)
    assert abs(float(got) - 1 / 3) < 1e-6, f"expected 1/3, got {float(got)}"

def test_dense_is_wrong_on_purpose(lab):
    out = lab.dense(np.ones((4, 3), np.float32), np.ones((3, 2), np.float32), np.ones(2, np.float32))
    assert out.shape == (4, 5), "this test fails, and no hint should blame x @ w + b"

def test_relu_under_jit(lab):
    assert lab.run(lambda lab, x: jax.jit(lab.relu)(x), jnp.float32(2.0)) == 2.0

def test_total_under_jit(lab):
    assert lab.run(lambda lab, x: jax.jit(lab.total)(x), jnp.arange(-2.0, 3.0)) == 3.0

def test_count_under_jit(lab):
    assert lab.run(lambda lab, x: jax.jit(lab.count)(x), jnp.float32(3.0)) == 0.0

def test_pick_under_jit(lab):
    assert lab.run(lambda lab, x, i: jax.jit(lab.pick)(x, i), jnp.float32(2.0), jnp.int32(1)) == 4.0
"""


@pytest.fixture(scope="module")
def hints(tmp_path_factory):
    root = tmp_path_factory.mktemp("hints")
    (root / "labs").mkdir()
    (root / "tests" / "labs").mkdir(parents=True)
    (root / "labs" / "lab42_hints.py").write_text(HINT_LAB)
    (root / "tests" / "labs" / "test_lab42_hints.py").write_text(HINT_TESTS)
    report = grade(impl=root / "labs", tests_dir=root / "tests" / "labs", timeout=30.0)
    return {o.name: o for o in report.outcomes} | {"own": str(root / "labs" / "lab42_hints.py")}


def test_the_rank_promotion_hint_names_the_students_line(hints):
    o = hints["test_mse"]
    assert o.status == "failed"
    assert "hint: implicit rank promotion at" in o.message and f"{hints['own']}:7 in mse" in o.message, o.message
    assert "course-grade-" not in o.message, "the student's own file, not the grader's copy"
    assert "(3, 1) (3,)" in o.message


def test_no_rank_promotion_hint_for_an_ordinary_bias(hints):
    o = hints["test_dense_is_wrong_on_purpose"]
    assert o.status == "failed" and "hint:" not in o.message, o.message


@pytest.mark.parametrize(
    "test, error, advice",
    [
        ("test_relu_under_jit", "TracerBoolConversionError", "use jnp.where or lax.cond"),
        ("test_total_under_jit", "NonConcreteBooleanIndexError", "jnp.where(mask, x, 0)"),
        ("test_count_under_jit", "ConcretizationTypeError", "mark the argument static"),
        ("test_pick_under_jit", "TracerIntegerConversionError", "keep shapes and sizes static"),
    ],
)
def test_jax_errors_get_advice_and_the_students_line(hints, test, error, advice):
    o = hints[test]
    assert o.status == "error", o
    assert error in o.message and advice in o.message and "lab42_hints.py" in o.message, o.message


# ---------------------------------------------------------------------------------------------------
# the warm start (course.grader.zygote): the same verdicts, nothing carried over, a daemon for the shell


def test_each_grading_forks_fresh_processes_from_the_zygote(stateful, monkeypatch):
    """Whatever the lab or the tests leave behind in their processes, the next grading does not see."""
    from course.grader import zygote

    kwargs = dict(impl=stateful / "labs", tests_dir=stateful / "tests" / "labs", timeout=30.0)
    warm = [grade(**kwargs) for _ in range(2)]  # the second sees nothing the first left
    assert zygote._shared is not None and zygote._shared.alive(), "graded from this process's zygote"
    for report in warm:
        assert [o.status for o in report.outcomes] == ["passed", "passed"], [o.message for o in report.outcomes]
    monkeypatch.setenv("COURSE_WARM", "0")  # the old path: every process started from scratch
    cold = grade(**kwargs)
    assert [(o.name, o.status) for o in cold.outcomes] == [(o.name, o.status) for o in warm[0].outcomes]


def test_the_zygote_preloads_only_installed_libraries_and_the_course():
    from course.grader import zygote

    assert zygote.preloadable("jax.numpy") and zygote.preloadable("course.datasets")
    assert not zygote.preloadable("lab42_state") and not zygote.preloadable("os") and not zygote.preloadable("../x")


def test_one_labs_tests_are_shared_out_between_processes_and_reported_in_order(tmp_path):
    """With more jobs than labs, every n-th test goes to its own process: each runs once, in file order."""
    from course.grader.runner import groups

    (tmp_path / "labs").mkdir()
    (tmp_path / "tests" / "labs").mkdir(parents=True)
    (tmp_path / "labs" / "lab42_shares.py").write_text("import os\n\ndef pid():\n    return os.getpid()\n")
    log = tmp_path / "ran.txt"  # each test writes its name and its (trusted) process's pid
    record = f"    open({str(log)!r}, 'a').write(str(os.getpid()) + ' ')\n"
    tests = "".join(f"def test_{n}(lab):\n{record}    assert lab.pid() > 0\n\n" for n in "abcdefg")
    test_file = tmp_path / "tests" / "labs" / "test_lab42_shares.py"
    test_file.write_text("import os\n\n" + tests + f"def test_h_fails(lab):\n{record}    assert lab.pid() < 0\n")
    assert groups({"lab42": [test_file]}, 3) == [([test_file], f"{i}/3") for i in range(3)]
    assert groups({"lab42": [test_file]}, 3, split=False) == [([test_file], "0/1")]
    report = grade(impl=tmp_path / "labs", tests_dir=tmp_path / "tests" / "labs", timeout=30.0, jobs=3)
    assert [o.name for o in report.outcomes] == [f"test_{n}" for n in "abcdefg"] + ["test_h_fails"]
    assert [o.status for o in report.outcomes] == ["passed"] * 7 + ["failed"]
    pids = log.read_text().split()
    assert len(pids) == 8 and len(set(pids)) == 3, "each test ran once, in one of three processes"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/fd")
def test_a_daemon_socket_deeper_than_a_socket_address_still_listens_and_answers(tmp_path):
    """A socket's path is limited to about 100 bytes; a deep $TMPDIR (pytest-xdist's, a user's) must not
    cost the warm daemon: the zygote binds and connects through its folder's descriptor."""
    import socket

    from course.grader import zygote

    folder = tmp_path / ("d" * 60) / ("e" * 60)
    folder.mkdir(parents=True)
    path = str(folder / "zygote-0123456789abcdef.sock")
    assert len(path) > 120
    with pytest.raises(OSError):  # the plain call cannot
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).bind(path)
    listener = zygote._listen(path)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        assert listener is not None and os.path.exists(path)
        zygote._at(path, client.connect)
        server_side = listener.accept()[0]
        client.sendall(b"ping")
        assert server_side.recv(4) == b"ping"
        server_side.close()
        assert zygote._listen(path) is None  # a live daemon answers there: left be
    finally:
        client.close()
        if listener is not None:
            listener.close()
