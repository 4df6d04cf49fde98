"""Feedback a student can see (issue 28): every mismatch shows what came back, beside what was expected.

A comparison of arrays too large to show whole shows the same window of each around the worst element,
with where that window is, the largest difference and the tolerance; in the shell, the notebook's table
and results.json alike, never cut before what came back.
"""

import numpy as np
import pytest
from conftest import lab_as_student

from course.grader import grade
from course.grader.report import gradescope, markdown, render
from course.grader.testing import SHOWN_WHOLE, expect_close, expect_equal, window


def _message(check, *args, **kwargs) -> str:
    with pytest.raises(AssertionError) as caught:
        check(*args, **kwargs)
    return str(caught.value)


def test_a_small_array_is_shown_whole_as_before():
    text = _message(expect_close, np.array([0.0, 1.0]), np.array([0.0, 2.0]), "f(x)", atol=1e-6)
    assert text.startswith("f(x): expected [0., 2.] (shape (2,)), got [0., 1.] (shape (2,)); largest difference 1")


def test_a_large_array_shows_the_same_window_of_each_around_the_worst_element():
    want = np.arange(64.0).reshape(8, 8)
    got = want.copy()
    got[6, 1] += 0.5
    text = _message(expect_close, got, want, "conv2d(x, w)", atol=1e-3)
    expected, _, rest = text.partition(", got ")
    assert "(elements [3:8, 0:5] of shape (8, 8))" in expected and "(elements [3:8, 0:5] of shape (8, 8))" in rest
    assert "49.5" in rest and "49.5" not in expected  # what came back, at the worst element
    assert "largest difference 0.5 (worst at index (6, 1)), allowed 0.001 + 0·|expected|" in text
    assert len(text.splitlines()) <= 20


def test_an_image_window_is_spatial_at_the_worst_channel():
    assert window((8, 8, 3), (3, 4, 1)) == (slice(1, 6), slice(2, 7), 1)
    assert window((2, 16, 16, 3), (1, 0, 15, 2)) == (1, slice(0, 5), slice(11, 16), 2)
    assert window((100,), (50,)) == (slice(46, 54),)
    assert window((1, 4, 3, 5), (0, 0, 1, 0)) == (0, slice(0, 4), slice(0, 3), 0)  # NHWC with 5 filters
    assert window((1, 1, 1, 40), (0, 0, 0, 20)) == (0, 0, 0, slice(16, 24))  # only the last axis is long


def test_an_exact_comparison_shows_the_first_difference():
    want = np.arange(20)
    text = _message(expect_equal, np.where(want == 13, -1, want), want, "labels")
    assert "1 of 20 elements differ, the first at index (13,)" in text and "-1" in text
    assert SHOWN_WHOLE < 20


@pytest.mark.solutions_only
def test_a_flipped_kernel_shows_what_came_back_in_the_shell_and_results_json(tmp_path):
    """Lab 08's conv2d as a convolution (the kernel flipped) instead of a cross-correlation."""
    flipped = lab_as_student("lab08").replace("w[u, v])", "w[kh - 1 - u, kw - 1 - v])", 1)
    assert flipped != lab_as_student("lab08")
    (tmp_path / "lab08_convolution.py").write_text(flipped)
    report = grade(["lab08"], impl=tmp_path, keyword="agrees_with_xla", timeout=120)
    failed = [o for o in report.outcomes if o.status == "failed"]
    assert failed, [(o.name, o.status, o.message) for o in report.outcomes]
    shell = render(report)
    for o in failed:
        assert ", got " in o.message and "largest difference" in o.message, o.message
        assert o.message.splitlines()[-1] in shell  # the shell shows a failed check whole
        feedback = markdown(o)
        assert "**Expected:**" in feedback and "**Got:**" in feedback and "allowed" in feedback
    assert all(
        "**Got:**" in t["output"] for t in gradescope(report)["tests"] if t["score"] == 0 and "Failed" in t["output"]
    )
    # Its outputs of at least 4 x 4 carry a picture (issue 28, item 2: tests/course/test_pictures.py); (1, 4, 3, 5) not.
    pictured = {o.name.split("[")[-1].rstrip("]"): o.picture for o in failed}
    assert all(png.startswith(b"\x89PNG") and len(png) < 60_000 for k, png in pictured.items() if k != "valid-s2-k3x3")
    assert pictured["valid-s2-k3x3"] == b"" and not any(o.picture for o in report.outcomes if o.status == "passed")
