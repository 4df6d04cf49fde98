"""The notebooks run for real: each lab's in a Jupyter kernel (the solution's to its end, the stub's to its
first stub), check() in a live kernel, the setup cell in a fresh environment as on Colab, and a notebook as Colab
downloads it graded in full.

These start kernels and environments, minutes in all on 2 cores: `python -m nox -s e2e` runs them
(`.ci/run` runs it after `nox -s tests`); plain `pytest` runs them with everything else.
"""

import os
import re
from pathlib import Path

import nbformat
import pytest

from course import labs
from course.grader import grade
from course.staff import notebooks

LAB_IDS = list(labs.lab_files("labs"))

# The kernels run the demos' short versions, and grading inside them gets CI's patience.
KERNEL_ENV = {"COURSE_QUICK": "1", "COURSE_TIMEOUT": "120", "COURSE_CHECK": "0"}
# The labs whose notebooks also run their check cells (grading in the kernel); lab 03's first check cell comes
# before the cell that defines `fit`, which some tests of its functions also call.
CHECKED_LABS = ("lab01", "lab03")


def _outputs(nb, kind: str) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == kind]


def _check_texts(nb) -> list[str]:
    return [
        o["data"]["text/plain"]
        for c in nb.cells
        if c.cell_type == "code" and c.source.startswith(notebooks.CHECK_MARKER)
        for o in c.outputs
        if o.output_type == "execute_result"
    ]


@pytest.mark.solutions_only
def test_setup_cell_installs_the_course_in_a_fresh_environment_as_on_colab(tmp_path):
    """Colab, as far as it can be had here: a fresh Python with JAX preinstalled, no course, no checkout.

    The cell clones the course (from a local copy of this repository, via ``COURSE_GIT``: Colab clones
    GitHub), installs it with pip around the JAX that is there, and says which device JAX sees.
    """
    import importlib.metadata
    import subprocess
    import sys

    root = labs.root()
    if not (root / ".git").exists():
        pytest.skip("needs the course's git repository (the cell clones it)")
    branch = notebooks.settings()["branch"]
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(origin)], check=True)
    subprocess.run(["git", "-C", str(root), "push", "--quiet", str(origin), f"HEAD:refs/heads/{branch}"], check=True)
    venv = tmp_path / "colab"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    preinstalled = {d: importlib.metadata.version(d) for d in ("jax", "jaxlib")}  # Colab's own JAX
    pip = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", *(f"{d}=={v}" for d, v in preinstalled.items())],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if pip.returncode != 0:
        pytest.skip(f"cannot install JAX into a fresh environment here (offline?): {pip.stderr[-300:]}")
    work = tmp_path / "content"  # Colab's working folder: no checkout around it
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "COURSE_"))}
    env.update(COURSE_GIT=str(origin), JAX_PLATFORMS="cpu")
    cell = subprocess.run(
        [python, "-c", notebooks.setup_source()], cwd=work, env=env, capture_output=True, text=True, timeout=900
    )
    assert cell.returncode == 0, cell.stdout[-2000:] + cell.stderr[-3000:]
    name = notebooks.settings()["repository"].split("/")[-1]
    assert f"course installed from {work / name}; JAX {preinstalled['jax']} sees [Cpu" in cell.stdout, cell.stdout
    after = subprocess.run(
        [
            python,
            "-c",
            "import importlib.metadata as m, course, flax, optax; print(m.version('jax'), m.version('jaxlib'))",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert after.stdout.split() == [preinstalled["jax"], preinstalled["jaxlib"]], after.stdout + after.stderr
    # Run again (a second session on the same runtime): the course is there, the cell says nothing.
    again = subprocess.run([python, "-c", notebooks.setup_source()], cwd=work, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout == "", again.stdout + again.stderr


# ---------------------------------------------------------------------------------------------------
# run for real, in a Jupyter kernel


def _run(path: Path, tmp_path: Path, lab: str):
    """The notebook of ``path`` run in a fresh kernel, and the error that stopped it (or None)."""
    from nbclient.exceptions import CellExecutionError

    env = {**KERNEL_ENV, **({"COURSE_CHECK": "1"} if lab in CHECKED_LABS else {})}
    nb = notebooks.build(path)
    try:
        notebooks.execute(nb, cwd=tmp_path, env=env, timeout=900)
    except CellExecutionError as exc:
        return nb, exc
    return nb, None


@pytest.mark.solutions_only
@pytest.mark.parametrize("lab", LAB_IDS)
def test_solution_notebook_runs_and_shows_its_figures(lab, tmp_path, request):
    if lab in ("lab06", "lab10"):
        request.getfixturevalue("mnist_data_dir")  # real MNIST: present in CI, else skipped
    if lab == "lab11":
        request.getfixturevalue("vgg16_data_dir")  # the real VGG16 weights: present in CI, else skipped
    nb, error = _run(labs.lab_files("solutions")[lab], tmp_path, lab)
    assert error is None, str(error)
    images = [o for o in _outputs(nb, "display_data") if "image/png" in o.get("data", {})]
    assert images, f"{lab}'s notebook showed no figure"
    assert list((tmp_path / "figures" / lab).glob("*.png")), "the demo writes its figures beside the notebook"
    if lab in CHECKED_LABS:  # check() on the kernel's own cells: the solution's code gets full marks
        texts = _check_texts(nb)
        assert texts and all(re.search(r"Total: (\d+)/\1 points", t) for t in texts), texts


@pytest.mark.parametrize("lab", LAB_IDS)
def test_student_notebook_stops_at_its_first_stub(lab, tmp_path, request):
    if lab in ("lab06", "lab10"):
        request.getfixturevalue("mnist_data_dir")
    if lab == "lab11":
        request.getfixturevalue("vgg16_data_dir")
    path = labs.lab_files("labs")[lab]
    nb, error = _run(path, tmp_path, lab)
    assert error is not None, f"{lab}'s student notebook ran to the end"
    stubs = {f"{m.group(1)}: {m.group(2)}" for m in notebooks.STUB.finditer(path.read_text())}
    assert error.ename == "NotImplementedError" and error.evalue in stubs, str(error)
    # It stopped there: no cell after the failing one ran.
    ran = [c.execution_count is not None for c in nb.cells if c.cell_type == "code"]
    assert ran == sorted(ran, reverse=True)
    if lab in CHECKED_LABS:  # check() on the stubs: every test "not attempted", nothing else
        texts = _check_texts(nb)
        assert texts and all("TODO" in t and "PASS" not in t and "FAIL" not in t and "ERROR" not in t for t in texts), (
            texts
        )


@pytest.mark.solutions_only
def test_check_in_a_live_kernel_grades_the_code_in_every_form_of_use(tmp_path, lab01_notebook_with, check_forms):
    """check() in a real Jupyter kernel, its result used as students do: each check sees full marks, answers
    warm (the setup cell starts the grader), names the cell and line of a mistake, and shows a table."""
    wrong = "def step(z):\n    import jax.numpy as jnp\n    return (z[:, None] - z) >= 0"
    nb = lab01_notebook_with([*check_forms, wrong, 'check("lab01", "step")'])
    notebooks.execute(nb, cwd=tmp_path, env={**KERNEL_ENV, "COURSE_CHECK": "1"}, timeout=900)
    outputs = [o for c in nb.cells[-len(check_forms) - 2 : -2] for o in c.outputs]
    texts = [o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs]
    assert not [o for o in outputs if o.output_type == "error"], texts
    assert "Total: 17/17 points" in texts[0] and texts[-1].strip() == "5.0", texts  # `res`; the last print(res.score)
    totals = [t.split("Total: ")[1].split()[0] for t in texts if "Total: " in t]
    assert totals and all(a == b for a, b in (t.split("/") for t in totals)), texts  # full marks every time
    last = nb.cells[-1].outputs[0]["data"]
    assert "<table>" in last["text/html"] and "FAIL" in last["text/html"]
    assert re.search(r"Cell In\[\d+\], line 3 in step: return \(z\[:, None\] - z\) >= 0", last["text/plain"]), last
    assert "/tmp/course-" not in last["text/plain"]


@pytest.mark.solutions_only
def test_a_solution_notebook_as_colab_downloads_it_gets_full_marks(tmp_path):
    nb = notebooks.build(labs.lab_files("solutions")["lab01"])
    nb.cells.insert(1, nbformat.v4.new_code_cell("!pip install -q something\n%matplotlib inline"))
    path = tmp_path / "Copy of lab01_perceptron.ipynb"
    path.write_text(notebooks.dumps(nb))
    report = grade(impl=path, timeout=120)
    assert {o.lab for o in report.outcomes} == {"lab01"}
    assert report.score == report.max_score > 0, [(o.name, o.status, o.message) for o in report.outcomes]
    assert any("dropped the line '!pip install -q something'" in n for n in report.notes)
    assert any("the demo does not run" in n for n in report.notes)
