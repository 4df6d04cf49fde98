"""Graded tests for lab 09, hierarchical filters. References: numpy, and scenes built by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from course.grader.testing import expect, expect_close, expect_shape, seeded_key


def test_max_pool3_matches_numpy(lab, key):
    x = jax.random.normal(key, (2, 9, 12, 3))
    want = np.asarray(x).reshape(2, 3, 3, 4, 3, 3).max(axis=(2, 4))
    expect_close(lab.max_pool3(x), want, "3×3 max-pooling", atol=0)


def test_strokes_mark_only_the_centre_of_a_stroke(lab):
    image = np.zeros((1, 9, 9, 1), np.float32)
    image[0, 4, 3:6, 0] = 1.0  # a 3-pixel horizontal stroke centred at (4, 4)
    image[0, 0:3, 8, 0] = 1.0  # a 3-pixel vertical stroke centred at (1, 8)
    s = lab.strokes(jnp.asarray(image))
    expect_shape(s, (1, 9, 9, 2), "stroke maps")
    want = np.zeros((1, 9, 9, 2), np.float32)
    want[0, 4, 4, 0] = 1.0  # horizontal filter at the centre: 3·2 = 6 > 5; at the ends only 2·2 = 4
    want[0, 1, 8, 1] = 1.0
    expect_close(s, want, "stroke centres (1.0) and nothing else", atol=0)


def test_parts_find_an_eye_pair_a_nose_and_a_mouth(lab):
    pooled = np.zeros((1, 9, 9, 2), np.float32)
    pooled[0, 1, [3, 5], 0] = 1.0  # two eyes with a gap
    pooled[0, 3:6, 4, 1] = 1.0  # a nose
    pooled[0, 7, 3:6, 0] = 1.0  # a mouth
    p = np.asarray(lab.parts(jnp.asarray(pooled)))
    expect_shape(p, (1, 9, 9, 3), "part maps")
    for channel, name, where in [(0, "eye pair", (1, 4)), (1, "nose", (4, 4)), (2, "mouth", (7, 4))]:
        found = list(zip(*np.nonzero(p[0, :, :, channel])))
        expect(found == [where], f"{name}: expected exactly one at {where}, found at {found}")


@pytest.mark.points(3)
@pytest.mark.parametrize("cell", [(0, 0), (1, 2), (2, 1)], ids=["top-left", "middle-right", "bottom-middle"])
def test_the_detector_fires_on_the_face_and_nowhere_else(lab, key, cell):
    scores = np.asarray(lab.face_scores(lab.make_scene(cell, key=key)[None]))
    expect_shape(scores, (1, 7, 7, 1), "face scores of an 81×81 scene")
    at = (3 * cell[0], 3 * cell[1])
    expect(
        scores[0, at[0], at[1], 0] > 2.5, f"expected a face score above 2.5 at {at}, got {scores[0, at[0], at[1], 0]}"
    )
    others = scores[0, :, :, 0].copy()
    others[at] = -np.inf
    expect(others.max() < 2.5, f"the detector also fires away from the face (max elsewhere {others.max()})")


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", range(3))
def test_no_face_no_detection_despite_half_faces_and_upside_down_faces(lab, seed):
    scores = np.asarray(lab.face_scores(lab.make_scene(None, key=seeded_key(seed))[None]))
    expect(scores.max() < 2.5, f"a scene of distractors only should score below 2.5 everywhere; max {scores.max()}")


@pytest.mark.points(2)
@pytest.mark.parametrize("shift", [(1, 0), (0, -1), (2, 2), (-2, 1)], ids=str)
def test_pooling_makes_the_detector_tolerant_to_small_shifts(lab, key, shift):
    scores = np.asarray(lab.face_scores(lab.make_scene((1, 1), key=key, shift=shift)[None]))
    expect(
        scores[0, 3, 3, 0] > 2.5,
        f"a face moved by {shift} pixels should still be found at (3, 3); score {scores[0, 3, 3, 0]}",
    )
