"""Every lab's demo, as `course run` calls it, writes its figures (lab 06 also reaches its accuracy bar).

The demos train real models: a minute or two in all on 2 cores, so `python -m nox -s e2e` runs them.
"""

import re

import pytest

from course import labs
from course.staff.running import run_lab

LAB_IDS = list(labs.lab_files(labs.default_impl()))


@pytest.mark.solutions_only
@pytest.mark.parametrize("lab", LAB_IDS)
def test_demo_writes_its_figures(lab, tmp_path, request, capsys):
    if lab in ("lab06", "lab10"):
        request.getfixturevalue("mnist_data_dir")  # real MNIST: present in CI, else skipped
    if lab == "lab11":
        request.getfixturevalue("vgg16_data_dir")  # the real VGG16 weights: present in CI, else skipped
    # Each demo's quick version draws the same figures (lab 10's full run takes minutes on a CPU); lab 06
    # runs in full, for its accuracy bar.
    paths = run_lab(lab, impl="solutions", out=tmp_path, quick=lab != "lab06")
    if lab == "lab06":
        # The bar, read from what `course run lab06` prints: >= 97.5 % on the real test set.
        out = capsys.readouterr().out
        accuracy = re.search(r"^test accuracy: (0\.\d{4})$", out, re.M)
        assert accuracy and float(accuracy.group(1)) >= 0.975, out
        assert re.search(r"^seconds per epoch: \d+\.\d\d", out, re.M), out
    if lab == "lab10":
        # --quick: 4096 training images, 2 epochs; chance is 10 %, the full recipe reaches ~99 %.
        out = capsys.readouterr().out
        accuracy = re.search(r"^test accuracy: (0\.\d{4})$", out, re.M)
        assert accuracy and float(accuracy.group(1)) >= 0.85, out
        assert re.search(r"^compile: \d+\.\d\d s; seconds per epoch", out, re.M), out
    assert paths, f"{lab}'s demo wrote no figures"
    for path in paths:
        assert path.parent == tmp_path and path.suffix == ".png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
