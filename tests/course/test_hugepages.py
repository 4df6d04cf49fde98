"""course.staff.hugepages: when `course run` starts itself again with glibc's huge-page tunable, and that it does."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from course import labs
from course.cli import main
from course.staff import hugepages

LINUX = {"platform": "linux", "glibc": (2, 36), "thp": "madvise"}


def test_wanted_adds_the_tunable_where_it_helps_keeping_other_tunables():
    env = hugepages.wanted({"PATH": "/bin"}, **LINUX)
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1", "COURSE_HUGEPAGES_RESTARTED": "1"}
    env = hugepages.wanted({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, **LINUX)
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"


@pytest.mark.parametrize(
    "environ, system",
    [
        ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, LINUX),  # already set: no loop
        ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, LINUX),  # the user chose otherwise
        ({"COURSE_HUGEPAGES": "0"}, LINUX),  # opted out
        ({"COURSE_HUGEPAGES_RESTARTED": "1"}, LINUX),  # restarted once already (the tunable was dropped)
        ({}, {**LINUX, "platform": "darwin"}),
        ({}, {**LINUX, "platform": "win32"}),
        ({}, {**LINUX, "glibc": None}),  # musl
        ({}, {**LINUX, "glibc": (2, 31)}),  # no such tunable before 2.35
        ({}, {**LINUX, "thp": "always"}),  # huge pages already
        ({}, {**LINUX, "thp": "never"}),  # none to be had
        ({}, {**LINUX, "thp": None}),  # no THP in this kernel
    ],
)
def test_wanted_is_none_where_a_restart_would_change_nothing(environ, system):
    assert hugepages.wanted(environ, **system) is None


@pytest.mark.parametrize(
    "tunables, value",
    [
        (None, None),
        ("glibc.malloc.arena_max=2", None),
        ("glibc.malloc.hugetlb=1", 1),
        ("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0", 0),
        ("glibc.malloc.hugetlb=1:glibc.malloc.hugetlb=0", 0),  # glibc takes the last
        ("glibc.malloc.hugetlbx=1", None),  # another name
        ("glibc.malloc.hugetlb", None),  # no value: glibc skips it
        ("glibc.malloc.hugetlb=1:glibc.malloc.hugetlb=x", 1),  # not a number: skipped, the 1 stands
        ("glibc.malloc.hugetlb=01", 1),  # read as strtoul does
        ("glibc.malloc.hugetlb=0x200000", 2097152),
    ],
)
def test_setting_reads_the_tunables_value(tunables, value):
    environ = {} if tunables is None else {"GLIBC_TUNABLES": tunables}
    assert hugepages.setting(environ) == value
    assert hugepages.active(environ) is (value is not None)


@pytest.mark.parametrize(
    "value, thp, expected",
    [
        ("1", "madvise", "malloc: huge pages (glibc.malloc.hugetlb=1, THP madvise)"),
        ("0", "madvise", "malloc: 4 KiB pages (GLIBC_TUNABLES sets glibc.malloc.hugetlb=0)"),
        ("0", "always", "malloc: huge pages (THP always)"),  # the kernel's choice wins
        ("2097152", "madvise", "malloc: hugetlbfs pages requested (GLIBC_TUNABLES sets glibc.malloc.hugetlb=2097152)"),
        (
            "x",
            "madvise",
            "malloc: 4 KiB pages (start the process with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 for faster CPU steps)",
        ),
    ],
)
def test_describe_reports_the_tunables_value_not_only_its_name(monkeypatch, value, thp, expected):
    monkeypatch.setattr(hugepages.sys, "platform", "linux")
    monkeypatch.setattr(hugepages, "glibc_version", lambda: (2, 36))
    monkeypatch.setattr(hugepages, "thp_mode", lambda: thp)
    monkeypatch.delenv("COURSE_HUGEPAGES", raising=False)
    monkeypatch.setenv("GLIBC_TUNABLES", f"glibc.malloc.arena_max=2:glibc.malloc.hugetlb={value}")
    assert hugepages.describe() == expected


def test_thp_mode_reads_the_bracketed_choice(tmp_path):
    path = tmp_path / "enabled"
    path.write_text("always [madvise] never\n")
    assert hugepages.thp_mode(path) == "madvise"
    path.write_text("[always] madvise never\n")
    assert hugepages.thp_mode(path) == "always"
    assert hugepages.thp_mode(tmp_path / "missing") is None


def test_restart_execs_the_same_command_with_the_tunable(monkeypatch):
    calls = []
    monkeypatch.setattr(sys, "argv", ["/x/course/__main__.py", "run", "lab10"])
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "course", "run", "lab10"])
    monkeypatch.setattr(hugepages, "wanted", lambda environ: {**environ, "GLIBC_TUNABLES": hugepages.SETTING})
    monkeypatch.setattr(hugepages.os, "execve", lambda *args: calls.append(args))
    hugepages.restart_with_hugepages()
    ((path, argv, env),) = calls
    assert path == sys.executable and argv == list(sys.orig_argv) and env["GLIBC_TUNABLES"] == hugepages.SETTING


@pytest.mark.parametrize(
    "situation",
    ["script from stdin", "inside a Jupyter kernel", "not this command line", "embedded: no orig_argv"],
)
def test_restart_only_reruns_a_command_line_that_is_this_command(monkeypatch, situation):
    calls = []
    monkeypatch.setattr(hugepages, "wanted", lambda environ: dict(environ))
    monkeypatch.setattr(hugepages.os, "execve", lambda *args: calls.append(args))
    monkeypatch.setattr(sys, "argv", ["/x/course/__main__.py", "run", "lab10"])
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "course", "run", "lab10"])
    if situation == "script from stdin":
        monkeypatch.setattr(sys, "argv", ["-", "run", "lab10"])
    elif situation == "inside a Jupyter kernel":
        monkeypatch.setitem(sys.modules, "ipykernel", object())
    elif situation == "not this command line":
        monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "ipykernel_launcher", "-f", "kernel.json"])
    else:
        monkeypatch.setattr(sys, "orig_argv", [])
    hugepages.restart_with_hugepages()
    assert calls == []


def test_restart_carries_on_when_exec_fails(monkeypatch):
    def refuse(*args):
        raise PermissionError("exec not allowed here")

    monkeypatch.setattr(hugepages, "wanted", lambda environ: dict(environ))
    monkeypatch.setattr(hugepages.os, "execve", refuse)
    assert hugepages.restart_with_hugepages() is None


def test_main_called_with_arguments_never_restarts(monkeypatch, capsys):
    def exec_(*args):
        raise AssertionError("main(argv) must not replace the process")

    monkeypatch.setattr(hugepages.os, "execve", exec_)
    assert main(["run", "lab99", "--out", "unused"]) == 2
    assert "== malloc:" in capsys.readouterr().out


def test_course_run_starts_again_with_huge_pages_where_they_help(tmp_path):
    """The real command line: `python -m course run` reports huge pages when this machine can have them."""
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "COURSE_HUGEPAGES")}
    run = lambda **extra: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "course", "run", "lab99", "--out", str(tmp_path)],
        env={**env, **extra},
        capture_output=True,
        text=True,
    )
    done = run()
    assert done.returncode == 2 and "lab99" in done.stderr, done.stderr
    header = done.stdout.splitlines()[0]
    if hugepages.wanted(env) is not None:  # Linux, glibc >= 2.35, THP on request: the child has the tunable
        assert header == f"== malloc: huge pages ({hugepages.SETTING}, THP madvise)"
        assert run(COURSE_HUGEPAGES="0").stdout.splitlines()[0] == "== malloc: 4 KiB pages (COURSE_HUGEPAGES=0)"
    else:
        assert hugepages.SETTING not in header


@pytest.mark.solutions_only
def test_binder_start_sets_the_tunable_for_jupyter_and_keeps_others():
    start = labs.root() / "binder" / "start"
    assert start.stat().st_mode & 0o111, "binder/start must be executable"
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    show = [str(start), sys.executable, "-c", "import os; print(os.environ['GLIBC_TUNABLES'])"]
    assert subprocess.run(show, env=env, capture_output=True, text=True, check=True).stdout == f"{hugepages.SETTING}\n"
    env["GLIBC_TUNABLES"] = "glibc.malloc.arena_max=2"
    out = subprocess.run(show, env=env, capture_output=True, text=True, check=True).stdout
    assert out == f"glibc.malloc.arena_max=2:{hugepages.SETTING}\n"
