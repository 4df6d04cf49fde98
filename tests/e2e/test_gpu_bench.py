"""benchmarks/gpu.py cannot rot unseen: its smoke run (a CPU, tiny sizes) writes the whole report."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from course import labs

pytestmark = [pytest.mark.solutions_only, pytest.mark.slow]  # benchmarks/ is in the staff repository only

TABLES = {
    "## Targets": "| target | measured | verdict |",
    "## Lab 10: the lecture's CNN on MNIST": "| loop | dtype | seeds |",
    "## Lab 11: VGG16 filter visualisation": "| layer | filters | batched ms/filter |",
    "## The course's per-backend choices, side by side": "| choice | a | time a |",
}
FIGURES = ("lab10_seconds.png", "lab11_ms_per_filter.png", "choices.png")


@pytest.fixture(scope="module")
def smoke(mnist_data_dir, vgg16_data_dir, tmp_path_factory):
    """``python benchmarks/gpu.py --smoke --out OUT`` from the repository root, as on the GPU machine."""
    assert mnist_data_dir == vgg16_data_dir, "both come from $COURSE_DATA_DIR"
    out = tmp_path_factory.mktemp("gpu") / "report"
    env = {**os.environ, "COURSE_DATA_DIR": str(mnist_data_dir), "JAX_PLATFORMS": "cpu"}
    run = subprocess.run(
        [sys.executable, "benchmarks/gpu.py", "--smoke", "--out", str(out)],
        cwd=labs.root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out, (out / "report.md").read_text()


def test_the_header_names_versions_backend_and_targets(smoke):
    _, report = smoke
    assert report.startswith("# Make You Dangerous on this backend (smoke run")
    for field in ("- date: ", "jax ", "jaxlib ", "flax ", "optax ", "- backend: cpu", "device kind: "):
        assert field in report, field
    section = report.split("## Targets", 1)[1].split("\n## ", 1)[0]
    targets = [line for line in section.splitlines() if line.startswith("| lab 1")]
    assert len(targets) == 2 and all(line.endswith("| not measured (smoke) |") for line in targets), targets


@pytest.mark.parametrize("heading", TABLES)
def test_each_table_is_there_with_rows(smoke, heading):
    _, report = smoke
    section = report.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith(TABLES[heading]) and len(rows) >= 3, section


def test_lab10_has_every_loop_shape_and_dtype(smoke):
    _, report = smoke
    for loop in ("steps", "epoch"):
        for dtype in ("float32", "bfloat16"):
            assert f"| {loop} | {dtype} | 1 |" in report


def test_lab11_has_every_layer(smoke):
    _, report = smoke
    for layer in ("block1_conv2", "block3_conv1", "block4_conv1"):
        assert f"| {layer} | 2 |" in report


@pytest.mark.parametrize("name", FIGURES)
def test_each_figure_is_a_png_the_report_shows(smoke, name):
    out, report = smoke
    assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"]({name})" in report
