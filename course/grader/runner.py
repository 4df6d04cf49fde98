"""The grader: collect the graded tests, run each lab's tests, decide, report.

    grade(["lab01"], impl="labs")
      1. collect   which test files belong to which lab (``course.labs.graded_tests``)
      2. snapshot  private copies of those tests and of the student's lab files, hashed, before any
                   student code runs
      3. run       one trusted pytest process per group of labs (groups run in parallel); each lab's
                   code runs in a sandbox of its own (:mod:`course.grader.outside`), and the trusted
                   process reports every test's status (:mod:`course.grader.grading_plugin`)
      4. decide    the outcomes, in collection order; a test nobody reported is "crashed"

Each lab has a time budget (``Settings.budget``, default ``BUDGET_TIMEOUTS`` test timeouts, :mod:`course.grader.model`): the seconds of the
student's code its tests that do not pass may spend together. Once they have, the lab's remaining tests
are "not run" and score 0, and every earlier verdict stands. A test that passes is never charged, so
a correct solution never runs out of budget; a lab whose every function loops costs about
``BUDGET_TIMEOUTS`` timeouts instead of one per test (docs/grading.md, "A time budget per lab").

No process that decides a grade ever imports or runs student code, so nothing the student's code
does — patching pytest, forging reports, writing to the results channel, rewriting the tests — can
change a status except by returning values that pass the tests' own checks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from course import labs as _labs
from course.errors import CourseError
from course.grader import locations, privacy, zygote
from course.grader import notebook as _notebook
from course.grader.model import ISOLATIONS, Outcome, ProcessSettings, Report, Settings, Status

MAX_SHARES = 4  # processes that one lab's tests are shared out between, at most (each has a sandbox)
QUIET_LIMIT_S = 600.0  # a grading process silent for longer than this (plus the test timeout) is stuck


def grade(
    labs: list[str] | None = None,
    *,
    impl: str | os.PathLike = "labs",
    settings: Settings | None = None,
    tests_dir: Path | None = None,
    sandbox_cache: Path | None = None,
    warm_cache: Path | None = None,
    log_path: Path | None = None,
    keyword: str | None = None,
    shown: dict[str, locations.Source] | None = None,
    daemon: bool = False,
    unreadable: dict[str, str] | None = None,
    **changes,
) -> Report:
    """Run the graded tests of ``labs`` (all when None) against ``impl`` and score them.

    Args:
      labs: lab names such as ``["lab01"]``; None grades every lab that has tests.
      impl: ``"labs"``, ``"solutions"`` or the path of a folder of lab files.
      settings: how to grade (:class:`course.grader.model.Settings`: timeout, budget, seed, sandbox
        user, isolation, jobs); ``changes`` change some of them (``grade(["lab01"], timeout=5)``).
      tests_dir: the folder of graded tests ``test_labNN*.py`` (default ``$COURSE_TESTS_DIR``, else ``tests/labs``).
      sandbox_cache: the JAX compilation cache the sandboxes write (default: this submission's own,
        :func:`course.grader.lab_plugin.sandbox_cache_for`).
      warm_cache: instead, a cache written by the staff that isolated sandboxes only read (a class).
      log_path: where the grading processes' own output goes (default: a temporary file).
      keyword: only the tests pytest's ``-k`` expression selects (``course.check`` of a few functions).
      shown: how messages name lab files of ``impl`` (by path) other than as the files they are
        (:mod:`course.grader.locations`): ``course.check`` names a kernel's cells.
      daemon: fork the grading processes from this user's daemon zygote, which outlives this call (the
        ``course grade`` command line), not from one of this process (:func:`course.grader.zygote.shared`).
      unreadable: labs that cannot be graded, and why (a submission that could not be unpacked): their
        tests score 0 with that reason; so do the tests of a lab missing from ``impl``.

    ``impl`` may also hold Jupyter notebooks, or be one (``labNN_*.ipynb``): their code cells are graded
    as the lab module (:func:`course.grader.notebook.convert_for_grading`), and ``labs=None`` means their labs.
    """
    start = time.monotonic()
    settings = (settings or Settings()).replace(**changes)
    notebook = _notebook.has_notebooks(impl)
    impl_dir = Path(impl).resolve() if notebook and Path(impl).is_file() else _labs.impl_dir(impl)
    tests_dir = Path(tests_dir).resolve() if tests_dir else _labs.graded_tests_dir()
    report = Report(impl=str(impl), seed=settings.seed, timeout=settings.timeout, budget=settings.budget_s)
    isolate = isolation_setting(settings.isolation, report)
    with privacy.closed_to_same_user(), tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
        submission = _Submission(labs, dict(unreadable or {}), Path(tmp) / "notebooks", dict(shown or {}))
        if notebook:
            submission.convert(impl_dir, report)
        plan = collect(tests_dir, submission.labs)
        if not plan:
            return report
        snapshot = Snapshot.take(
            plan,
            tests_dir,
            impl_dir,
            Path(tmp),
            converted=submission.converted,
            shown=submission.shown,
            unreadable=submission.not_graded,
        )
        report.notes += [
            f"{name}: not graded; it is a link to a file outside your submission" for name in snapshot.refused
        ]
        caches = {"sandbox_cache": sandbox_cache or _plugin_cache_for(impl), "warm_cache": warm_cache}
        told = process_settings(settings, snapshot, report, isolate=isolate, **caches)
        log = open(log_path, "w+") if log_path else tempfile.TemporaryFile("w+")
        with log:
            events = run(snapshot, told, jobs=settings.jobs, log=log, keyword=keyword, daemon=daemon)
            report = decide(events, report, log)
    report.duration = time.monotonic() - start
    return report


def process_settings(
    settings: Settings,
    snapshot: "Snapshot",
    report: Report,
    *,
    isolate: bool,
    sandbox_cache: Path,
    warm_cache: Path | None,
) -> ProcessSettings:
    """What the grading processes are told: ``settings`` with the sandbox's user checked (and isolation
    given up where no unprivileged user can read Python), the caches, and where the snapshot's files are."""
    user = sandbox_setting(settings.sandbox_user, snapshot, report)
    if isolate and user == "none" and os.geteuid() == 0:  # root, and no user can read Python
        isolate, report.isolation = False, "none: no unprivileged user can read Python"
    return ProcessSettings(
        timeout=settings.timeout,
        budget=settings.budget_s,
        seed=settings.seed,
        sandbox_user=user,
        isolate=isolate,
        sandbox_cache=str(sandbox_cache),
        warm_cache=str(warm_cache) if warm_cache else None,
        locations=str(snapshot.locations),
        not_graded=str(snapshot.root / "not_graded.json"),
        manifest=str(snapshot.manifest),
    )


@dataclass
class _Submission:
    """What is graded of a submission: its labs, those that cannot be, and its notebooks made into modules."""

    labs: list[str] | None
    not_graded: dict[str, str]  # lab -> why
    converted: Path  # where its notebooks' modules go
    shown: dict[str, locations.Source]  # how messages name its files

    def convert(self, impl_dir: Path, report: Report) -> None:
        """Its notebooks into lab modules (:func:`course.grader.notebook.convert_for_grading`); with no lab
        named, its labs are those it has a notebook or a lab file of."""
        self.converted.mkdir()
        found, notes, cells, damaged = _notebook.convert_for_grading(impl_dir, self.converted, self.labs)
        report.notes += notes
        self.shown.update({str(self.converted / name): source for name, source in cells.items()})
        own = [_labs.lab_id(p.stem) for p in impl_dir.glob("lab*.py") if _labs.is_lab_file(p)]
        self.labs = self.labs or sorted({*found, *damaged, *own})
        self.not_graded = {**damaged, **self.not_graded}


# ---------------------------------------------------------------------------------------------------
# 1. collect


def collect(tests_dir: Path, wanted: list[str] | None) -> dict[str, list[Path]]:
    """``{"lab01": [test files], ...}`` for the labs wanted (all labs with tests when None)."""
    plan = _labs.graded_tests(tests_dir)
    if wanted:
        ids = [_labs.lab_id(x) for x in wanted]
        missing = sorted(set(ids) - set(plan))
        if missing:
            raise CourseError(f"no graded tests for {', '.join(missing)} in {tests_dir}")
        plan = {lid: plan[lid] for lid in sorted(set(ids))}
    return plan


# ---------------------------------------------------------------------------------------------------
# 2. snapshot


@dataclass
class Snapshot:
    """Private copies of the tests and the student's lab files, made before any student code runs.

    The folder is the grader's (readable by the sandbox's user, writable only by us), and each test
    file's hash is recorded: a grading process refuses a test file whose hash differs.
    """

    plan: dict[str, list[Path]]  # lab -> test files in the copy
    tests: Path
    impl: Path
    locations: Path  # how messages name the copies (course.grader.locations)
    manifest: Path
    root: Path
    refused: list[str] = field(default_factory=list)  # lab files not graded: links out of the submission

    @classmethod
    def take(
        cls,
        plan: dict[str, list[Path]],
        tests_dir: Path,
        impl_dir: Path,
        root: Path,
        converted: Path | None = None,
        shown: dict[str, locations.Source] | None = None,  # a source file's path -> how to name it
        unreadable: dict[str, str] | None = None,  # lab -> why its file could not be read (a damaged notebook)
    ) -> "Snapshot":
        root.chmod(0o755)
        tests, impl = root / "tests" / tests_dir.name, root / "impl"
        shutil.copytree(tests_dir, tests, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
        impl.mkdir()
        # Lab files, and the modules made from notebooks (course.grader.notebook), which a .py file overrides.
        # A submission may be nested (a folder uploaded whole): the shallowest file of each name counts.
        found = [
            (p, folder)
            for folder in [converted, impl_dir]
            if folder and folder.is_dir()
            for p in sorted(folder.rglob("lab*.py"), key=lambda p: -len(p.parts))
            if _labs.is_lab_file(p) and p.is_file()
        ]
        # A link is followed only to a file inside the submission: never to a classmate's, or to a file
        # only the grader may read (the grader may be root), which would then be graded and quoted.
        sources = [p for p, folder in found if p.resolve().is_relative_to(folder.resolve())]
        refused = sorted({p.name for p, _ in found if p not in sources})
        places = locations.Locations(folders={str(tests): locations.shown_path(tests_dir)})
        for path in sources:  # later copies win: the submission's own shallowest .py files come last
            shutil.copyfile(path, impl / path.name)
            own = locations.Source(locations.shown_path(path))
            places.sources[str(impl / path.name)] = (shown or {}).get(str(path), own)
        places.write(root / "locations.json")
        (root / "not_graded.json").write_text(json.dumps(unreadable or {}), encoding="utf-8")
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        copied = {lid: [tests / p.name for p in files] for lid, files in plan.items()}
        hashes = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for files in copied.values() for p in files}
        manifest = root / "manifest.json"
        manifest.write_text(json.dumps(hashes))
        manifest.chmod(0o644)
        return cls(copied, tests, impl, root / "locations.json", manifest, root, refused)


def isolation_setting(setting: str, report: Report) -> bool:
    """Whether to isolate the sandboxes (``--isolation``), recorded in the report; ``required`` refuses
    to grade where this machine cannot (a class run's default), naming the remedy."""
    from course.grader import isolation

    if setting not in ISOLATIONS:
        raise CourseError(f"--isolation {setting!r}: choose one of {', '.join(ISOLATIONS)}")
    if setting == "off":
        report.isolation = "none: turned off (--isolation off)"
        report.notes.append("the sandboxes were not isolated from each other (--isolation off)")
        return False
    reason = isolation.unavailable()
    if reason is None:
        report.isolation = "namespaces"
        return True
    if setting == "required":
        raise CourseError(
            f"this machine cannot keep the submissions apart ({reason}). Grade on Linux with user "
            "namespaces allowed (sysctl kernel.unprivileged_userns_clone=1, or as root), or pass "
            "--isolation off to accept grading without it (every results.json will say so)"
        )
    report.isolation = f"none: {reason}"
    return False


def _plugin_cache_for(impl) -> Path:
    from course.grader.lab_plugin import sandbox_cache_for

    return sandbox_cache_for(impl)


def sandbox_setting(setting: str, snapshot: Snapshot, report: Report) -> str:
    """The ``--sandbox-user`` to grade with, checked once: can that user read what the sandbox needs?

    ``auto`` as root means ``nobody``; when nobody cannot read Python or the course (a pyenv under
    /root, say), the code runs as root instead and the report says that it was not contained. A user
    named explicitly (Gradescope's ``run_autograder`` names nobody) must work, or nothing is graded.
    """
    user = privacy.sandbox_user(setting)
    if user is None:
        return "none"
    name = "nobody" if setting == "auto" else setting
    needed = [snapshot.root, *privacy.needed_by_sandboxes()]
    unreadable = privacy.unreadable_as(*user, [str(p) for p in needed])
    if unreadable is None:
        return name
    if setting != "auto":
        raise CourseError(
            f"the sandbox user {name!r} cannot read {unreadable}: make Python and the course "
            f"readable to it (chmod -R a+rX, as setup.sh does) or choose another --sandbox-user"
        )
    report.notes.append(
        f"grading as root, but user {name} cannot read {unreadable}, so the student's code ran as "
        "root: this grading was not protected from it (install Python where nobody can read it)"
    )
    return "none"


# ---------------------------------------------------------------------------------------------------
# 3. run


def groups(plan: dict[str, list[Path]], jobs: int | None, *, split: bool = True) -> list[tuple[list[Path], str]]:
    """The labs' test files dealt into ``jobs`` groups of about equal size (one process each), with each
    group's share of its files' tests (``"0/1"``: all of them).

    With more jobs than labs (and ``split``), each lab's tests are shared out between processes (every
    n-th test, at most ``MAX_SHARES`` processes a lab), so that grading one lab uses every core: most of
    a lab's first grade is compiling. Each process has its own sandbox, so memory grows with them.
    """
    jobs = max(1, jobs or os.cpu_count() or 1)
    if split and jobs > len(plan):
        shares = min(jobs // len(plan), MAX_SHARES)
        return [(sorted(files), f"{i}/{shares}") for files in plan.values() for i in range(shares)]
    jobs = min(jobs, len(plan))
    dealt: list[list[Path]] = [[] for _ in range(jobs)]
    sizes = [0] * jobs
    for files in sorted(plan.values(), key=lambda fs: -sum(f.stat().st_size for f in fs)):
        i = sizes.index(min(sizes))
        dealt[i] += files
        sizes[i] += sum(f.stat().st_size for f in files)
    return [(sorted(g), "0/1") for g in dealt if g]


def run(
    snapshot: Snapshot,
    told: ProcessSettings,
    *,
    jobs: int | None,
    log,
    keyword: str | None = None,
    daemon: bool = False,
) -> list[dict]:
    """Run every group's trusted pytest process at once; return their events as they came."""
    selector = selectors.DefaultSelector()
    procs: list[_Process] = []
    needed = needed_modules(snapshot)
    warm = zygote.shared(course_path(), preload=needed, daemon=daemon)
    # The settings travel as a file only we can read, never on a command line: every process's command
    # line is visible in /proc (the hidden seed is among them), and the zygote's memory is the sandboxes'.
    settings_file = told.write(snapshot.root / "settings.json")
    options = [f"--settings={settings_file}", *(["-k", keyword] if keyword else [])]
    # One lab's tests are shared out only where processes come warm (each share would import JAX anew).
    for n, (files, share) in enumerate(groups(snapshot.plan, jobs, split=keyword is None and warm is not None)):
        read_fd, write_fd = os.pipe()
        args = [*_pytest_args(snapshot, files), *options, f"--share={share}"]
        env = {**privacy.grading_environment(), **_environment(snapshot, n)}
        procs += _start(warm, needed, args, env=env, cwd=snapshot.root, events_fd=write_fd, log=log)
        os.close(write_fd)
        selector.register(os.fdopen(read_fd, "rb"), selectors.EVENT_READ)
    events = _read_events(selector, procs, quiet_limit=QUIET_LIMIT_S + told.timeout)
    for proc in procs:
        proc.wait(60)
    return events


def _pytest_args(snapshot: Snapshot, files: list[Path]) -> list[str]:
    """A trusted test process's pytest command line: our plugins only, the snapshot's tests and copies.

    Its configuration is the snapshot's own empty ``pytest.ini`` (``-c``), and no ``conftest.py`` above
    the snapshot is read (``--confcutdir``): pytest never searches the folders around it, where a
    submission might have written one."""
    ini = snapshot.root / "pytest.ini"
    if not ini.exists():
        ini.write_text("[pytest]\n")
        ini.chmod(0o644)
    return [
        *map(str, files),
        *(
            "-p",
            "course.grader.lab_plugin",
            "-p",
            "course.grader.grading_plugin",
            "-o",
            "addopts=",
            "-p",
            "no:cacheprovider",
        ),
        *("--assert=plain", "-q", "--no-header", "--tb=no"),
        *("-c", str(ini)),
        f"--confcutdir={snapshot.root}",
        f"--rootdir={snapshot.tests.parent}",
        f"--impl={snapshot.impl}",
    ]


def _environment(snapshot: Snapshot, n: int) -> dict[str, str]:
    """What a trusted test process's environment adds: this course on the path, no bytecode."""
    return {
        "PYTHONPATH": course_path(),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPYCACHEPREFIX": str(snapshot.root / f"pycache-{n}"),
    }


def _read_events(selector: selectors.BaseSelector, procs: list["_Process"], *, quiet_limit: float) -> list[dict]:
    """Every JSON line the grading processes write, until each has closed its channel; processes silent
    for ``quiet_limit`` seconds are stuck (a bug in a test, not the student's doing) and are killed."""
    events: list[dict] = []
    last = time.monotonic()
    buffers: dict = {}
    while selector.get_map():
        ready = selector.select(timeout=5.0)
        for key, _ in ready:
            chunk = os.read(key.fileobj.fileno(), 1 << 16)
            if not chunk:
                selector.unregister(key.fileobj)
                key.fileobj.close()
                continue
            last = time.monotonic()
            data = buffers.get(key.fileobj, b"") + chunk
            *lines, buffers[key.fileobj] = data.split(b"\n")
            events += [json.loads(line) for line in lines if line.strip()]
        if not ready and time.monotonic() - last > quiet_limit:
            for proc in procs:
                proc.kill()  # reported as a problem by decide()
            events.append({"event": "stuck", "seconds": quiet_limit})
            for key in list(selector.get_map().values()):
                selector.unregister(key.fileobj)
                key.fileobj.close()
    return events


class _Process:
    """A grading process, started from scratch (``subprocess``) or forked by the zygote (a pid)."""

    def __init__(self, popen: subprocess.Popen | None = None, pid: int | None = None) -> None:
        self.popen, self.pid = popen, pid

    def kill(self) -> None:
        if self.popen is not None:
            self.popen.kill()
        else:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def wait(self, seconds: float) -> None:
        """Wait for a process we started; the zygote reaps its own (the results channel closed already)."""
        if self.popen is not None:
            try:
                self.popen.wait(seconds)
            except subprocess.TimeoutExpired:
                self.popen.kill()


def _start(warm, needed: list[str], args: list[str], *, env: dict, cwd: Path, events_fd: int, log) -> list[_Process]:
    """A group's trusted test process and its sandboxes' fork server: forked by the zygote ``warm``, or
    (no zygote, or it failed) started from scratch, the fork server importing JAX while pytest starts."""
    if warm is not None:
        try:
            pids = warm.launch(args, env=env, cwd=str(cwd), events_fd=events_fd, log_fd=log.fileno(), preload=needed)
            return [_Process(pid=pid) for pid in pids]
        except zygote.ZygoteError as exc:
            print(f"course: starting the grading processes from scratch ({exc})", file=log, flush=True)
    from course.grader import outside

    server_sock, server = outside.start_fork_server(log)
    env = {**env, "COURSE_GRADER_FD": str(events_fd), "COURSE_FORKSERVER_FD": str(server_sock.fileno())}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        pass_fds=(events_fd, server_sock.fileno()),
        cwd=cwd,
    )
    server_sock.close()  # the test process holds the only end now: when it exits, its server ends
    return [_Process(proc), _Process(server)]


def needed_modules(snapshot: "Snapshot") -> list[str]:
    """What the labs and graded tests of ``snapshot`` import at the top (for the zygote to preload)."""
    labs = [p for p in snapshot.impl.glob("lab*.py") if _labs.lab_of_file(p) in snapshot.plan]
    return imports_of([*labs, *(p for fs in snapshot.plan.values() for p in fs)])


def imports_of(files: list[Path]) -> list[str]:
    """The modules ``files`` import at the top that the zygote may preload (:func:`zygote.preloadable`).

    Read from their source, never run: installed libraries' modules and the course's are kept.
    """
    import ast

    names: dict[str, None] = {}
    for path in files:
        try:
            tree = _notebook.parse(path.read_bytes())
        except (SyntaxError, ValueError, OSError):
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                names.update(dict.fromkeys(a.name for a in node.names))
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names[node.module] = None
                names.update(dict.fromkeys(f"{node.module}.{a.name}" for a in node.names))
    return [n for n in names if zygote.preloadable(n)]


def course_path() -> str:
    """PYTHONPATH under which child processes import this very ``course`` package (not another install)."""
    here = str(Path(_labs.__file__).resolve().parent.parent)
    return os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])])


# ---------------------------------------------------------------------------------------------------
# 4. decide


def decide(events: list[dict], report: Report, log) -> Report:
    """Outcomes from the grading processes' events; a collected test never reported counts as crashed."""
    known: dict[str, Outcome] = {}
    position: dict[str, int] = {}  # where each test stands in its files (a group may run every n-th)
    for event in events:
        if event["event"] == "collected":
            for t in event["tests"]:
                position[t["nodeid"]] = t.get("position", len(position))
                known[t["nodeid"]] = Outcome(
                    t["nodeid"],
                    t["lab"],
                    t["points"],
                    visibility=t.get("visibility", "visible"),
                    tags=tuple(t.get("tags", ())),
                )
            if event.get("changed"):
                report.problems.append(
                    "these test files changed while grading ran, so none of their tests was "
                    "graded: " + ", ".join(Path(p).name for p in event["changed"])
                )
        elif event["event"] == "result" and event["nodeid"] in known:
            o = known[event["nodeid"]]
            o.status, o.message, o.duration = Status(event["status"]), event["message"], event["duration"]
            o.student_seconds, o.charged = event.get("student_seconds", 0.0), event.get("charged", 0.0)
            o.picture, o.picture_note = _picture(event), str(event.get("picture_note", ""))
        elif event["event"] == "stuck":
            report.problems.append(f"grading stopped: a grading process was silent for {event['seconds']:g} s")
    unreported = [o for o in known.values() if o.status == Status.CRASHED and not o.message]
    for o in unreported:
        o.message = "the grading process stopped before this test"
    if unreported or not known:
        report.problems.append(
            "the tests could not all be run (a syntax error in a test file, or a broken "
            f"install?); pytest said:\n{_tail(log)}"
        )
    report.outcomes = sorted(known.values(), key=lambda o: (o.lab, position[o.nodeid]))
    if report.budget is not None:
        spend_budgets(report.outcomes, report.budget)
    return report


def _picture(event: dict) -> bytes:
    """A result event's picture (base64 PNG, from the trusted test process), as bytes; none if malformed."""
    try:
        return base64.b64decode(event.get("picture") or "", validate=True)
    except (ValueError, TypeError):
        return b""


def spend_budgets(outcomes: list[Outcome], budget: float) -> None:
    """Each lab's budget spent in collection order: the tests after the point where it ran out are "not run".

    One process stops running a lab's tests once its budget is spent; a lab shared out between
    processes is spent by all of them, so the grade is the one a single process would give, whatever
    the number of jobs: a test past that point does not count even if another process had run it.
    """
    spent: dict[str, float] = {}
    for o in outcomes:
        before = spent.get(o.lab, 0.0)
        if before >= budget and o.status != Status.SKIPPED:
            o.status, o.charged, o.picture, o.picture_note = Status.NOT_RUN, 0.0, b"", ""
            o.message = (
                f"the lab's time budget is spent: its tests before this one that did not pass ran your code "
                f"for {before:.1f} s, and the budget is {budget:g} s for all of them together. Make the tests "
                "above that timed out or were slow pass (or fail quickly), and this one will run"
            )
        spent[o.lab] = before + o.charged


def _tail(log, lines: int = 25) -> str:
    try:
        log.flush()
        log.seek(0)
        return "\n".join(log.read().splitlines()[-lines:])
    except Exception:  # the log is diagnostics only
        return "(no output)"
