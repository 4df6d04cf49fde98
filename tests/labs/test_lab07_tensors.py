"""Graded tests for lab 07, images as tensors. References: numpy indexing and the luma formula."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from course.grader.testing import draw, expect, expect_close, expect_equal, expect_shape


@pytest.mark.points(2)
@pytest.mark.parametrize("shape", [(5, 7, 3), (2, 5, 7, 3), (4, 6, 6, 1)], ids=["HWC", "NHWC-rgb", "NHWC-gray"])
def test_channels_first_moves_the_right_axis(lab, key, shape):
    x = draw(jax.random.normal, key, shape)
    y = lab.to_channels_first(x)
    want = np.moveaxis(np.asarray(x), -1, -3)
    expect_close(y, want, f"to_channels_first of shape {shape}", atol=0)
    expect_close(lab.to_channels_last(y), x, "to_channels_last(to_channels_first(x)) round trip", atol=0)


def test_a_pixel_keeps_its_value_across_layouts(lab, key):
    x = jnp.arange(2 * 4 * 5 * 3, dtype=jnp.float32).reshape(2, 4, 5, 3)  # (N, H, W, C)
    y = lab.to_channels_first(x)  # (N, C, H, W)
    expect_shape(y, (2, 3, 4, 5), "NHWC (2, 4, 5, 3) as NCHW")
    expect_equal(y[1, 2, 3, 4], x[1, 3, 4, 2], "pixel n=1, h=3, w=4, channel 2")
    kx, kp = jax.random.split(key)  # the grading seed's batch, and a pixel of it
    x = draw(jax.random.normal, kx, (3, 6, 7, 3))  # (N, H, W, C)
    n, h, w, c = (int(i) for i in jax.random.randint(kp, (4,), 0, jnp.array([3, 6, 7, 3])))
    y = lab.to_channels_first(x)
    expect_shape(y, (3, 3, 6, 7), "NHWC (3, 6, 7, 3) as NCHW")
    expect_equal(y[n, c, h, w], x[n, h, w, c], f"pixel n={n}, h={h}, w={w}, channel {c}")


@pytest.mark.points(2)
def test_a_wrong_layout_is_caught_and_named(lab):
    nchw = jnp.zeros((8, 3, 28, 28))
    with pytest.raises(ValueError) as info:
        lab.to_channels_first(nchw)
    message = str(info.value)
    expect(
        re.search(r"(?i)channels?[- _]first", message) and re.search(r"(?i)ax[ie]s", message),
        f"the error should say the input looks channels-first and which axis is which; got: {message}",
    )
    with pytest.raises(ValueError, match=r"(?i)channels?[- _]last"):
        lab.to_channels_last(jnp.zeros((8, 28, 28, 3)))


def test_add_batch_axis(lab, key):
    image = jnp.ones((28, 28, 1))
    expect_shape(lab.add_batch_axis(image), (1, 28, 28, 1), "a batch of one")
    image = draw(jax.random.normal, key, (5, 4, 3))  # the grading seed's image
    expect_close(
        lab.add_batch_axis(image), np.asarray(image)[None], "a random (5, 4, 3) image as a batch of one", atol=0
    )


def test_grayscale_is_luma(lab, key):
    rgb = draw(jax.random.uniform, key, (2, 4, 5, 3))
    want = np.asarray(rgb, np.float64) @ np.array([0.299, 0.587, 0.114])
    expect_close(lab.grayscale(rgb), want[..., None], "grayscale (keeping a channel axis of 1)", atol=1e-6)


def test_flatten_is_row_major(lab, key):
    x = jnp.arange(2 * 3 * 4 * 2, dtype=jnp.float32).reshape(2, 3, 4, 2)
    flat = lab.flatten(x)
    expect_shape(flat, (2, 24), "flatten of (2, 3, 4, 2)")
    h, w, c = 2, 1, 1
    expect_equal(flat[1, h * 4 * 2 + w * 2 + c], x[1, h, w, c], "pixel (h=2, w=1, c=1) at index h·W·C + w·C + c")
    x = draw(jax.random.normal, key, (3, 5, 2, 3))  # the grading seed's batch: row-major is numpy's reshape
    expect_close(lab.flatten(x), np.asarray(x).reshape(3, 30), "flatten of a random (3, 5, 2, 3) batch", atol=0)


@pytest.mark.points(2)
def test_shuffle_applies_one_permutation_to_every_image(lab, key):
    kx, kp = jax.random.split(key)
    x = draw(jax.random.normal, kx, (3, 4, 4, 1))
    perm = jax.random.permutation(kp, 16)
    s = lab.shuffle_pixels(x, perm)
    expect_shape(s, x.shape, "shuffled batch")
    flat_x, flat_s = np.asarray(x).reshape(3, 16), np.asarray(s).reshape(3, 16)
    expect_close(flat_s, flat_x[:, np.asarray(perm)], "position i holds the input's position perm[i]", atol=0)
    inverse = jnp.argsort(perm)
    expect_close(lab.shuffle_pixels(s, inverse), x, "shuffling back with the inverse permutation", atol=0)
