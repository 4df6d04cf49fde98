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
