"""The grader's own words, defined once: a test's :class:`Status`, its :class:`Outcome`, the
:class:`Report` of a grading, and the :class:`Settings` it ran with.

Every module of the grader and of the staff's tooling takes these from here. A setting has its default
here and nowhere else; ``COURSE_TIMEOUT``, ``COURSE_BUDGET`` and ``COURSE_SEED`` are read here only
(:meth:`Settings.from_environment`). A grading process (the trusted pytest process) is told what it needs
as one file in the snapshot, :class:`ProcessSettings`, never as command-line flags a sandbox could read
in ``/proc`` or that would need defaults of their own.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from course.errors import CourseError


class Status(enum.StrEnum):
    """A graded test's status: its value (in events and results), how the shell marks it, its heading in
    results.json, its colour in a notebook, how bad it is, and whether it is charged to the lab's budget.

    A test whose several phases (setup, call, teardown) each end differently keeps the worst ``rank``.
    A test that passed is the honest cost of the lab, so it is never charged: a correct solution cannot
    run out of budget, however slow the machine or cold the compilation cache.
    """

    mark: str
    title: str
    colour: str
    rank: int
    charged: bool

    def __new__(cls, value: str, mark: str, title: str, colour: str, rank: int, charged: bool) -> "Status":
        member = str.__new__(cls, value)
        member._value_ = value
        member.mark, member.title, member.colour, member.rank, member.charged = mark, title, colour, rank, charged
        return member

    PASSED = ("passed", "PASS", "Passed", "#1a7f37", 0, False)
    FAILED = ("failed", "FAIL", "Failed", "#cf222e", 3, True)
    NOT_ATTEMPTED = ("not attempted", "TODO", "Not attempted", "#57606a", 4, True)
    # A notebook's check before the cell that defines a function its test calls: not attempted yet, and
    # said so in words (what to run next), never as the AttributeError it is.
    NOT_DEFINED = ("not defined", "NOT YET", "Not defined yet", "#57606a", 5, True)
    ERROR = ("error", "ERROR", "Error", "#cf222e", 6, True)
    TIMED_OUT = ("timed out", "TIMEOUT", "Timed out", "#bf8700", 7, True)
    CRASHED = ("crashed", "CRASH", "Crashed", "#cf222e", 8, True)
    SKIPPED = ("skipped", "SKIP", "Skipped", "#57606a", 1, False)
    NOT_RUN = ("not run", "NOT RUN", "Not run", "#57606a", 2, False)


# ---------------------------------------------------------------------------------------------------
# Settings

BUDGET_TIMEOUTS = 3  # a lab's default budget, in test timeouts: three loops, then its other tests are not run
ISOLATIONS = ("auto", "required", "off")
TEST_SUITE_TIMEOUT_S = 300.0  # a test of the course's own suite (plain pytest): generous, for a loaded CI machine


@dataclass(frozen=True)
class Settings:
    """How to grade, chosen by whoever grades (``course grade``'s flags, ``check()``, a class run).

    Attributes:
      timeout: seconds one test may spend running the student's code before it is "timed out".
      budget: seconds a lab's tests that do not pass may spend running the student's code together,
        after which its other tests are "not run": ``"auto"`` (``BUDGET_TIMEOUTS`` x ``timeout``),
        ``"off"`` or None (no budget), or a number; :attr:`budget_s` is what it comes to.
      seed: varies every test's random inputs (0: the inputs students see when they grade themselves).
      sandbox_user: who runs the student's code: ``auto`` (``nobody`` when we are root), ``none``, a name.
      isolation: ``auto`` (each sandbox in namespaces of its own where the machine allows), ``required``
        (refuse to grade where it cannot: a class's default), ``off``.
      jobs: grading processes at once (None: one per CPU core; a class: submissions graded at once).
    """

    timeout: float = 10.0
    budget: float | str | None = "auto"
    seed: int = 0
    sandbox_user: str = "auto"
    isolation: str = "auto"
    jobs: int | None = None

    def __post_init__(self) -> None:
        if self.isolation not in ISOLATIONS:
            raise CourseError(f"--isolation {self.isolation!r}: choose one of {', '.join(ISOLATIONS)}")
        self.budget_s  # a budget that is not one is refused before anything is graded

    @property
    def budget_s(self) -> float | None:
        """The budget in seconds, None for none."""
        budget = self.budget
        if budget == "auto":
            return BUDGET_TIMEOUTS * self.timeout
        if budget is None or budget == "off":
            return None
        try:
            seconds = float(budget)
        except ValueError:
            raise CourseError(f"budget {budget!r}: give seconds (e.g. 30), auto (3 x the timeout) or off") from None
        if not seconds > 0:
            raise CourseError(f"budget {budget!r}: give a positive number of seconds, auto or off")
        return seconds

    def replace(self, **changes) -> "Settings":
        """These settings with ``changes``; a change of None keeps the setting (an option not given)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_environment(cls, environ=os.environ, *, base: Settings | None = None, **changes) -> "Settings":
        """``base`` (default: the defaults), then ``$COURSE_TIMEOUT``, ``$COURSE_BUDGET`` and ``$COURSE_SEED``,
        then ``changes``."""
        read = {"timeout": ("COURSE_TIMEOUT", float), "budget": ("COURSE_BUDGET", str), "seed": ("COURSE_SEED", int)}
        found = {}
        for name, (variable, kind) in read.items():
            if environ.get(variable):
                try:
                    found[name] = kind(environ[variable])
                except ValueError:
                    raise CourseError(f"${variable}={environ[variable]!r} is not a {kind.__name__}") from None
        return (base or cls()).replace(**found).replace(**changes)

    @classmethod
    def for_class(cls, **changes) -> "Settings":
        """A class run's defaults: two submissions at once, and isolation required."""
        return cls(isolation="required", jobs=2).replace(**changes)


@dataclass(frozen=True)
class ProcessSettings:
    """What a trusted grading process is told, as one file in the snapshot that only the grader can
    read (the hidden seed is among it; a command line is visible to every process in ``/proc``).

    A plain ``pytest`` run of the course's tests has no such file and grades with :meth:`test_suite`'s.
    """

    timeout: float = TEST_SUITE_TIMEOUT_S
    budget: float | None = None  # seconds; None: no budget
    seed: int = 0
    sandbox_user: str = "auto"  # resolved by the grader: a name, or none
    isolate: bool = False
    sandbox_cache: str | None = None  # the sandboxes' JAX compilation cache (None: the user's default)
    warm_cache: str | None = None  # the staff's cache that isolated sandboxes only read (a class)
    locations: str | None = None  # how messages name the copies graded (course.grader.locations)
    not_graded: str | None = None  # {lab: why} for labs whose file could not be read
    manifest: str | None = None  # the graded test files' hashes, taken before any student code ran

    @classmethod
    def test_suite(cls) -> "ProcessSettings":
        return cls()

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(dataclasses.asdict(self)), encoding="utf-8")
        path.chmod(0o600)
        return path

    @classmethod
    def read(cls, path: str | os.PathLike) -> "ProcessSettings":
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


# ---------------------------------------------------------------------------------------------------
# Outcomes


@dataclass
class Outcome:
    """One graded test's result."""

    nodeid: str
    lab: str
    points: float
    status: Status = Status.CRASHED
    message: str = ""
    duration: float = 0.0
    visibility: str = "visible"  # Gradescope's: visible, hidden, after_due_date, after_published
    tags: tuple[str, ...] = ()
    student_seconds: float = 0.0  # of ``duration``, the time the student's code ran (the sandbox's clock)
    charged: float = 0.0  # what this test took from its lab's time budget (tests that did not pass)
    picture: bytes = b""  # a failed comparison of image-like arrays drawn (PNG: expected | got | difference)
    picture_note: str = ""  # or why it could not be drawn (course.grader.picture)

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    @property
    def earned(self) -> float:
        return self.points if self.status == Status.PASSED else 0.0

    @property
    def name(self) -> str:
        return self.nodeid.split("::", 1)[-1]


@dataclass
class Report:
    """Every graded test's outcome, lab by lab in collection order."""

    impl: str
    outcomes: list[Outcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what stopped whole files from being graded
    seed: int = 0
    duration: float = 0.0  # seconds the whole grading took
    notes: list[str] = field(default_factory=list)  # what was done to the submission (notebooks converted)
    timeout: float | None = None  # seconds a test may spend in the student's code
    budget: float | None = None  # seconds a lab's tests that do not pass may spend there together; None: no budget
    isolation: str = ""  # how the sandboxes were kept apart: "namespaces", or "none: why"

    def by_lab(self) -> dict[str, list[Outcome]]:
        out: dict[str, list[Outcome]] = {}
        for o in self.outcomes:
            out.setdefault(o.lab, []).append(o)
        return out

    @property
    def score(self) -> float:
        return sum(o.earned for o in self.outcomes)

    @property
    def max_score(self) -> float:
        return sum(o.points for o in self.outcomes)

    def budget_spent(self) -> dict[str, float]:
        """Each lab's seconds charged to its time budget."""
        return {lab: round(sum(o.charged for o in outcomes), 3) for lab, outcomes in self.by_lab().items()}
