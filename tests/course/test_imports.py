"""The course's import graph, read from the source: no circle, and no private name taken from another module.

Every import counts, a function's deferred ones too: a circle that only closes at run time is still
one module that cannot be understood without the other.
"""

import ast
from pathlib import Path

from course import labs

PACKAGE = labs.root() / "course"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, str | None]]:
    """``(module, name taken from it or None)`` for each import of a course module in ``path``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for alias in node.names:
                module = f"{base}.{alias.name}"
                found.append((module, None) if module in MODULES else (base, alias.name))
    return [(m, attr) for m, attr in found if m.split(".")[0] == "course"]


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        for module, _ in _imports(name, path):
            while module not in MODULES and "." in module:
                module = module.rpartition(".")[0]
            if module != name:
                graph.setdefault(name, set()).add(module)
    return graph


def test_the_graph_is_read():
    graph = _graph()
    assert "course.grader.runner" in graph and "course.grader.zygote" in graph["course.grader.runner"]


def test_no_import_circle():
    graph, circles = _graph(), []

    def visit(node, path):
        for nxt in sorted(graph.get(node, ())):
            if nxt == path[0]:
                circles.append(" -> ".join([*path, nxt]))
            elif nxt not in path and nxt > path[0]:  # each circle once, from its smallest module
                visit(nxt, [*path, nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_no_private_name_is_imported_from_another_module():
    taken = [
        f"{name} takes {attr} from {module}"
        for name, path in MODULES.items()
        for module, attr in _imports(name, path)
        if attr and attr.startswith("_") and not attr.startswith("__")
    ]
    assert not taken, "move a shared helper where both can import it, under a public name:\n" + "\n".join(taken)


# The three rooms (docs/architecture.md): what labs import (course.*), the grader (course.grader.*) and the
# staff's tooling (course.staff.*). Imports point one way: staff -> grader -> labs' room.
def _room(module: str) -> str:
    return next((room for room in ("grader", "staff") if module.startswith(f"course.{room}")), "labs")


ALLOWED = {"labs": {"labs"}, "grader": {"labs", "grader"}, "staff": {"labs", "grader", "staff"}}
# The two doors across the rooms: a notebook's `course.check`/`course.warm_up` (imported when called),
# and the command line (`course.cli`, which students, instructors and staff all use, run by
# `python -m course`): it reaches each room when a command is called, and nothing imports it.
DOORS = {("course", "course.grader.check"), ("course.__main__", "course.cli")}
COMMAND_LINE = "course.cli"


def test_imports_point_one_way_between_the_rooms():
    graph = _graph()
    assert _room("course.staff.site") == "staff" and _room("course.grader.runner") == "grader"
    assert _room("course.training") == "labs" and "course.training" in MODULES
    wrong = [
        f"{name} ({_room(name)}) imports {other} ({_room(other)})"
        for name, imported in graph.items()
        for other in sorted(imported)
        if _room(other) not in ALLOWED[_room(name)] and (name, other) not in DOORS and name != COMMAND_LINE
    ]
    assert not wrong, "the labs' room imports neither grader nor staff; the grader not staff:\n" + "\n".join(wrong)
    importers = sorted(name for name, imported in graph.items() if COMMAND_LINE in imported)
    assert importers == ["course.__main__"], f"only python -m course imports the command line: {importers}"


def _defined(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _exported(tree: ast.Module) -> list[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []


def test_one_import_path_per_public_name():
    """A module's ``__all__`` names only what it defines; a package's ``__init__`` may offer its modules'
    names (``course.grader.grade``), and then code outside the package takes them from there only."""
    facades, problems = {}, []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        foreign = [n for n in _exported(tree) if n not in _defined(tree)]
        if path.name == "__init__.py":
            facades |= {(module, attr): name for module, attr in _imports(name, path) if attr in foreign}
        elif foreign:
            problems.append(f"{name} re-exports {', '.join(foreign)}: import them from where they are defined")
    assert ("course.grader.runner", "grade") in facades
    users = [*MODULES.items(), *((p.stem, p) for p in sorted((PACKAGE.parent / "tests").rglob("*.py")))]
    users += [(p.stem, p) for p in sorted((PACKAGE.parent / "benchmarks").glob("*.py"))]
    for name, path in users:
        for module, attr in _imports(name, path):
            package = facades.get((module, attr))
            if package and name != package and not name.startswith(f"{package}."):
                problems.append(f"{path.relative_to(PACKAGE.parent)} takes {attr} from {module}: use {package}.{attr}")
    assert not problems, "\n".join(problems)
