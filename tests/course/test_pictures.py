"""A failing comparison of image-like arrays carries a picture (issue 28, item 2): expected | got | difference,
drawn in the trusted process from the arrays compared; saved beside the work for the shell, shown in
check()'s table, and said in results.json (Gradescope's spec does not promise images).

Each picture's difference panel must show the mistake's pattern: the arrays a row draws (``Picture.panels``)
are checked against where the mistake acts, so a panel of the wrong slice, crop or difference fails.
"""

import base64
import io
import json

import numpy as np
import pytest
from conftest import lab_as_student

from course.grader import Outcome, Report, grade, picture, runner
from course.grader.check import CheckResult
from course.grader.grading_plugin import picture_of
from course.grader.report import PICTURE_ELSEWHERE, feedback_folder, gradescope, markdown, render, save_pictures
from course.grader.testing import expect_close, expect_equal


def _failure(check, got, want, what="f(x)", **kwargs) -> AssertionError:
    with pytest.raises(AssertionError) as caught:
        check(got, want, what, **kwargs)
    return caught.value


def _drawn(error: AssertionError) -> picture.Picture:
    drawn = picture.draw(*error.compared[1:], error.compared[0])
    assert isinstance(drawn, picture.Picture), drawn
    assert drawn.png.startswith(b"\x89PNG") and len(drawn.png) < picture.MAX_BYTES
    return drawn


def _correlate(x: np.ndarray, k: np.ndarray, pad_w: tuple[int, int]) -> np.ndarray:
    """A 'same' cross-correlation of the (H, W) image x with the 3 x 3 k, padded (1, 1) in height and pad_w in width."""
    xp = np.pad(x, ((1, 1), pad_w))
    return np.array([[np.sum(xp[i : i + 3, j : j + 3] * k) for j in range(x.shape[1])] for i in range(x.shape[0])])


def test_a_flipped_kernel_shows_the_kernels_difference_around_an_impulse():
    x = np.zeros((12, 12))
    x[5, 6] = 1.0  # an impulse: a correlation draws the kernel flipped around it, a convolution the kernel
    k = np.arange(9.0).reshape(3, 3) ** 1.5  # no two entries alike
    want = _correlate(x, k, (1, 1))[None, :, :, None]  # (N, H, W, C)
    got = _correlate(x, k[::-1, ::-1], (1, 1))[None, :, :, None]
    (row,) = _drawn(_failure(expect_close, got, want, "conv2d", atol=1e-4)).panels
    changed = {(int(r), int(c)) for r, c in np.argwhere(row.difference > 0)}
    assert changed == {(5 + u, 6 + v) for u in (-1, 0, 1) for v in (-1, 0, 1)} - {(5, 6)}  # the centre stays
    np.testing.assert_allclose(row.difference[4:7, 5:8], np.abs(k - k[::-1, ::-1])[::-1, ::-1])
    assert row.worst is not None and row.difference[row.worst] == row.difference.max()


def test_swapped_height_and_width_differ_off_the_diagonal_only():
    """Lab 07's to_channels_first, (N, H, W, C) -> (N, C, H, W), written with H and W swapped."""
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 1))
    want = np.moveaxis(x, -1, -3)  # (4, 1, 6, 6): channels first
    got = np.swapaxes(want, -1, -2)
    assert picture.layout(want.shape) == (0, 2, 3, 1)
    drawn = _drawn(_failure(expect_close, got, want, "to_channels_first of shape (4, 6, 6, 1)", atol=0))
    assert len(drawn.panels) == picture.ROWS and "3 of 4" in drawn.caption
    for row in drawn.panels:
        off_diagonal = ~np.eye(6, dtype=bool)
        assert np.all(row.difference[off_diagonal] > 0) and np.all(row.difference[~off_diagonal] == 0)
        np.testing.assert_array_equal(row.got, row.expected.T)


def test_padding_on_the_wrong_side_shows_a_line_moved_one_column():
    x = np.zeros((10, 10))
    x[:, 5] = 1.0  # a vertical line
    box = np.ones((3, 3))
    want = _correlate(x, box, (1, 1))  # "same": one column of zeros each side
    got = _correlate(x, box, (0, 2))  # both on the right: the output moves one column left
    (row,) = _drawn(_failure(expect_close, got, want, "conv2d 'same'", atol=1e-6)).panels
    assert sorted({int(c) for c in np.argwhere(row.difference > 0)[:, 1]}) == [3, 6]  # where the line was, and is
    assert np.all(row.difference[:, [0, 1, 2, 4, 5, 7, 8, 9]] == 0)


def test_a_passing_or_small_or_flat_comparison_has_no_picture():
    expect_close(np.ones((8, 8)), np.ones((8, 8)), "passes", atol=0)  # nothing raised, nothing drawn
    for shape in [(8,), (3, 8), (1, 4, 3, 5), (8, 8, 8, 8, 8)]:  # not two spatial sides of 4 or more
        want = np.zeros(shape)
        assert picture_of(_failure(expect_close, want + 1, want, atol=0)) == {}
    assert picture_of(AssertionError("a test's own words")) == {}


def test_nan_inf_and_an_enormous_array_give_a_picture_that_says_so():
    want = np.zeros((8, 8))
    got = want.copy()
    got[2, 3], got[6, 1] = np.nan, np.inf
    drawn = _drawn(_failure(expect_close, got, want, atol=1e-6))
    assert "magenta: NaN or inf (2 elements)" in drawn.caption and drawn.panels[0].worst == (2, 3)
    assert np.isnan(drawn.panels[0].difference[2, 3]) and np.isnan(drawn.panels[0].difference[6, 1])
    both = np.full((6, 6), np.inf)
    assert "picture" in picture_of(_failure(expect_close, -both, both, atol=1e-6))
    huge = np.zeros((16, 512, 512, 3), np.float32)  # 12.6 million elements
    wrong = huge.copy()
    wrong[9, 300, 20, 2] = 1.0
    drawn = _drawn(_failure(expect_close, wrong, huge, atol=1e-6))
    assert "rows 276:324, columns 0:48 of 512x512" in drawn.caption and drawn.panels[0].worst == (24, 20)
    assert drawn.panels[0].difference.shape == (picture.SIDE, picture.SIDE)


def test_a_picture_that_cannot_be_drawn_is_a_sentence(monkeypatch):
    letters = np.full((5, 5), "a")
    note = picture_of(_failure(expect_equal, np.where(np.eye(5) > 0, "b", letters), letters))
    assert note == {"picture_note": "no picture: the arrays are not numbers"}
    error = _failure(expect_close, np.ones((8, 8)), np.zeros((8, 8)), atol=0)
    monkeypatch.setattr(picture, "MAX_BYTES", 100)
    assert picture_of(error)["picture_note"].startswith("no picture: it would take")
    monkeypatch.setattr(picture, "_render", lambda *a: 1 / 0)
    assert picture_of(error) == {"picture_note": "no picture: drawing it failed (ZeroDivisionError: division by zero)"}


def _outcomes(png: bytes) -> Report:
    failed = Outcome("t.py::test_conv[same-s1]", "lab08", 3, "failed", "conv2d: expected 1, got 2", picture=png)
    return Report(impl="x", outcomes=[failed, Outcome("t.py::test_pool", "lab08", 2, "passed")])


def test_the_picture_travels_as_json_and_is_shown_in_the_shell_notebook_and_results_json(tmp_path):
    png = _drawn(_failure(expect_close, np.ones((8, 8)), np.zeros((8, 8)), atol=0)).png
    event = {"event": "result", "nodeid": "t.py::test_conv", "status": "failed", "message": "m", "duration": 1.0}
    collected = {"event": "collected", "tests": [{"nodeid": "t.py::test_conv", "lab": "lab08", "points": 1}]}
    encoded = json.loads(json.dumps({**event, "picture": base64.b64encode(png).decode()}))  # data, never pickle
    (o,) = runner.decide([collected, encoded], Report(impl="x"), io.StringIO()).outcomes
    assert o.picture == png
    (o,) = runner.decide([collected, {**event, "picture": "not base64!"}], Report(impl="x"), io.StringIO()).outcomes
    assert o.picture == b""
    report = _outcomes(png)
    folder = feedback_folder(tmp_path, places=[tmp_path / "elsewhere"])
    assert folder == tmp_path / ".course" / "feedback"
    (tmp_path / ".course/feedback/lab08").mkdir(parents=True)
    (tmp_path / ".course/feedback/lab08/test_pool.png").write_bytes(png)  # from when test_pool failed
    saved = save_pictures(report, folder)
    assert saved == {"t.py::test_conv[same-s1]": folder / "lab08" / "test_conv_same-s1.png"}
    assert saved["t.py::test_conv[same-s1]"].read_bytes() == png and not (folder / "lab08/test_pool.png").exists()
    shell = render(report, pictures={k: str(v) for k, v in saved.items()})
    assert f"test_conv[same-s1]  (picture: {folder / 'lab08' / 'test_conv_same-s1.png'})" in shell
    html = CheckResult(report, render(report))._repr_html_()
    assert f'</pre><img src="data:image/png;base64,{base64.b64encode(png).decode()}"' in html
    assert html.count("<img") == 1  # the passing test has none
    output = gradescope(report)["tests"][0]["output"]
    assert "data:image" not in output and "\\| got \\| difference" in output and "grade lab08" in output
    assert PICTURE_ELSEWHERE.split(":")[0] in markdown(report.outcomes[0]).replace("\\", "")


def test_a_sentence_instead_of_a_picture_is_shown_where_the_picture_would_be():
    o = Outcome("t.py::test_x", "lab08", 1, "failed", "f: expected 1, got 2", picture_note="no picture: why")
    report = Report(impl="x", outcomes=[o])
    assert "(no picture: why)" in render(report) and "(no picture: why)" in CheckResult(report, "x")._repr_html_()
    assert "*No picture: why.*" in markdown(o)


FILES = {"lab07": "lab07_tensors.py", "lab08": "lab08_convolution.py"}


def _graded(tmp_path, lab: str, text: str, keyword: str) -> Report:
    (tmp_path / FILES[lab]).write_text(text)
    return grade([lab], impl=tmp_path, keyword=keyword, timeout=120)


@pytest.mark.solutions_only
def test_lab07_with_height_and_width_swapped_is_graded_with_a_picture(tmp_path):
    swapped = lab_as_student("lab07").replace(
        "return jnp.moveaxis(x, -1, -3)", "return jnp.moveaxis(x, -1, -3).swapaxes(-1, -2)"
    )
    report = _graded(tmp_path, "lab07", swapped, "channels_first_moves")
    by_name = {o.name.split("[")[-1]: o for o in report.outcomes}
    assert {k: o.status for k, o in by_name.items()} == {
        "HWC]": "failed",
        "NHWC-rgb]": "failed",
        "NHWC-gray]": "failed",
    }
    assert by_name["HWC]"].picture == b"" and by_name["NHWC-rgb]"].picture == b""  # a shape mismatch: nothing to draw
    png = by_name["NHWC-gray]"].picture  # (4, 6, 6, 1) -> (4, 1, 6, 6): the same shape, transposed
    assert png.startswith(b"\x89PNG") and len(png) < picture.MAX_BYTES


@pytest.mark.solutions_only
def test_lab08_with_its_padding_on_the_wrong_side_is_graded_with_a_picture(tmp_path):
    source = lab_as_student("lab08")
    shifted = source.replace("jnp.pad(x, ((0, 0), ph, pw, (0, 0)))", "jnp.pad(x, ((0, 0), ph[::-1], pw[::-1], (0, 0)))")
    assert shifted != source
    report = _graded(tmp_path, "lab08", shifted, "conv2d_agrees_with_xla")
    status = {o.name.split("[")[-1].rstrip("]"): o for o in report.outcomes}
    assert status["same-s2-k2x4"].status == "failed" and status["same-s2-k2x4"].picture.startswith(b"\x89PNG")
    for case in ("valid-s1-k3x3", "valid-s2-k3x3", "same-s1-k3x3"):  # symmetric padding: passing, no picture
        assert status[case].status == "passed" and status[case].picture == b""
