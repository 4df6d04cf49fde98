"""`course similarity`: a class built from the solutions, with a disguised copy, an independent solution and a stub."""

import ast
import csv
import re
import sys
import zipfile

import jupytext
import pytest

from course import labs
from course.cli import main
from course.errors import CourseError
from course.staff import assign
from course.staff.similarity import CSV_HEADER, THRESHOLD, similarity

pytestmark = pytest.mark.solutions_only

# lab01 written a second way, as a student who never saw the solution might: other functions of jax.numpy,
# other shapes of the same computations (the graded tests pass on it: test_independent_solution_is_correct).
INDEPENDENT = {
    "augment": "return jnp.pad(x, ((0, 0), (0, 1)), constant_values=1.0)",
    "step": "return (z >= 0).astype(z.dtype)",
    "sigmoid": "return 0.5 * (jnp.tanh(z / 2) + 1)",
    "perceptron": "w, b = theta[:-1], theta[-1]\nreturn activation(x @ w + b)",
    "logistic_loss": (
        "logits = x @ theta[:-1] + theta[-1]\nper_example = jnp.logaddexp(0.0, logits) - y * logits\n"
        "return per_example.mean()"
    ),
    "hand_gradient": (
        "err = sigmoid(x @ theta[:-1] + theta[-1]) - y\nn = y.shape[0]\nreturn jnp.append(err @ x, err.sum()) / n"
    ),
    "autodiff_gradient": "grad_fn = jax.grad(lambda t: logistic_loss(t, x, y))\nreturn grad_fn(theta)",
    "train": (
        "def body(i, carry):\n    t, history = carry\n    value, g = jax.value_and_grad(logistic_loss)(t, x, y)\n"
        "    return t - learning_rate * g, history.at[i].set(value)\n\n"
        "return jax.lax.fori_loop(0, steps, body, (theta, jnp.zeros(steps)))"
    ),
    "accuracy": "z = augment(x) @ theta\nreturn jnp.mean(jnp.where(z >= 0, 1.0, 0.0) == y)",
}


def _stub(lab: str) -> str:
    [text] = [t for name, t in assign.generated().items() if name.startswith(lab)]
    return text


def _filled(lab: str, bodies: dict[str, str]) -> str:
    """The stub with each function's ``raise NotImplementedError`` replaced by its body."""

    def fill(m: re.Match) -> str:
        indent, name = m.group(1), m.group(2)
        return "\n".join(indent + line if line else "" for line in bodies[name].splitlines())

    return re.sub(rf'^( *)raise NotImplementedError\("{lab}: (\w+)"\)$', fill, _stub(lab), flags=re.M)


def _as_student(lab: str) -> str:
    """The solution as a student hands it in: the region markers gone."""
    text = labs.lab_path(lab, "solutions").read_text()
    return re.sub(r"^ *# (BEGIN|END) SOLUTION\n", "", text, flags=re.M)


def _bodies(source: str) -> dict[str, str]:
    """Each lab01 function's body in ``source``, without its docstring, unindented."""
    lines = source.splitlines()
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name in INDEPENDENT:
            first, last = node.body[1].lineno - 1, node.body[-1].end_lineno
            out[node.name] = "\n".join(line[4:] for line in lines[first:last])
    return out


def _disguised(source: str) -> str:
    """A copy: every local name changed, ``step`` and ``sigmoid`` swapped, ``accuracy`` moved before ``train``."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    spans = {n.name: (n.lineno - 1, n.end_lineno) for n in tree.body if isinstance(n, ast.FunctionDef)}

    def text(name):
        a, b = spans[name]
        return "".join(lines[a:b])

    order = ["augment", "sigmoid", "step", "perceptron", "logistic_loss", "hand_gradient", "autodiff_gradient"]
    first, last = spans["augment"][0], spans["accuracy"][1]
    body = "\n\n".join(text(n) for n in [*order, "accuracy", "train"])
    out = "".join(lines[:first]) + body + "".join(lines[last:])
    for old, new in {
        "z": "logits",
        "xa": "x_aug",
        "loss_and_grad": "value_grad",
        "one_step": "update",
        "grad": "g",
        "loss": "value",
    }.items():
        out = re.sub(rf"\b{old}\b", new, out)
    return out


def _notebook(source: str, path):
    jupytext.write(jupytext.reads(source, fmt="py:percent"), path, fmt="ipynb")


@pytest.fixture(scope="module")
def klass(tmp_path_factory):
    """alice: the solutions; bob: alice's lab01 disguised; carol: her own lab01; dave: the stubs, one a notebook;
    erin: alice's lab02 as a notebook, in a zip; frank: lab01 with four functions from alice, five from carol."""
    root = tmp_path_factory.mktemp("class")
    for student in ("alice", "bob", "carol", "dave", "frank"):
        (root / student).mkdir()
    alice01, alice02 = _as_student("lab01"), _as_student("lab02")
    (root / "alice" / "lab01_perceptron.py").write_text(alice01)
    (root / "alice" / "lab02_combining.py").write_text(alice02)
    (root / "bob" / "work").mkdir()
    (root / "bob" / "work" / "lab01_perceptron.py").write_text(_disguised(alice01))
    (root / "carol" / "lab01_perceptron.py").write_text(_filled("lab01", INDEPENDENT))
    (root / "dave" / "lab01_perceptron.py").write_text(_stub("lab01"))
    alice_bodies = _bodies(alice01)
    half = {name: (INDEPENDENT if n % 2 == 0 else alice_bodies)[name] for n, name in enumerate(INDEPENDENT)}
    (root / "frank" / "lab01_perceptron.py").write_text(_filled("lab01", half))
    _notebook(_stub("lab02"), root / "dave" / "lab02_combining.ipynb")
    _notebook(alice02, root / "lab02_erin.ipynb")
    with zipfile.ZipFile(root / "erin.zip", "w") as zf:
        zf.write(root / "lab02_erin.ipynb", "submission/lab02_combining.ipynb")
    (root / "lab02_erin.ipynb").unlink()
    return root


@pytest.fixture(scope="module")
def result(klass, tmp_path_factory):
    return similarity(klass, tmp_path_factory.mktemp("similarity"))


def _score(result, lab, *students):
    [pair] = [p for p in result.pairs if p.lab == lab and {p.a, p.b} == set(students)]
    return pair


def test_a_disguised_copy_ranks_first_and_is_flagged(result):
    lab01 = [p for p in result.pairs if p.lab == "lab01"]
    assert {lab01[0].a, lab01[0].b} == {"alice", "bob"}, [(p.a, p.b, round(p.score, 3)) for p in lab01]
    assert min(lab01[0].a_to_b, lab01[0].b_to_a) >= THRESHOLD


def test_a_notebook_copy_in_a_zip_is_flagged(result):
    pair = _score(result, "lab02", "alice", "erin")
    assert min(pair.a_to_b, pair.b_to_a) >= THRESHOLD, pair


def test_a_copy_of_half_the_functions_is_flagged_with_both_sources(result):
    for source in ("alice", "carol"):
        pair = _score(result, "lab01", "frank", source)
        assert min(pair.a_to_b, pair.b_to_a) >= THRESHOLD, pair


def test_independent_solutions_are_not_flagged(result):
    for other in ("alice", "bob"):
        pair = _score(result, "lab01", "carol", other)
        assert pair.score < THRESHOLD, pair


def test_a_stub_is_similar_to_no_one(result):
    pairs = [p for p in result.pairs if "dave" in (p.a, p.b)]
    assert {p.lab for p in pairs} == {"lab01", "lab02"}
    assert all(p.score == 0 and p.overlap == 0 for p in pairs), pairs


def test_flagged_is_exactly_the_copies(result):
    assert sorted((p.lab, *sorted((p.a, p.b))) for p in result.flagged) == [
        ("lab01", "alice", "bob"),
        ("lab01", "alice", "frank"),
        ("lab01", "bob", "frank"),
        ("lab01", "carol", "frank"),
        ("lab02", "alice", "erin"),
    ]


def test_the_csv_is_ranked_and_the_html_stands_alone(result):
    with result.csv.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == CSV_HEADER
    scores = [float(r[5]) for r in rows[1:]]
    assert scores == sorted(scores, reverse=True) and len(rows) - 1 == len(result.pairs) == 10 + 3
    assert rows[1][7] == "yes" and rows[-1][7] == ""
    page = result.html.read_text()
    # Offline: no script, no stylesheet or image fetched from anywhere.
    assert "<script" not in page and not re.search(r"(src|href)=\"(https?:)?//", page)
    assert page.count("class='hl-a'") > 0 and page.count("class='hl-b'") > 0
    assert "bob/work/lab01_perceptron.py" in page and "erin.zip/submission/lab02_combining.ipynb" in page


def test_the_command(klass, tmp_path, capsys):
    assert main(["similarity", str(klass), "lab01", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "lab01  alice  bob" in printed and "lab02" not in printed
    assert (tmp_path / "similarity.csv").exists() and (tmp_path / "similarity.html").exists()


def test_a_class_without_lab_files_is_an_error_that_says_so(tmp_path, capsys):
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "notes.txt").write_text("nothing here")
    assert main(["similarity", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "no lab files (labNN_*.py) or notebooks (.ipynb)" in capsys.readouterr().err


def test_independent_solution_is_correct(tmp_path):
    from course.grader import grade

    (tmp_path / "lab01_perceptron.py").write_text(_filled("lab01", INDEPENDENT))
    report = grade(["lab01"], impl=str(tmp_path), timeout=60, jobs=1)
    assert report.max_score > 0 and report.score == report.max_score, [
        (o.name, o.status, o.message) for o in report.outcomes if o.status != "passed"
    ]


def test_without_copydetect_the_error_says_how_to_install_it(klass, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "copydetect", None)  # what an environment without it raises: ImportError
    with pytest.raises(CourseError, match="pip install -e . --group staff"):
        similarity(klass, tmp_path)
