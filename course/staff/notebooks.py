"""Notebooks: the labs as ``.ipynb`` for Jupyter, Colab and Binder, written from ``labs/``.

* ``course notebooks`` writes ``notebooks/labNN_*.ipynb`` from ``labs/`` (committed, like ``labs/``:
  Colab and Binder open them from the repository) and the README's Colab/Binder links;
  ``--check`` only says whether they are stale; ``--solutions`` also executes the solution notebooks,
  outputs and figures inline, into ``solution-notebooks/`` (not committed).
* Every notebook starts with a setup cell: where the course is not importable (Colab, a bare Jupyter)
  it installs it without replacing the JAX already there; where it is, the cell does nothing.
* After each section whose functions the student writes, a cell calls ``check`` for them
  (:func:`course.grader.check.check`, which grades the kernel's own cells).

The ``.py`` files stay the single source: nothing here is edited by hand.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tomllib
from pathlib import Path

from course import labs as _labs
from course.errors import CourseError
from course.grader.notebook import SETUP_MARKER

FOLDER = "notebooks"
SOLUTIONS_FOLDER = "solution-notebooks"
CHECK_MARKER = "# Check your work:"
STUB = re.compile(r'raise NotImplementedError\("(lab\d{2}): ([\w.]+)"\)')


# ---------------------------------------------------------------------------------------------------
# settings and links


def settings() -> dict[str, str]:
    """``[tool.course]`` of pyproject.toml: ``repository`` (owner/name on GitHub) and ``branch``."""
    path = _labs.root() / "pyproject.toml"
    conf = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("course", {}) if path.exists() else {}
    return {"repository": conf.get("repository", "OWNER/REPO"), "branch": conf.get("branch", "main")}


def colab_url(notebook: str, conf: dict[str, str] | None = None) -> str:
    conf = conf or settings()
    return f"https://colab.research.google.com/github/{conf['repository']}/blob/{conf['branch']}/{FOLDER}/{notebook}"


def binder_url(notebook: str, conf: dict[str, str] | None = None) -> str:
    conf = conf or settings()
    return f"https://mybinder.org/v2/gh/{conf['repository']}/{conf['branch']}?labpath={FOLDER}%2F{notebook}"


# ---------------------------------------------------------------------------------------------------
# the setup cell

SETUP = """\
{marker} on Colab or Binder, install the course (once); on your own machine, where it is installed, nothing.
import importlib.util

if importlib.util.find_spec("course") is None:
    import os, subprocess, sys
    from importlib.metadata import PackageNotFoundError, version

    # The course's own checkout when this notebook sits in one, else a clone of the course's repository.
    src = os.path.abspath("..") if os.path.isfile("../course/__init__.py") else os.path.abspath("{name}")
    if not os.path.isdir(src):
        url = os.environ.get("COURSE_GIT", "https://github.com/{repository}.git")
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", "{branch}", url, src], check=True)
    # Keep the JAX already installed (Colab's GPU/TPU build): pin it, so pip fits the rest around it.
    pins = []
    for dist in ("jax", "jaxlib"):
        try:
            pins.append(f"{{dist}}=={{version(dist)}}")
        except PackageNotFoundError:
            pass
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", src, *pins], check=True)
    sys.path.insert(0, src)  # an editable install is seen by new processes; this kernel needs the path
    importlib.invalidate_caches()
    import jax

    print(f"course installed from {{src}}; JAX {{jax.__version__}} sees {{jax.devices()}}")"""
WARM_UP = """
# The grader starts in the background, so that the check cells answer in about a second.
import course

course.warm_up({lab})"""


def setup_source(conf: dict[str, str] | None = None, lab: str | None = None) -> str:
    """The setup cell: install the course where it is missing; then (for a lab's notebook) warm the grader."""
    conf = conf or settings()
    source = SETUP.format(marker=SETUP_MARKER, name=conf["repository"].split("/")[-1], **conf)
    return source + (WARM_UP.format(lab=json.dumps(lab)) if lab else "")


# ---------------------------------------------------------------------------------------------------
# building notebooks from lab files


def _check_source(lab: str, names: list[str]) -> str:
    args = ", ".join(json.dumps(n) for n in [lab, *names])
    return (
        f"{CHECK_MARKER} the graded tests of the functions above, on the code in this notebook "
        "(the same verdict as `course grade`).\n"
        f"from course import check\n\ncheck({args})"
    )


def build(path: Path, *, conf: dict[str, str] | None = None, checks: bool = True):
    """The notebook of one lab file (stub or solution): setup cell, the lab's cells, check cells.

    A check cell follows each section (the code cells up to the next markdown heading) that holds
    student work, i.e. stub regions in ``labs/``; for a solution file the regions are found with
    ``course assign``'s parser. Cell ids are fixed, so a rebuild changes nothing when the lab did not.
    """
    import jupytext
    import nbformat

    lab = _labs.lab_id(path.stem)
    nb = jupytext.read(path)
    work = _student_work(path)  # {1-based line: function}
    cells, pending = [nbformat.v4.new_code_cell(setup_source(conf, lab))], []
    positions = _cell_lines(path.read_text(encoding="utf-8"), len(nb.cells))
    for i, cell in enumerate(nb.cells):
        start, end = positions[i]
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("#") and pending and checks:
            cells.append(nbformat.v4.new_code_cell(_check_source(lab, pending)))
            pending = []
        cell = copy.deepcopy(cell)
        cell.metadata = {}
        cells.append(cell)
        if cell.cell_type == "code":
            pending = list(dict.fromkeys(pending + [f for ln, f in sorted(work.items()) if start <= ln <= end]))
    if pending and checks:
        cells.append(nbformat.v4.new_code_cell(_check_source(lab, pending)))
    out = nbformat.v4.new_notebook()
    out.cells = cells
    for n, cell in enumerate(out.cells):
        cell.id = f"{lab}-{n:02d}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    if out.cells[0].source.startswith(SETUP_MARKER):
        out.cells[0].metadata = {"tags": ["course-setup"]}
    out.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
        "course": {"lab": lab, "source": f"{path.parent.name}/{path.name}"},
    }
    return out


def _student_work(path: Path) -> dict[int, str]:
    """Lines of student work in a lab file and their function: stub lines, or solution regions."""
    text = path.read_text(encoding="utf-8")
    found = {no: m.group(2).split(".")[0] for no, line in enumerate(text.splitlines(), 1) if (m := STUB.search(line))}
    if not found and "# BEGIN SOLUTION" in text:
        from course.staff.assign import regions

        found = {r.begin: r.function.split(".")[0] for r in regions(path)}
    return found


def _cell_lines(text: str, count: int) -> list[tuple[int, int]]:
    """The 1-based line span of each of the ``count`` cells of a percent-format file."""
    starts = [no for no, line in enumerate(text.splitlines(), 1) if line.startswith("# %%")]
    if len(starts) != count:  # the course's labs start every cell with a marker
        raise CourseError(f"expected {count} `# %%` cell markers, found {len(starts)}")
    ends = [s - 1 for s in starts[1:]] + [len(text.splitlines())]
    return list(zip(starts, ends))


def dumps(nb) -> str:
    import nbformat

    return nbformat.writes(nb) + "\n"


def write_student_notebooks(*, check: bool = False, labs_dir: Path | None = None, out: Path | None = None) -> list[str]:
    """Write (or with ``check``, compare) ``notebooks/`` from ``labs/``; returns stale or written names."""
    labs_dir = labs_dir or _labs.impl_dir("labs")
    out = out or _labs.root() / FOLDER
    conf = settings()
    wanted = {p.with_suffix(".ipynb").name: dumps(build(p, conf=conf)) for p in _labs.lab_files(labs_dir).values()}
    changed = []
    for name, text in wanted.items():
        path = out / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            changed.append(f"{FOLDER}/{name}")
            if not check:
                out.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    changed += [f"{FOLDER}/{p.name} (no lab file)" for p in sorted(out.glob("lab*.ipynb")) if p.name not in wanted]
    return changed


# ---------------------------------------------------------------------------------------------------
# the README's lab table

_ROW = re.compile(r"^\| `(lab\d{2}_\w+)` \|")


def readme_with_links(text: str, notebooks: list[str], conf: dict[str, str] | None = None) -> str:
    """The README with its lab table's last column (Colab and Binder links) regenerated.

    The topics are written by hand; a lab with no row gets one, with its title as the topic.
    """
    conf = conf or settings()
    lines = text.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("| lab | topic |")), None)
    if header is None:
        raise CourseError("README.md has no lab table (a line starting with `| lab | topic |`)")
    end = header + 2
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    rows = {}
    for line in lines[header + 2 : end]:
        if m := _ROW.match(line):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            rows[m.group(1)] = cells[1]
    titles = (
        {p.stem: _labs.lab_title(p) for p in _labs.lab_files("labs").values()}
        if (_labs.root() / "labs").is_dir()
        else {}
    )
    table = ["| lab | topic | open |", "| --- | --- | --- |"]
    for nb in notebooks:
        stem = nb.removesuffix(".ipynb")
        topic = rows.get(stem) or titles.get(stem, "")
        table.append(f"| `{stem}` | {topic} | [Colab]({colab_url(nb, conf)}) · [Binder]({binder_url(nb, conf)}) |")
    return "\n".join(lines[:header] + table + lines[end:]) + "\n"


def write_readme(*, check: bool = False) -> list[str]:
    path = _labs.root() / "README.md"
    if not path.exists():
        return []
    names = [p.with_suffix(".ipynb").name for p in _labs.lab_files("labs").values()]
    text = path.read_text(encoding="utf-8")
    new = readme_with_links(text, names)
    if new == text:
        return []
    if not check:
        path.write_text(new, encoding="utf-8")
    return ["README.md (the lab table's Colab/Binder links)"]


# ---------------------------------------------------------------------------------------------------
# executing notebooks


def execute(nb, *, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600, allow_errors: bool = False):
    """Run every cell in a fresh Jupyter kernel (this Python's), outputs inline; returns the notebook.

    Raises nbclient's ``CellExecutionError`` at the first failing cell unless ``allow_errors``.
    """
    from nbclient import NotebookClient

    kernel_env = {**os.environ, **(env or {})}
    kernel_env.pop("MPLBACKEND", None)  # the kernel's own inline backend shows the figures
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute(env=kernel_env)
    return nb


def build_solution_notebooks(
    out: Path, *, quick: bool = False, labs: list[str] | None = None, checks: bool = True, timeout: int = 1800
) -> list[Path]:
    """Execute each solution notebook into ``out`` (figures under ``out/figures/labNN``); returns the paths."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    files = _labs.lab_files("solutions")
    wanted = [_labs.lab_id(x) for x in labs] if labs else list(files)
    env = {"COURSE_QUICK": "1"} if quick else {}
    written = []
    for lid in wanted:
        nb = execute(build(files[lid], checks=checks), cwd=out, env=env, timeout=timeout)
        path = out / files[lid].with_suffix(".ipynb").name
        path.write_text(dumps(nb), encoding="utf-8")
        written.append(path)
    return written
