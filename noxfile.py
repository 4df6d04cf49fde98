"""Sessions for students (grade), instructors (demo, tests, notebooks) and course staff (assign, release, lint).

Run ``nox -l`` to list them. Everything after ``--`` is passed through, e.g. ``nox -s grade -- lab02``.
"""

from __future__ import annotations

from pathlib import Path

import nox

PYPROJECT = nox.project.load_toml("pyproject.toml")

# uv builds the environment in seconds where pip takes most of a minute; either works.
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests"]


def _install(session: nox.Session, *groups: str, bytecode: bool = True) -> None:
    deps = [d for g in groups for d in nox.project.dependency_groups(PYPROJECT, g)]
    # Compiled to bytecode once, as pip does and uv does not by default: the grader's sandboxes never write
    # .pyc files (PYTHONDONTWRITEBYTECODE), so without them every sandbox compiles JAX's modules again.
    session.install("-e", ".", *deps, env={"UV_COMPILE_BYTECODE": "1" if bytecode else None})


@nox.session
def grade(session: nox.Session) -> None:
    """Grade your labs (all, or those named): nox -s grade -- lab02 [--results results.json]."""
    _install(session)
    session.run("python", "-m", "course", "grade", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite against the solutions, but the notebooks run end to end (nox -s e2e); the slowest listed."""
    # Bytecode only for what the suite imports, written as it first imports it (even where the shell has
    # PYTHONDONTWRITEBYTECODE set), not for all of the environment at install: about a quarter of its modules.
    _install(session, "test", bytecode=False)
    # A worker per core (pytest-xdist), each test file on one worker (its module-scoped fixtures made once).
    workers = ["-n", "auto", "--dist", "loadfile"]
    pytest = ["python", "-m", "pytest", *workers, "--durations=30", "--ignore=tests/e2e", *session.posargs]
    session.run(*pytest, env={"PYTHONDONTWRITEBYTECODE": None})


@nox.session
def e2e(session: nox.Session) -> None:
    """Every lab's notebook run in a Jupyter kernel, the setup cell as on Colab, the site in Chromium (CI runs it)."""
    _install(session, "test", "site")
    session.run("python", "-m", "pytest", "--durations=10", "tests/e2e", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Every lab's demo, figures into figures/ (on a CPU lab10/lab11 quick: nox -s demo -- all --full)."""
    _install(session)
    session.run("python", "-m", "course", "run", *(session.posargs or ["all", "--out", "figures"]))


@nox.session(default=False)
def site(session: nox.Session) -> None:
    """The course's website into build/site/, offline; the demos' figures cached (nox -s site -- --help)."""
    _install(session, "site")
    session.run("python", "-m", "course", "site", *session.posargs)


@nox.session(default=False)
def assign(session: nox.Session) -> None:
    """Regenerate the student stubs in labs/ from solutions/ (pass --check to only verify)."""
    _install(session)
    session.run("python", "-m", "course", "assign", *session.posargs)


@nox.session(default=False)
def notebooks(session: nox.Session) -> None:
    """Build notebooks/ from labs/ and execute the solution notebooks into solution-notebooks/ (-- --quick)."""
    _install(session, "notebooks")
    session.run("python", "-m", "course", "notebooks", "--solutions", *session.posargs)


@nox.session(default=False)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check, configured in pyproject.toml ([tool.ruff]); -- --fix to mend."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    if "--fix" in session.posargs:
        session.run("ruff", "check", "--fix", ".")
        session.run("ruff", "format", ".")
        return
    session.run("ruff", "check", *(session.posargs or ["."]))
    session.run("ruff", "format", "--check", *(session.posargs or ["."]))


@nox.session(default=False)
def gpu(session: nox.Session) -> None:
    """The instructors' GPU report (lab 10, lab 11, per-backend choices): nox -s gpu -- --out gpu-report [--part mnist]."""
    if not Path("benchmarks").is_dir():
        session.error("benchmarks/ is in the staff repository, not in the student bundle")
    _install(session, "bench")
    session.run("python", "benchmarks/gpu.py", *session.posargs)  # --out gpu-report unless told


@nox.session(default=False)
def release(session: nox.Session) -> None:
    """Build the student bundle dist/make-you-dangerous-student.zip, with no solution code in it."""
    _install(session)
    session.run("python", "-m", "course", "release", *session.posargs)


@nox.session(default=False)
def gradescope(session: nox.Session) -> None:
    """Build the Gradescope autograder zip: nox -s gradescope -- --seed 1234 [lab01 ...]."""
    _install(session)
    session.run("python", "-m", "course", "gradescope", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Every benchmarks/bench_*.py, or those named, tables into benchmarks/README.md: nox -s bench -- cnn --train 6400."""
    if not Path("benchmarks").is_dir():
        session.error("benchmarks/ is in the staff repository, not in the student bundle")
    _install(session, "bench")
    args = list(session.posargs)
    first_flag = next((i for i, a in enumerate(args) if a.startswith("-")), len(args))
    names, flags = args[:first_flag], args[first_flag:]  # script names first, then their flags
    scripts = [p for p in sorted(Path("benchmarks").glob("bench_*.py")) if not names or any(n in p.stem for n in names)]
    if not scripts:
        session.error(f"no benchmarks/bench_*.py matches {names}")
    for script in scripts:  # each script's tables replace its section of benchmarks/README.md
        session.log(f"== {script}")
        session.run("python", "benchmarks/record.py", str(script), *flags)
