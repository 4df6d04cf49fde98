"""The student's ``check()``: grade a notebook's current code from inside it, and show the result.

:func:`check` makes the kernel's cells (or a saved ``.ipynb``) into a lab module with
:func:`course.grader.notebook.module_source`, as ``course grade`` makes a submitted notebook, and grades
it with the same grader; :func:`warm_up` starts the grader's processes before the first check.
``course.check`` and ``course.warm_up`` are the names a notebook uses.
"""

from __future__ import annotations

import ast
import base64
import os
from pathlib import Path

from course import labs as _labs
from course.errors import CourseError
from course.grader.model import Settings, Status
from course.grader.notebook import convert, module_source


def test_uses(test_file: Path) -> dict[str, set[str]]:
    """Each test function of ``test_file`` and the lab's functions it uses: ``lab.f`` in its body or in a
    module-level helper it names (transitively), or ``"f"`` in its decorators (parametrized names)."""
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

    return {
        name.split("::")[-1]: uses(node, {name})
        for name, node in defs.items()
        if name.split("::")[-1].startswith("test")
    }


def tests_for(test_file: Path, functions: list[str]) -> list[str]:
    """The test functions of ``test_file`` that use any of ``functions`` (see :func:`test_uses`)."""
    wanted = {f.split(".")[0] for f in functions}
    return [test for test, used in test_uses(test_file).items() if used & wanted]


def defined(source: str) -> set[str] | None:
    """The names a module's code defines at its top level: functions, classes, assignments, imports (also
    under a top-level ``if``/``try``/``with``); None where it does not parse."""
    try:
        body = list(ast.parse(source).body)
    except SyntaxError:
        return None
    names = set()
    while body:
        node = body.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue  # what it defines inside is its own
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        for field in ("body", "orelse", "finalbody", "handlers"):
            body += [n for n in getattr(node, field, []) if isinstance(n, ast.AST)]
    return names


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

        if self.report is None:
            return f"<pre>{escape(self.text)}</pre>"
        cell = 'style="text-align:left;vertical-align:top;padding:2px 8px"'
        rows = []
        for lab, outcomes in self.report.by_lab().items():
            earned, possible = sum(o.earned for o in outcomes), sum(o.points for o in outcomes)
            head = escape(f"{lab} {self.title}".strip())
            rows.append(f'<tr><th {cell} colspan="4">{head} — {earned:g}/{possible:g} points</th></tr>')
            for o in outcomes:
                mark, colour = o.status.mark, o.status.colour
                message = "" if o.status == Status.PASSED else escape(o.message)
                shown = _picture_html(o) if o.status != Status.PASSED else ""
                rows.append(
                    f"<tr><td {cell}><code>{escape(o.name)}</code></td>"
                    f'<td {cell}><b style="color:{colour}">{mark}</b></td>'
                    f"<td {cell}>{o.earned:g}/{o.points:g}</td>"
                    f'<td {cell}><pre style="margin:0;white-space:pre-wrap">{message}</pre>{shown}</td></tr>'
                )
        extra = [f"NOTE: {n}" for n in self.report.notes] + [f"PROBLEM: {p}" for p in self.report.problems]
        foot = "".join(f"<div>{escape(line)}</div>" for line in [*extra, self.text.splitlines()[-1]])
        header = "".join(f"<th {cell}>{h}</th>" for h in ("test", "status", "points", "message"))
        return f'<div class="course-check"><table><tr>{header}</tr>{"".join(rows)}</table>{foot}</div>'


def _picture_html(o) -> str:
    """A failed comparison's picture under its message (a PNG in the page), or why there is none."""
    from html import escape

    if o.picture:
        data = base64.b64encode(o.picture).decode("ascii")
        alt = "expected | got | difference"
        return f'<img src="data:image/png;base64,{data}" alt="{alt}" style="max-width:100%">'
    return f"<div>({escape(o.picture_note)})</div>" if o.picture_note else ""


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
    run every cell quickly). ``timeout``: seconds per test (default ``$COURSE_TIMEOUT``, else
    :class:`course.grader.model.Settings`' own, as ``course grade``). While the notebook itself is
    graded (in the sandbox), it does nothing.
    """
    import tempfile

    from course.grader import grade
    from course.grader.lab_plugin import sandbox_cache_for
    from course.grader.locations import Source
    from course.grader.report import render

    if os.environ.get("COURSE_SANDBOX") == "1":
        return NotChecked()
    lid = _labs.lab_id(lab)
    if os.environ.get("COURSE_CHECK") == "0":
        return CheckResult(None, f"(check of {lid} skipped: COURSE_CHECK=0)")
    settings = Settings.from_environment(timeout=timeout, jobs=1)
    if notebook is not None:
        conv = convert(Path(notebook), lid)
        source, notes, shown = conv.source, conv.notes, Source(Path(notebook).name, conv.cells)
    else:
        source, notes, cells = module_source(kernel_cells(), origin="this kernel's history", skip_unparsable=True)
        notes = [n for n in notes if "left out" in n]  # dropped magics in the history are expected; say nothing
        shown = Source("", cells)
    tests_dir = _labs.graded_tests_dir()
    this = _labs.lab(lid, tests_dir=tests_dir)
    files = this.tests
    if not files:
        raise CourseError(
            f"no graded tests of {lid} in {tests_dir}: check() needs a checkout of the course "
            "(on Colab, run the notebook's first cell, which makes one)"
        )
    keyword = None
    if functions:
        names, waiting = _selected(this, functions, source, notes)
        if not names and not waiting:
            raise CourseError(f"no graded test of {lid} calls {', '.join(functions)} directly; try check({lid!r})")
        if not names:  # every test waits for a cell further down: nothing to grade yet
            return CheckResult(None, "\n".join(f"NOTE: {n}" for n in notes))
        keyword = " or ".join(dict.fromkeys(names))
    with tempfile.TemporaryDirectory(prefix="course-check-") as tmp:
        module = Path(tmp).resolve() / f"{lid}_notebook.py"
        module.write_text(source, encoding="utf-8")
        report = grade(
            [lid],
            impl=module.parent,
            settings=settings,
            keyword=keyword,
            tests_dir=tests_dir,
            shown={str(module): shown},
            sandbox_cache=sandbox_cache_for("labs"),  # the student's own, as `course grade` uses: warm
        )
    report.notes += notes
    title = f"{' '.join(functions)}" if functions else ""
    return CheckResult(report, render(report, titles={lid: title}), title)


def _selected(lab: _labs.Lab, functions: tuple[str, ...], source: str, notes: list[str]) -> tuple[list[str], dict]:
    """The tests of ``functions`` that can run on ``source`` now, and those that wait for a function of the lab
    that ``source`` does not define yet (a cell further down), each with what it waits for; notes say both."""
    uses = {test: used for path in lab.tests for test, used in test_uses(path).items()}
    for f in functions:
        if not any(f.split(".")[0] in used for used in uses.values()):
            notes.append(f"no graded test calls {f} directly: it is graded through the functions that use it")
    wanted = {f.split(".")[0] for f in functions}
    ours = defined(lab.stub.read_text(encoding="utf-8")) if lab.stub else None
    have = defined(source)
    names, waiting = [], {}
    for test, used in uses.items():
        missing = sorted((used & ours) - have) if ours is not None and have is not None else []
        if used & wanted and missing:
            waiting[test] = missing
        elif used & wanted:
            names.append(test)
    if waiting:
        needed = sorted({f for missing in waiting.values() for f in missing})
        notes.append(
            f"not checked yet: {', '.join(waiting)}, which also call{'s' if len(waiting) == 1 else ''} "
            f"{', '.join(needed)}: run the cell that defines {'it' if len(needed) == 1 else 'them'}, then check again"
        )
    return names, waiting


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
        this = _labs.lab(lab)
        preload = runner.imports_of([*this.tests, *([this.stub] if this.stub else [])])
    zygote.shared(runner.course_path(), preload=preload)
