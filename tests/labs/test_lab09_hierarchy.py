"""Graded tests for lab 09, hierarchical filters. References: numpy, and scenes built by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from course.grader.testing import draw, expect, expect_close, expect_shape, seeded_key


def test_max_pool3_matches_numpy(lab, key):
    x = draw(jax.random.normal, key, (2, 9, 12, 3))
    want = np.asarray(x).reshape(2, 3, 3, 4, 3, 3).max(axis=(2, 4))
    expect_close(lab.max_pool3(x), want, "3×3 max-pooling", atol=0)


def test_strokes_mark_only_the_centre_of_a_stroke(lab, key):
    image = np.zeros((1, 9, 9, 1), np.float32)
    image[0, 4, 3:6, 0] = 1.0  # a 3-pixel horizontal stroke centred at (4, 4)
    image[0, 0:3, 8, 0] = 1.0  # a 3-pixel vertical stroke centred at (1, 8)
    s = lab.strokes(jnp.asarray(image))
    expect_shape(s, (1, 9, 9, 2), "stroke maps")
    want = np.zeros((1, 9, 9, 2), np.float32)
    want[0, 4, 4, 0] = 1.0  # horizontal filter at the centre: 3·2 = 6 > 5; at the ends only 2·2 = 4
    want[0, 1, 8, 1] = 1.0
    expect_close(s, want, "stroke centres (1.0) and nothing else", atol=0)
    # The grading seed's scenes, a batch of 4: in each, the two strokes in two different corners of a
    # 13×13 image, far enough apart (4 pixels) that no 3×3 filter sees both, so each is found at its
    # centre alone.
    corners = [(r, c) for r in (2, 9) for c in (2, 9)]
    image, want, centres = np.zeros((4, 13, 13, 1), np.float32), np.zeros((4, 13, 13, 2), np.float32), []
    for n, k in enumerate(jax.random.split(key, 4)):
        kc, kr = jax.random.split(k)
        (r1, c1), (r2, c2) = (corners[int(i)] for i in jax.random.permutation(kc, 4)[:2])
        r1, c1, r2, c2 = (
            x + int(d) for x, d in zip((r1, c1, r2, c2), draw(jax.random.randint, kr, (4,), minval=0, maxval=2))
        )
        image[n, r1, c1 - 1 : c1 + 2, 0] = 1.0  # horizontal, centred at (r1, c1)
        image[n, r2 - 1 : r2 + 2, c2, 0] = 1.0  # vertical, centred at (r2, c2)
        want[n, r1, c1, 0] = want[n, r2, c2, 1] = 1.0
        centres.append(((r1, c1), (r2, c2)))
    got = lab.strokes(jnp.asarray(image))
    expect_close(got, want, f"stroke centres at {centres} (image by image) and nothing else", atol=0)


def _face_parts(size, shifts):
    """Pooled strokes (len(shifts), size, size, 2): in each, two eyes with a gap, a nose and a mouth,
    moved by that image's (dr, dc)."""
    pooled = np.zeros((len(shifts), size, size, 2), np.float32)
    for n, (dr, dc) in enumerate(shifts):
        pooled[n, 1 + dr, [3 + dc, 5 + dc], 0] = 1.0  # two eyes with a gap
        pooled[n, 3 + dr : 6 + dr, 4 + dc, 1] = 1.0  # a nose
        pooled[n, 7 + dr, 3 + dc : 6 + dc, 0] = 1.0  # a mouth
    return pooled


def test_parts_find_an_eye_pair_a_nose_and_a_mouth(lab, key):
    # The lecture's face at the top of a 9×9 map, then 4 faces moved by the grading seed within 13×13
    # maps: a 'SAME' convolution moves its answer with them.
    seeded = [tuple(int(d) for d in row) for row in draw(jax.random.randint, key, (4, 2), minval=0, maxval=5)]
    for size, shifts in [(9, [(0, 0)]), (13, seeded)]:
        p = np.asarray(lab.parts(jnp.asarray(_face_parts(size, shifts))))
        expect_shape(p, (len(shifts), size, size, 3), "part maps")
        for n, (dr, dc) in enumerate(shifts):
            for channel, name, (r, c) in [(0, "eye pair", (1, 4)), (1, "nose", (4, 4)), (2, "mouth", (7, 4))]:
                where = (r + dr, c + dc)
                found = [(int(i), int(j)) for i, j in zip(*np.nonzero(p[n, :, :, channel]))]
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
