"""Run one benchmark script and keep its tables in benchmarks/README.md, with when, where and what ran.

    python benchmarks/record.py benchmarks/bench_grading.py --loop-only --repeat 5

``nox -s bench`` calls this for every script. The script's output is shown as it comes and, when the
script succeeds, replaces that script's section of ``benchmarks/README.md`` (the other sections are
kept), headed by the command, the date, the machine and the versions of Python and the libraries. A
figure quoted in the docs comes from these tables; nothing here is edited by hand.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"
LIBRARIES = ("jax", "jaxlib", "flax", "optax", "numpy", "torch")
TITLE = """# Benchmark tables

Written by `python -m nox -s bench` (`benchmarks/record.py`): each section is the last successful run
of one script, with its command, date, machine and versions. These machines are shared and noisy, so
the tables compare side by side, in one run, as ratios. Do not edit by hand; rerun the script.
"""
SECTION = re.compile(r"^## `(bench_\w+)\.py`$", re.M)


def versions() -> str:
    found = []
    for name in LIBRARIES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join([f"Python {platform.python_version()}", *found])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:  # Linux names the CPU model here
        model = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
        cpu = model.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}); load average {load} before"


def section(script: Path, args: list[str], output: str, seconds: float) -> str:
    command = " ".join(["python", f"benchmarks/{script.name}", *args])
    when = time.strftime("%Y-%m-%d %H:%M %Z")
    return (
        f"## `{script.stem}.py`\n\n`{command}` — {when}, {seconds:.0f} s\n\n"
        f"- machine: {machine()}\n- versions: {versions()}\n\n```text\n{output.rstrip()}\n```\n"
    )


def update(text: str, name: str, new: str) -> str:
    """``text`` (README.md) with the section of ``name`` replaced by ``new``, sections in name order."""
    parts = SECTION.split(text)
    sections = {parts[i]: f"## `{parts[i]}.py`{parts[i + 1]}".rstrip() + "\n" for i in range(1, len(parts), 2)}
    sections[name] = new
    return TITLE + "".join(f"\n{sections[k]}" for k in sorted(sections))


def main(argv: list[str], readme: Path = README) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    script, args = Path(argv[0]), argv[1:]
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, text=True, bufsize=1)
    lines = []
    for line in proc.stdout:  # shown as it comes: a long benchmark shows its progress
        sys.stdout.write(line)
        lines.append(line)
    if proc.wait() != 0:
        print(f"{script.name} failed (exit {proc.returncode}); {readme} not changed", file=sys.stderr)
        return proc.returncode
    old = readme.read_text(encoding="utf-8") if readme.exists() else TITLE
    readme.write_text(update(old, script.stem, section(script, args, "".join(lines), time.perf_counter() - start)))
    print(f"(the tables are in {readme})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
