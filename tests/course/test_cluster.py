"""`course grade --cluster`: what is refused, and how soon; what a worker is sent. A class graded on workers,
compared with the thread pool, is tests/e2e/test_cluster_run.py."""

import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from io import BytesIO

import pytest

from course import labs
from course.cli import main
from course.errors import CourseError
from course.grader.batch import Submission
from course.grader.cluster import CONNECT_TIMEOUT_S, connect, pack

distributed = pytest.importorskip("distributed", reason="Dask distributed is in the staff group")


def _class(tmp_path) -> list[str]:
    (tmp_path / "subs" / "alice").mkdir(parents=True, exist_ok=True)
    return ["grade", "--submissions", str(tmp_path / "subs"), "--out", str(tmp_path / "grades"), "lab01"]


@pytest.mark.parametrize(
    "spec, said",
    [
        ("local:0", "local:N takes a number of worker processes, 1 or more"),
        ("local:two", "local:N takes a number of worker processes, 1 or more"),
        ("scheduler", "give local:N (N worker processes on this machine) or the address of a running Dask scheduler"),
        ("tcp://scheduler:port", "not a Dask scheduler's address"),
    ],
)
def test_a_cluster_that_is_neither_local_n_nor_an_address_is_refused(tmp_path, capsys, spec, said):
    assert main([*_class(tmp_path), "--cluster", spec]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "grades").exists()


def test_no_scheduler_at_the_address_is_said_at_once(tmp_path, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    assert main([*_class(tmp_path), "--cluster", f"tcp://127.0.0.1:{port}"]) == 2
    seconds = time.monotonic() - start
    err = capsys.readouterr().err
    assert f"--cluster tcp://127.0.0.1:{port}: no Dask scheduler answers there" in err and "docs/staff.md" in err
    assert seconds < CONNECT_TIMEOUT_S, seconds  # refused at once, not after Dask's retries
    assert not (tmp_path / "grades").exists()


def test_cluster_grades_a_class_and_the_workers_grade_alone(tmp_path, capsys):
    assert main([*_class(tmp_path)[:1], "lab01", "--cluster", "local:2"]) == 2
    assert "--cluster grades a whole class: give its submissions too" in capsys.readouterr().err
    assert main([*_class(tmp_path), "--cluster", "local:2", "--jobs", "2"]) == 2
    assert "with --cluster, the workers grade" in capsys.readouterr().err


def test_without_dask_the_command_names_what_to_install(tmp_path):
    code = (
        "import sys; sys.modules['distributed'] = None\n"  # as where it is not installed: importing it fails
        "from course.cli import main\n"
        f"sys.exit(main({[*_class(tmp_path), '--cluster', 'local:2']!r}))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Dask distributed" in run.stderr and "pip install -e . --group staff" in run.stderr


def test_a_folder_is_sent_as_its_own_files_and_a_zip_as_it_is(tmp_path):
    folder = tmp_path / "alice"
    (folder / "nested").mkdir(parents=True)
    (folder / "nested" / "lab01_perceptron.py").write_text("x = 1\n")
    (folder / "again.py").symlink_to(folder / "nested" / "lab01_perceptron.py")  # inside: sent as a file
    (tmp_path / "secret.txt").write_text("the grader's\n")
    (folder / "lab02_combining.py").symlink_to(tmp_path / "secret.txt")  # outside: left out
    name, data = pack(Submission("alice", folder))
    zf = zipfile.ZipFile(BytesIO(data))
    assert name == "alice.zip"
    assert sorted(zf.namelist()) == ["again.py", "nested/lab01_perceptron.py"]
    assert zf.read("again.py") == b"x = 1\n"
    with zipfile.ZipFile(tmp_path / "bob.zip", "w") as out:
        out.writestr("lab01_perceptron.py", "y = 2\n")
    assert pack(Submission("bob", tmp_path / "bob.zip")) == ("bob.zip", (tmp_path / "bob.zip").read_bytes())


def test_the_local_cluster_admits_only_this_command(tmp_path):
    """Its scheduler listens on 127.0.0.1 only, with TLS and a key made for the run: a process that
    reaches the port (a student's code) cannot send it work, which a Dask scheduler would run."""
    lines = []
    with connect("local:1", log=lines.append) as cluster:
        address = cluster.client.scheduler.address
        assert address.startswith("tls://127.0.0.1:"), address
        assert cluster.client.run(os.getpid)  # this command's client is admitted
        # Without TLS, and with TLS but a certificate of its own: refused either way.
        for attempt, security in [
            (address.replace("tls://", "tcp://"), None),
            (address, distributed.security.Security.temporary()),
        ]:
            with pytest.raises(distributed.comm.core.CommClosedError):  # at once, not a timeout
                distributed.Client(attempt, timeout=3, set_as_default=False, security=security)
    assert lines[-1].startswith("grading on 1 Dask worker(s) of the scheduler at tls://127.0.0.1:"), lines


def test_workers_with_other_graded_tests_are_refused_before_anything_is_graded(tmp_path):
    other = tmp_path / "tests"
    shutil.copytree(labs.graded_tests_dir(), other)
    [lab01] = other.glob("test_lab01*.py")
    lab01.write_text(lab01.read_text() + "\n# changed on the workers\n")
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        env={"COURSE_TESTS_DIR": str(other)},
    ) as local:
        with pytest.raises(CourseError) as refused:
            with connect(local.scheduler_address, log=lambda line: None):
                pytest.fail("connected to workers with other graded tests")
    said = str(refused.value)
    assert "1 of 1 workers have another course than this machine's" in said
    [worker] = [line for line in said.splitlines() if " here, " in line]
    assert worker.startswith("  tcp://127.0.0.1:") and ": graded tests " in worker and worker.count(" here, ") == 1
    assert "pip install -e . --group staff" in said
