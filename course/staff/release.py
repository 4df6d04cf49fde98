"""Build the student bundle: everything a student needs, and provably no solution code."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from course import labs as _labs
from course.errors import CourseError
from course.staff import assign as _assign

# What a student gets: the library, the generated stubs, the graded tests and the tooling. Not the
# staff's own tests (tests/course): to test the tooling they train real models, with working losses.
INCLUDE = [
    "course",
    "labs",
    "notebooks",
    "tests/labs",
    "docs",
    "noxfile.py",
    "pyproject.toml",
    "README.md",
    "CONTRIBUTING.md",
    ".gitignore",
]
SKIP = {"__pycache__", ".pytest_cache"}
BUNDLE = "make-you-dangerous-student"


def _solution_snippets() -> dict[str, list[str]]:
    """For each solution file, the code inside its regions (the lines a bundle must never contain)."""
    snippets = {}
    for path in _labs.lab_files("solutions").values():
        lines = path.read_text(encoding="utf-8").splitlines()
        snippets[path.name] = [
            "\n".join(line.strip() for line in lines[r.begin : r.end - 1] if line.strip())
            for r in _assign.regions(path)
        ]
    return snippets


def leaks(folder: Path) -> list[str]:
    """Solution code found under ``folder``: marker comments, or a whole region's code verbatim."""
    texts = {p: p.read_text(encoding="utf-8", errors="replace") for p in folder.rglob("*") if p.is_file()}
    found = []
    if (folder / "solutions").exists():
        found.append("the solutions/ folder")
    snippets = _solution_snippets()
    for path, text in texts.items():
        in_labs = path.relative_to(folder).parts[0] == "labs"
        if in_labs and any(_assign.BEGIN.match(line) for line in text.splitlines()):
            found.append(f"{path.relative_to(folder)}: a BEGIN SOLUTION marker")
        flat = "\n".join(line.strip() for line in text.splitlines() if line.strip())
        for name, regions in snippets.items():
            for code in regions:
                if code and code in flat:
                    found.append(f"{path.relative_to(folder)}: a solution region of {name}")
    return found


def pack(
    out: Path,
    name: str,
    include: list[str],
    *,
    scripts: dict[str, str] | None = None,
    zip_root: str | None = None,
    what: str = "the bundle",
) -> Path:
    """Copy ``include`` (and executable ``scripts``) into ``out/name``, refuse any solution code, zip it.

    The zip's paths start with ``zip_root`` (``None``: the files sit at the zip's top, as Gradescope wants).
    """
    src, out = _labs.root(), Path(out).resolve()
    folder = out / name
    if folder.exists():
        shutil.rmtree(folder)
    for item in include:
        path = src / item
        if path.is_dir():
            shutil.copytree(path, folder / item, ignore=shutil.ignore_patterns(*SKIP))
        elif path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, folder / item)
    for script, text in (scripts or {}).items():
        (folder / script).write_text(text)
        (folder / script).chmod(0o755)
    problems = leaks(folder)
    if problems:
        shutil.rmtree(folder)
        raise CourseError(f"refusing to build; {what} would contain solution code:\n  " + "\n  ".join(problems))
    archive = out / f"{name}.zip"
    tmp = archive.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, Path(zip_root or "") / path.relative_to(folder))  # keeps the executable bits
    tmp.replace(archive)
    return archive


def build_bundle(out: Path) -> Path:
    """Write ``out/make-you-dangerous-student.zip`` (and the folder it zips); returns the zip's path."""
    if not _labs.has_solutions():
        raise CourseError("the student bundle is built from the staff repository, which has solutions/")
    stale = _assign.assign(check=True)
    if stale:
        raise CourseError("labs/ is stale (run `course assign` first): " + ", ".join(stale))
    return pack(out, BUNDLE, INCLUDE, zip_root=BUNDLE)
