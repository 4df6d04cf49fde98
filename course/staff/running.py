"""Run a lab's demo: import the lab (solution or student file) and call its ``demo(out)``."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from course import labs as _labs
from course.errors import CourseError


def run_lab(name: str, *, impl: str | os.PathLike, out: Path, **options) -> list[Path]:
    """Run one lab's demo, writing its figures under ``out``; returns the files written.

    ``options`` (e.g. ``quick=True``, ``dataset="fashion_mnist"``) go to the demo, which must accept them.
    """
    os.environ.setdefault("MPLBACKEND", "Agg")
    module = _labs.load_lab(name, impl)
    if not hasattr(module, "demo"):
        raise CourseError(f"{_labs.lab_path(name, impl)} has no demo(out) function")
    accepted = inspect.signature(module.demo).parameters
    if "quick" not in accepted:  # --quick/--full is a hint for the labs with long demos; others ignore it
        options.pop("quick", None)
    if unknown := [k for k in options if k not in accepted]:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise CourseError(f"{_labs.lab_id(name)}'s demo has no {flags} option")
    out.mkdir(parents=True, exist_ok=True)
    try:
        paths = module.demo(out, **options)
    except NotImplementedError as exc:
        raise CourseError(
            f"{_labs.lab_id(name)}'s demo needs `{exc}`, which is still a stub in {impl}; fill it in, "
            "or run the instructor's version with --impl solutions"
        ) from exc
    return [Path(p) for p in paths or []]
