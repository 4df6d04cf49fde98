"""Where the labs live, and how to import one implementation of a lab by file path.

A lab is one file ``labNN_topic.py``. The same file name exists in ``solutions/`` (complete, the single
source of truth) and in ``labs/`` (generated stubs that students fill in). Which one runs is the
*implementation*: ``"labs"``, ``"solutions"`` or a path to any folder of lab files.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from course.errors import CourseError

IMPLS = ("labs", "solutions")
STUB_MESSAGE = re.compile(r"^(lab\d{2}): ([\w.]+)$")  # a stub's NotImplementedError: "not attempted"
_LAB_FILE = re.compile(r"^(lab\d{2})_\w+\.py$")
_TEST_FILE = re.compile(r"^test_(lab\d{2})(?:_\w+)?\.py$")


def root() -> Path:
    """The course checkout: ``$COURSE_ROOT``, else the folder that holds this package."""
    if env := os.environ.get("COURSE_ROOT"):
        return Path(env).resolve()
    return Path(__file__).resolve().parent.parent


def graded_tests_dir() -> Path:
    """The folder of graded tests ``test_labNN_*.py``: ``$COURSE_TESTS_DIR``, else ``tests/labs`` of the checkout."""
    return Path(os.environ.get("COURSE_TESTS_DIR") or root() / "tests" / "labs").resolve()


def has_solutions() -> bool:
    """True in the staff repository, False in a student bundle."""
    return (root() / "solutions").is_dir()


def default_impl() -> str:
    """Solutions where they exist (the staff repository), else the student's labs."""
    return "solutions" if has_solutions() else "labs"


def impl_dir(impl: str | os.PathLike) -> Path:
    """The folder holding the lab files of an implementation name or path."""
    path = root() / impl if str(impl) in IMPLS else Path(impl)
    if not path.is_dir():
        hint = (
            "this looks like a student bundle, which ships no solutions; use --impl labs"
            if str(impl) == "solutions"
            else "pass --impl labs, --impl solutions or the path of a folder of labNN_*.py files"
        )
        raise CourseError(f"no lab folder {path}: {hint}")
    return path.resolve()


def lab_files(impl: str | os.PathLike = "solutions") -> dict[str, Path]:
    """``{"lab01": Path(".../lab01_perceptron.py"), ...}`` in lab order."""
    found = {}
    for path in sorted(impl_dir(impl).glob("lab*.py")):
        if (lid := lab_of_file(path)) and path.is_file():  # a folder named like one is not a lab
            found[lid] = path
    return found


def lab_of_file(path: str | os.PathLike) -> str | None:
    """The lab a lab file is: ``.../lab03_approximation.py`` -> ``"lab03"``, wherever it is; else None."""
    m = _LAB_FILE.match(Path(path).name)
    return m.group(1) if m else None


def is_lab_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a lab file (``labNN_topic.py``), wherever it is."""
    return lab_of_file(path) is not None


def lab_of(test_file: str | os.PathLike) -> str | None:
    """The lab a graded test file is about: ``tests/labs/test_lab03_approximation.py`` -> ``"lab03"``."""
    m = _TEST_FILE.match(Path(test_file).name)
    return m.group(1) if m else None


def graded_tests(tests_dir: Path | None = None) -> dict[str, list[Path]]:
    """``{"lab01": [test files], ...}``: every lab's graded tests in ``tests_dir`` (default :func:`graded_tests_dir`)."""
    found: dict[str, list[Path]] = {}
    for path in sorted((tests_dir or graded_tests_dir()).glob("test_lab*.py")):
        if lid := lab_of(path):
            found.setdefault(lid, []).append(path)
    return found


@dataclass(frozen=True)
class Lab:
    """One lab, resolved once from any of its names (:func:`lab`) and passed along."""

    id: str  # "lab01"
    title: str  # the first line of its docstring
    stub: Path | None  # labs/lab01_perceptron.py, the student's; None where the course has none
    solution: Path | None  # solutions/lab01_perceptron.py; None in a student bundle
    tests: tuple[Path, ...]  # its graded test files


def lab(name: str, *, tests_dir: Path | None = None) -> Lab:
    """The lab ``name`` names (``"1"``, ``"lab01"``, ``"lab01_perceptron"``), with its files."""
    lid = lab_id(name)
    stub, solution = (_files_or_none(impl).get(lid) for impl in IMPLS)
    title = lab_title(stub or solution) if stub or solution else lid
    return Lab(lid, title, stub, solution, tuple(graded_tests(tests_dir).get(lid, ())))


def _files_or_none(impl: str) -> dict[str, Path]:
    return lab_files(impl) if (root() / impl).is_dir() else {}


def lab_id(name: str) -> str:
    """Normalise ``"1"``, ``"01"``, ``"lab1"``, ``"lab01_perceptron"`` to ``"lab01"``."""
    m = re.fullmatch(r"(?:lab)?(\d{1,2})(?:_\w*)?(?:\.py)?", name.strip().lower())
    if not m:
        raise CourseError(f"{name!r} is not a lab name; try one of `course list`, e.g. lab01")
    return f"lab{int(m.group(1)):02d}"


def lab_path(name: str, impl: str | os.PathLike) -> Path:
    lid = lab_id(name)
    files = lab_files(impl)
    if lid not in files:
        raise CourseError(f"there is no {lid} in {impl_dir(impl)}; the labs are: {', '.join(files) or 'none'}")
    return files[lid]


def lab_title(path: Path) -> str:
    """The first line of a lab's module docstring, read without importing (and so without JAX).

    A file that does not parse or decode (a student's, mid-edit) has its name for a title: grading it
    says what is wrong with it, test by test.
    """
    try:
        doc = ast.get_docstring(ast.parse(path.read_bytes()))
    except (SyntaxError, ValueError, OSError, RecursionError, MemoryError):  # ValueError: bad bytes, a NUL
        return path.stem
    lines = doc.strip().splitlines() if doc else []
    return lines[0] if lines else path.stem


def load_lab(name: str, impl: str | os.PathLike) -> ModuleType:
    """Import one implementation of a lab from its file, without running its demo.

    Each (file, implementation) pair gets its own module name, so the stub and the solution of the same
    lab can be imported side by side in one process.
    """
    return import_file(lab_path(name, impl))


def import_file(path: str | os.PathLike) -> ModuleType:
    """Import one lab file as a module of its own (``__name__`` is not ``"__main__"``, so no demo runs)."""
    path = Path(path)
    tag = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    mod_name = f"_course_{path.stem}_{tag}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[mod_name]
        raise
    return module
