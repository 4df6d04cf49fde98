"""The course's image helpers: the photograph, grayscale, and layout checks that name the axes."""

import jax.numpy as jnp
import numpy as np
import pytest

from course import images


def test_course_layout_checks_name_the_axes():
    with pytest.raises(ValueError, match=r"axis 1 has size 3, so this looks channels-first"):
        images.check_channels_last(jnp.zeros((8, 3, 28, 28)), "x")
    with pytest.raises(ValueError, match=r"looks channels-last"):
        images.check_channels_first(jnp.zeros((28, 28, 3)), "x")
    images.check_channels_last(jnp.zeros((28, 28, 1)), "x")


def test_photo_is_an_rgb_image():
    photo = images.photo()
    assert photo.ndim == 3 and photo.shape[-1] == 3 and photo.dtype == jnp.uint8


def test_to_grayscale_uses_luma_weights():
    rgb = jnp.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])  # (1, 3, 3): one row of 3 pixels
    np.testing.assert_allclose(np.asarray(images.to_grayscale(rgb))[0, :, 0], [0.299, 0.587, 0.114], atol=1e-6)
