"""The graded tests' helpers (course.grader.testing): draw() is JAX's own draw, bit for bit.

(expect_close's and expect_equal's messages: tests/course/test_feedback.py; seeded_key: test_staff.py.)
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from course.grader.testing import draw

SAMPLERS = {
    "normal": (jax.random.normal, {}),
    "uniform": (jax.random.uniform, {"minval": -2.0, "maxval": 3.0}),
    "truncated_normal": (jax.random.truncated_normal, {"lower": -1.5, "upper": 2.0}),
    "randint": (jax.random.randint, {"minval": 0, "maxval": 256}),
    "bernoulli": (jax.random.bernoulli, {"p": 0.3}),
    "normal-bfloat16": (jax.random.normal, {"dtype": jnp.bfloat16}),
}
# A scalar, a power of two, one past it and three axes; each shape's own draw is compiled here, so few.
SHAPES = [(), (8,), (9,), (3, 2, 3)]


def _same_draw(name, shapes):
    sample, kwargs = SAMPLERS[name]
    key = jax.random.key(7)
    for shape in shapes:
        want, got = sample(key, shape=shape, **kwargs), draw(sample, key, shape, **kwargs)
        assert got.shape == want.shape and got.dtype == want.dtype, (shape, got.shape, got.dtype)
        assert np.array_equal(np.asarray(got), np.asarray(want)), shape


@pytest.mark.parametrize("name", SAMPLERS)
def test_draw_is_the_samplers_own_draw_bit_for_bit(name):
    _same_draw(name, SHAPES if name == "normal" else SHAPES[-1:])


def test_without_partitionable_threefry_draw_is_still_the_samplers_own():
    with jax.threefry_partitionable(False):  # where a flat draw is not the start of a longer one
        _same_draw("normal", SHAPES)


def test_draw_refuses_a_sampler_whose_elements_depend_on_each_other():
    with pytest.raises(ValueError, match="not 'permutation'.*call that one directly"):
        draw(jax.random.permutation, jax.random.key(0), (5,))
