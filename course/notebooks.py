"""Notebooks: the labs as ``.ipynb`` for Jupyter, Colab and Binder, and notebooks back into labs for grading.

* ``course notebooks`` writes ``notebooks/labNN_*.ipynb`` from ``labs/`` (committed, like ``labs/``:
  Colab and Binder open them from the repository) and the README's Colab/Binder links;
  ``--check`` only says whether they are stale; ``--solutions`` also executes the solution notebooks,
  outputs and figures inline, into ``solution-notebooks/`` (not committed).
* Every notebook starts with a setup cell: where the course is not importable (Colab, a bare Jupyter)
  it installs it without replacing the JAX already there; where it is, the cell does nothing.
* After each section whose functions the student writes, a cell calls :func:`check` for them.
* :func:`check` grades the kernel's own cells, made into a lab module by the grader's
  :func:`course.grader.notebook.module_source`, as a submitted ``.ipynb`` is.

The ``.py`` files stay the single source: nothing here is edited by hand.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import tomllib
from pathlib import Path

from course import labs as _labs
from course.errors import CourseError
from course.grader.notebook import SETUP_MARKER, convert, module_source

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
        from course.assign import regions

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


# ---------------------------------------------------------------------------------------------------
# checking from inside a notebook


def tests_for(test_file: Path, functions: list[str]) -> list[str]:
    """The test functions of ``test_file`` that use any of ``functions``: ``lab.f`` in their body or in a
    module-level helper they name (transitively), or ``"f"`` in their decorators (parametrized names)."""
    tree = ast.parse(test_file.read_text(encoding="utf-8"))
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        defs.update({f"{cls.name}::{n.name}": n for n in cls.body if isinstance(n, ast.FunctionDef)})

    # Module-level constants a decorator may name: @pytest.mark.parametrize("name", list(REFERENCE)).
    consts = {
        tgt.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        for tgt in node.targets
        if isinstance(tgt, ast.Name)
    }

    def strings(node, seen: set[str]) -> set[str]:
        found = set()
        for sub in ast.walk(node):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub.value.isidentifier():
                found.add(sub.value)
            elif isinstance(sub, ast.Name) and sub.id in consts and sub.id not in seen:
                seen.add(sub.id)
                found |= strings(consts[sub.id], seen)
        return found

    def uses(node, seen: set[str]) -> set[str]:
        found = set().union(*(strings(d, set()) for d in node.decorator_list))
        for sub in ast.walk(node):
            if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == "lab":
                found.add(sub.attr)
            elif isinstance(sub, ast.Name) and sub.id in defs and sub.id not in seen:
                seen.add(sub.id)
                found |= uses(defs[sub.id], seen)
        return found

    wanted = {f.split(".")[0] for f in functions}
    return [
        name.split("::")[-1]
        for name, node in defs.items()
        if name.split("::")[-1].startswith("test") and uses(node, {name}) & wanted
    ]


_COLOURS = {"PASS": "#1a7f37", "FAIL": "#cf222e", "ERROR": "#cf222e", "CRASH": "#cf222e", "TIMEOUT": "#bf8700"}


class CheckResult:
    """What :func:`check` returns: the grader's lines (plain text), a table in Jupyter; ``.report`` holds the outcomes."""

    def __init__(self, report, text: str, title: str = ""):
        self.report, self.text, self.title = report, text, title

    @property
    def score(self) -> float:
        return self.report.score if self.report is not None else 0.0

    @property
    def max_score(self) -> float:
        return self.report.max_score if self.report is not None else 0.0

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        """One row a test (test, status, points, message), as Jupyter shows a cell's result."""
        from html import escape

        from course.grader.report import MARKS

        if self.report is None:
            return f"<pre>{escape(self.text)}</pre>"
        cell = 'style="text-align:left;vertical-align:top;padding:2px 8px"'
        rows = []
        for lab, outcomes in self.report.by_lab().items():
            earned, possible = sum(o.earned for o in outcomes), sum(o.points for o in outcomes)
            head = escape(f"{lab} {self.title}".strip())
            rows.append(f'<tr><th {cell} colspan="4">{head} — {earned:g}/{possible:g} points</th></tr>')
            for o in outcomes:
                mark = MARKS[o.status]
                colour = _COLOURS.get(mark, "#57606a")
                message = "" if o.status == "passed" else escape(o.message)
                rows.append(
                    f"<tr><td {cell}><code>{escape(o.name)}</code></td>"
                    f'<td {cell}><b style="color:{colour}">{mark}</b></td>'
                    f"<td {cell}>{o.earned:g}/{o.points:g}</td>"
                    f'<td {cell}><pre style="margin:0;white-space:pre-wrap">{message}</pre></td></tr>'
                )
        extra = [f"NOTE: {n}" for n in self.report.notes] + [f"PROBLEM: {p}" for p in self.report.problems]
        foot = "".join(f"<div>{escape(line)}</div>" for line in [*extra, self.text.splitlines()[-1]])
        header = "".join(f"<th {cell}>{h}</th>" for h in ("test", "status", "points", "message"))
        return f'<div class="course-check"><table><tr>{header}</tr>{"".join(rows)}</table>{foot}</div>'


class NotChecked:
    """What :func:`check` gives while a notebook is being graded: nothing is checked, and every use of it
    (``res.score``, ``print(res)``, ``assert check(...).score == 17``) is harmless."""

    def __repr__(self) -> str:
        return "(check() does nothing while this notebook is being graded)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __getattr__(self, name: str) -> "NotChecked":
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __call__(self, *args, **kwargs) -> "NotChecked":
        return self

    def __getitem__(self, key) -> "NotChecked":
        return self

    def __iter__(self):
        return iter(())

    def __bool__(self) -> bool:
        return True

    def __float__(self) -> float:
        return 0.0

    def __int__(self) -> int:
        return 0

    def _same(self, *args) -> "NotChecked":
        return self

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _same
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _same
    __hash__ = object.__hash__


def kernel_cells() -> list[tuple[str, str]]:
    """The code this IPython kernel has run, cell by cell, in the order it ran, as ``("Cell In[n]", source)``."""
    try:
        from IPython import get_ipython
    except ImportError:
        get_ipython = None
    shell = get_ipython() if get_ipython else None
    if shell is None:
        raise CourseError(
            "check() reads the cells this notebook has run; outside a notebook, pass notebook=PATH "
            "or run `course grade`"
        )
    history = shell.history_manager.input_hist_raw
    return [(f"Cell In[{n}]", src) for n, src in enumerate(history) if n and src.strip()]


def check(
    lab: str, *functions: str, notebook: str | os.PathLike | None = None, timeout: float | None = None
) -> CheckResult | NotChecked:
    """Grade this notebook's current code for ``lab`` (or only the tests of ``functions``) and show it.

    The code is what the kernel has run (``notebook=`` reads a saved ``.ipynb`` instead), made into a
    lab module as ``course grade`` makes a submitted notebook, and graded by the same grader; messages
    name the cell and line (``Cell In[14], line 3``). Set ``COURSE_CHECK=0`` to skip checks (e.g. to
    run every cell quickly). ``timeout``: seconds per test (default ``$COURSE_TIMEOUT``, else 10, as
    ``course grade``). While the notebook itself is graded (in the sandbox), it does nothing.
    """
    import tempfile

    from course.grader import grade
    from course.grader.locations import Source
    from course.grader.report import render

    if os.environ.get("COURSE_SANDBOX") == "1":
        return NotChecked()
    lid = _labs.lab_id(lab)
    timeout = float(os.environ.get("COURSE_TIMEOUT", 10)) if timeout is None else timeout
    if os.environ.get("COURSE_CHECK") == "0":
        return CheckResult(None, f"(check of {lid} skipped: COURSE_CHECK=0)")
    if notebook is not None:
        conv = convert(Path(notebook))
        source, notes, shown = conv.source, conv.notes, Source(Path(notebook).name, conv.cells)
    else:
        source, notes, cells = module_source(kernel_cells(), origin="this kernel's history", skip_unparsable=True)
        notes = [n for n in notes if "left out" in n]  # dropped magics in the history are expected; say nothing
        shown = Source("", cells)
    tests_dir = _labs.graded_tests_dir()
    if not any(tests_dir.glob(f"test_{lid}*.py")):
        raise CourseError(
            f"no graded tests of {lid} in {tests_dir}: check() needs a checkout of the course "
            "(on Colab, run the notebook's first cell, which makes one)"
        )
    keyword = None
    if functions:
        files = sorted(tests_dir.glob(f"test_{lid}*.py"))
        untested = [f for f in functions if not any(tests_for(path, [f]) for path in files)]
        notes += [
            f"no graded test calls {f} directly: it is graded through the functions that use it" for f in untested
        ]
        names = [t for path in files for t in tests_for(path, list(functions))]
        if not names:
            raise CourseError(f"no graded test of {lid} calls {', '.join(functions)} directly; try check({lid!r})")
        keyword = " or ".join(dict.fromkeys(names))
    with tempfile.TemporaryDirectory(prefix="course-check-") as tmp:
        module = Path(tmp).resolve() / f"{lid}_notebook.py"
        module.write_text(source, encoding="utf-8")
        report = grade(
            [lid],
            impl=module.parent,
            timeout=timeout,
            jobs=1,
            keyword=keyword,
            tests_dir=tests_dir,
            shown={str(module): shown},
        )
    report.notes += notes
    title = f"{' '.join(functions)}" if functions else ""
    return CheckResult(report, render(report, titles={lid: title}), title)


def warm_up(lab: str | None = None) -> None:
    """Start the grader's processes now (in the background), so that the first :func:`check` answers fast.

    The notebooks' setup cell calls this. It imports what grading ``lab`` needs in a process of its own,
    which the kernel keeps until it stops; nothing is graded, and the kernel does not wait.
    """
    if os.environ.get("COURSE_CHECK") == "0" or os.environ.get("COURSE_SANDBOX") == "1":
        return
    from course.grader import forkserver, runner, zygote

    if lab is None:
        preload = list(forkserver.LAB_LIBRARIES)
    else:
        lid = _labs.lab_id(lab)
        files = sorted(_labs.graded_tests_dir().glob(f"test_{lid}*.py"))
        files += [p for p in [_labs.root() / "labs"] if p.is_dir() for p in p.glob(f"{lid}_*.py")]
        preload = runner.imports_of(files)
    zygote.shared(runner.course_path(), preload=preload)
