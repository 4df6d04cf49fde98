"""Transparent huge pages for the memory XLA takes on every step (Linux with glibc 2.35 or newer).

Why it matters. Each call of a compiled CPU function allocates its temporary buffers afresh, and each
Eigen convolution its scratch space: blocks of tens to hundreds of MB for lab 10's step. Allocations
this large glibc's ``malloc`` takes straight from the kernel (``mmap``) and gives back on ``free``, so
the next step touches brand-new 4 KiB pages again, and page faults take a large share of the step.
glibc's tunable ``glibc.malloc.hugetlb=1`` makes ``malloc`` ask for *transparent huge pages* (2 MiB)
where the system hands them out on request (``/sys/kernel/mm/transparent_hugepage/enabled`` reads
``[madvise]``, the usual setting): far fewer faults, and a faster step (PyTorch's too: its allocator is
``malloc`` as well). ``benchmarks/bench_cnn.py`` measures both; the figures are in
``docs/performance.md`` and ``benchmarks/README.md``.

A tunable is read when a process starts, so ``python -m course run`` (and the benchmarks) start
themselves once more with it, before doing any work (:func:`restart_with_hugepages`), where it helps
and is not set yet. ``COURSE_HUGEPAGES=0`` turns that off. A notebook's kernel is already running: start
Jupyter with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` set (``binder/start`` does, on Binder).
Elsewhere (macOS, Windows, musl, an old glibc, THP ``always`` or ``never``) nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb"
SETTING = f"{TUNABLE}=1"
OPT_OUT = "COURSE_HUGEPAGES"  # "0": never restart with the tunable
RESTARTED = "COURSE_HUGEPAGES_RESTARTED"  # set in the restarted process: never restart twice
THP_ENABLED = Path("/sys/kernel/mm/transparent_hugepage/enabled")
GLIBC_WITH_TUNABLE = (2, 35)  # the first glibc that knows glibc.malloc.hugetlb


def glibc_version() -> tuple[int, int] | None:
    """glibc's version of this process, e.g. (2, 36); ``None`` when the C library is not glibc."""
    try:
        get = ctypes.CDLL(None).gnu_get_libc_version
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS, Windows)
        return None
    get.restype = ctypes.c_char_p
    try:
        major, minor = get().decode().split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def thp_mode(path: Path = THP_ENABLED) -> str | None:
    """The kernel's transparent-huge-page mode: ``"always"``, ``"madvise"``, ``"never"``, or ``None``."""
    try:
        text = path.read_text()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def _number(text: str) -> int | None:
    """A tunable's number as glibc reads it (``strtoul`` in base 0: ``0x1f``, ``017``, ``2``); ``None`` if not one."""
    text = text.strip().lower()
    try:
        if text.startswith("0x"):
            return int(text[2:], 16)
        if len(text) > 1 and text.startswith("0"):
            return int(text[1:], 8)
        return int(text, 10)
    except ValueError:
        return None


def setting(environ: Mapping[str, str] | None = None) -> int | None:
    """The tunable's value in this process's environment (1, 0, ...), ``None`` when it is not set.

    A process started with ``GLIBC_TUNABLES`` has it in force. As glibc does, a name without ``=`` or with
    a value that is not a number is skipped, and when the tunable is given twice the last valid value counts.
    """
    tunables = (os.environ if environ is None else environ).get("GLIBC_TUNABLES", "")
    found = None
    for name, sep, value in (part.partition("=") for part in tunables.split(":")):
        if name == TUNABLE and sep and (number := _number(value)) is not None:
            found = number
    return found


def active(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process's environment sets the tunable (to any number): a choice a restart must not override."""
    return setting(environ) is not None


def wanted(
    environ: Mapping[str, str],
    *,
    platform: str | None = None,
    glibc: tuple[int, int] | None | bool = True,
    thp: str | None | bool = True,
) -> dict[str, str] | None:
    """The environment to start again with, or ``None`` when a restart would change nothing.

    ``platform``, ``glibc`` and ``thp`` are this process's (``sys.platform``, :func:`glibc_version`,
    :func:`thp_mode`) unless given. The tunable is added to any ``GLIBC_TUNABLES`` already there.
    """
    platform = sys.platform if platform is None else platform
    glibc = glibc_version() if glibc is True else glibc
    thp = thp_mode() if thp is True else thp
    if environ.get(OPT_OUT, "1") == "0" or active(environ) or RESTARTED in environ:
        return None
    if not platform.startswith("linux") or glibc is None or glibc < GLIBC_WITH_TUNABLE or thp != "madvise":
        return None
    env = dict(environ)
    env["GLIBC_TUNABLES"] = ":".join(p for p in (environ.get("GLIBC_TUNABLES", ""), SETTING) if p)
    env[RESTARTED] = "1"  # if the tunable does not survive the exec (a setuid Python), no second restart
    return env


def restart_with_hugepages(argv: Sequence[str] | None = None) -> None:
    """Replace this process by the same command with the tunable set, if that helps (else return).

    ``argv``: the command line to run again (default ``sys.orig_argv``: the interpreter's own, ``-m``
    and flags included). Call it first thing, before any work: the process starts over.
    """
    env = wanted(os.environ)
    if env is None:
        return
    if argv is None:
        argv = list(sys.orig_argv)
        # Only a command line that is this very command: not a Jupyter kernel running it (`%run -m`),
        # not a script read from stdin (which would be gone), not an embedded interpreter.
        tail = sys.argv[1:]
        if not argv or sys.argv[0] == "-" or "ipykernel" in sys.modules or (tail and argv[-len(tail) :] != tail):
            return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, list(argv), env)
    except (OSError, ValueError):  # cannot start again (no such executable, a sandbox): carry on as we are
        return


def describe() -> str:
    """One line for a run's header: whether malloc gets huge pages in this process, and if not, why."""
    glibc, mode, value = glibc_version(), thp_mode(), setting()
    if not sys.platform.startswith("linux") or glibc is None:
        return "malloc: the system's own"
    if mode == "always":  # the kernel gives huge pages whatever malloc asks
        return "malloc: huge pages (THP always)"
    if value is not None and glibc >= GLIBC_WITH_TUNABLE:
        if value == 1 and mode == "madvise":
            return f"malloc: huge pages ({SETTING}, THP {mode})"
        if value == 0:
            return f"malloc: 4 KiB pages (GLIBC_TUNABLES sets {TUNABLE}=0)"
        if value > 1:  # pages from a hugetlbfs pool (2: the system's default size); none reserved: 4 KiB
            return f"malloc: hugetlbfs pages requested (GLIBC_TUNABLES sets {TUNABLE}={value})"
    if mode != "madvise" or glibc < GLIBC_WITH_TUNABLE:
        return f"malloc: 4 KiB pages (THP {mode or 'unknown'}, glibc {glibc[0]}.{glibc[1]})"
    if os.environ.get(OPT_OUT) == "0":
        return f"malloc: 4 KiB pages ({OPT_OUT}=0)"
    return f"malloc: 4 KiB pages (start the process with GLIBC_TUNABLES={SETTING} for faster CPU steps)"


__all__ = ["active", "describe", "glibc_version", "restart_with_hugepages", "setting", "thp_mode", "wanted"]
