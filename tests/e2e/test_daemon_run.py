"""`course grade` as a student runs it, command after command: the warm daemon they share.

Each command is a fresh Python process, and the daemon's lifecycle is waited out, so it runs with the
end-to-end runs (tests/e2e/README.md); the grading it forks is tested in tests/course/test_grader.py.
"""

import os
import subprocess
import sys
import time

import pytest


def _daemons(folder):
    """The pids of the daemon zygotes listening in ``folder``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if b"--listen\x00" + str(folder).encode() in f.read():
                    found.append(int(entry))
        except (OSError, ValueError):
            pass
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_course_grade_commands_share_a_daemon_that_ends_when_idle(stateful):
    """Successive `course grade` commands fork from one daemon (no JAX import each time); it lives in a
    folder only this user can open, is replaced when it dies, and ends by itself when unused."""
    tmp = stateful / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "COURSE_WARM_IDLE": "20"}
    env.pop("COURSE_WARM", None)  # the command line's default
    env["COURSE_TESTS_DIR"] = str(stateful / "tests" / "labs")
    command = [sys.executable, "-m", "course", "grade", "--impl", str(stateful / "labs")]
    folder = tmp / f"course-{os.geteuid()}"
    try:
        first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert "Total: 2/2 points" in first.stdout, first.stdout + first.stderr
        assert (folder.stat().st_mode & 0o777) == 0o700
        [daemon] = _daemons(folder)
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert "Total: 2/2 points" in second.stdout, second.stdout + second.stderr
        assert _daemons(folder) == [daemon], "the second command used the first one's daemon"
        os.kill(daemon, 9)
        third = subprocess.run(
            command, capture_output=True, text=True, env={**env, "COURSE_WARM_IDLE": "2"}, timeout=300
        )
        assert "Total: 2/2 points" in third.stdout, third.stdout + third.stderr
        [replacement] = _daemons(folder)
        assert replacement != daemon
        for _ in range(150):  # unused for 2 s, it ends, and takes its socket with it
            if not _daemons(folder):
                break
            time.sleep(0.1)
        assert not _daemons(folder) and not list(folder.glob("*.sock"))
    finally:
        for pid in _daemons(folder):
            os.kill(pid, 9)
