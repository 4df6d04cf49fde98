"""Keep the grader's processes closed to the student's code when both run as the same user (Linux).

A process of the same user may open another's ``/proc/PID/fd/N`` — a pipe opened that way can be
written to, whichever end the link names — and read its ``environ`` and ``mem``, unless the target is
*not dumpable*: then only a process with ``CAP_SYS_PTRACE`` may. So the grading processes (the one
that reads the results, the trusted test processes, the fork servers) make themselves not dumpable,
and a sandbox of the same user cannot reach their results channel. As root with a separate sandbox
user this is already so; elsewhere it does nothing.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import sys

_PR_GET_DUMPABLE, _PR_SET_DUMPABLE = 3, 4


def _prctl():
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - every Linux libc has prctl
        return None


# What the grading processes (the zygote, the trusted test processes, the fork servers) inherit of the
# environment of whoever grades: what Python, JAX, XLA and the course read, and nothing else. The fork
# servers' memory is their sandboxes' memory, so anything kept here a student's code could find there:
# not the staff's tokens, not the hidden seed (COURSE_SEED is read by the command line and stops there).
GRADING_ENVIRONMENT = ("PATH", "HOME", "USER", "LANG", "TZ", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH", "LD_LIBRARY_PATH")
GRADING_PREFIXES = ("LC_", "JAX_", "XLA_", "TF_CPP_", "OMP_", "MKL_", "OPENBLAS_", "GLIBC_TUNABLES", "MPL", "COURSE_")
SECRETS = ("COURSE_SEED",)


def grading_environment() -> dict[str, str]:
    """This process's environment as the grading processes may see it (:data:`GRADING_ENVIRONMENT`)."""
    return {
        k: v
        for k, v in os.environ.items()
        if (k in GRADING_ENVIRONMENT or k.startswith(GRADING_PREFIXES)) and k not in SECRETS
    }


def set_dumpable(flag: bool) -> bool | None:
    """Set this process's dumpable flag; return the previous one (None where there is no prctl)."""
    prctl = _prctl()
    if prctl is None:
        return None
    previous = prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0)
    prctl(_PR_SET_DUMPABLE, int(flag), 0, 0, 0)
    return previous == 1


@contextlib.contextmanager
def closed_to_same_user():
    """Not dumpable inside the block (the notebook kernel that calls ``check()`` gets its flag back)."""
    previous = set_dumpable(False)
    try:
        yield
    finally:
        if previous:
            set_dumpable(True)


_PROBE = """import os, sys
for path in sys.argv[1:]:
    try:
        os.listdir(path) if os.path.isdir(path) else open(path, "rb").close()
    except OSError:
        print(path)
        break
"""


def unreadable_as(uid: int, gid: int, paths: list[str]) -> str | None:
    """The first of ``paths`` that user ``uid`` cannot read, or None: tried for real, as that user (root only).

    A fresh interpreter is started as the user (``subprocess`` switches users between fork and exec,
    which is safe in a process with threads, as JAX's are); if even this Python cannot be run by that
    user, the answer is the interpreter itself.
    """
    try:
        probe = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _PROBE, *paths],
            user=uid,
            group=gid,
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return sys.executable
    if probe.returncode != 0:
        return sys.executable
    return probe.stdout.strip() or None


def python_dirs() -> list[str]:
    """Where this Python's standard library and JAX live, which a sandbox's user must read (JAX not imported)."""
    import importlib.util

    jax = importlib.util.find_spec("jax")
    return [os.path.dirname(os.__file__), *([os.path.dirname(jax.origin)] if jax and jax.origin else [])]


def needed_by_sandboxes() -> list[str]:
    """What every sandbox reads besides the lab: this course package, Python's standard library, JAX."""
    return [os.path.dirname(os.path.dirname(os.path.realpath(__file__))), *python_dirs()]


def sandbox_user(setting: str | None) -> tuple[int, int] | None:
    """The (uid, gid) that sandboxes run as, or None to keep ours.

    ``"auto"``: an unprivileged user (``nobody``) when we run as root, as on Gradescope; nobody
    else can switch users. ``"none"``: keep ours. A user name: that user (root only).
    """
    if setting in (None, "", "none"):
        return None
    if setting == "auto":
        if os.geteuid() != 0:
            return None
        setting = "nobody"
    if os.geteuid() != 0:
        raise PermissionError(f"only root can run the sandboxes as user {setting!r}")
    entry = pwd.getpwnam(setting)
    return entry.pw_uid, entry.pw_gid
