"""Graded tests for lab 08, convolution from scratch.

References: the lecture's hand-worked example, channel arithmetic, and XLA's own
`lax.conv_general_dilated` / `lax.reduce_window` (an independent implementation).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from course.grader.testing import draw, expect, expect_close, expect_equal, expect_shape

# The vertical-line filter: every row is (-1, 1, -1).
LINE = np.tile([-1.0, 1.0, -1.0], (3, 1)).astype(np.float32)
# The lecture's two patches, worked by hand with the filter's rows (-1, 1, -1):
#   [[0,1,0],[0,1,0],[0,1,0]]: each row 0*(-1) + 1*1 + 0*(-1) = 1, so 1 + 1 + 1 = 3;
#   [[1,1,0],[0,0,0],[1,0,1]]: row 1: -1 + 1 + 0 = 0, row 2: 0, row 3: -1 + 0 - 1 = -2; in all, -3 + 1 = -2.
PATCH_LINE = np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0]], np.float32)
PATCH_OFF = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 1]], np.float32)


def _xla_conv(x, w, b, stride, padding):
    y = jax.lax.conv_general_dilated(
        x, w, (stride, stride), padding.upper(), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return y + b[None, None, None, :]


def _xla_pool(x, window, stride, kind):
    dims, strides = (1, window, window, 1), (1, stride, stride, 1)
    if kind == "max":
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, dims, strides, "VALID")
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, strides, "VALID") / (window * window)


@pytest.mark.points(2)
def test_the_lecture_worked_example(lab, key):
    x = jnp.asarray(np.stack([PATCH_LINE, PATCH_OFF])[..., None])  # (2, 3, 3, 1)
    w = jnp.asarray(LINE[:, :, None, None])  # (3, 3, 1, 1)
    y = lab.conv2d(x, w, jnp.zeros(1))
    expect_shape(y, (2, 1, 1, 1), "one 3×3 filter on two 3×3 patches ('valid')")
    expect_close(y[:, 0, 0, 0], [3.0, -2.0], "the vertical-line filter on the two patches", atol=1e-6)
    # The same filter on the grading seed's 0/1 patches: each output is the sum of patch × filter.
    patches = np.asarray(draw(jax.random.bernoulli, key, (4, 3, 3), p=0.5), np.float32)
    y = lab.conv2d(jnp.asarray(patches[..., None]), w, jnp.zeros(1))
    want = (patches * LINE).sum(axis=(1, 2))
    expect_close(np.asarray(y)[:, 0, 0, 0], want, "the vertical-line filter on 4 random patches", atol=1e-6)


@pytest.mark.points(2)
def test_channel_arithmetic(lab, key):
    expect_equal(lab.output_size(26, 3), 24, "output size of 26 with a 3×3 'valid' filter")
    expect_equal(lab.conv_params(3, 3, 6, 4), 4 * (3 * 3 * 6 + 1), "parameters of Conv2D(4, (3, 3)) on 6 channels")
    kx, kw = jax.random.split(key)
    y = lab.conv2d(draw(jax.random.normal, kx, (1, 26, 26, 6)), draw(jax.random.normal, kw, (3, 3, 6, 4)), jnp.zeros(4))
    expect_shape(y, (1, 24, 24, 4), "26×26×6 through Conv2D(4, (3, 3))")


@pytest.mark.parametrize(
    "n, k, stride, padding, want",
    [
        (28, 3, 1, "valid", 26),
        (28, 3, 1, "same", 28),
        (28, 3, 2, "valid", 13),
        (28, 3, 2, "same", 14),
        (27, 3, 3, "valid", 9),
        (7, 2, 2, "same", 4),
        (5, 5, 1, "valid", 1),
    ],
    ids=lambda v: str(v),
)
def test_output_size(lab, key, n, k, stride, padding, want):
    # valid: floor((n - k) / s) + 1; same: ceil(n / s)
    expect_equal(
        lab.output_size(n, k, stride=stride, padding=padding),
        want,
        f"output_size({n}, {k}, stride={stride}, padding={padding!r})",
    )
    # A longer axis of the grading seed's, at this stride and at a larger one.
    kn, ks = jax.random.split(key)
    n = n + int(jax.random.randint(kn, (), 1, 100_000))
    for s in (stride, stride + int(jax.random.randint(ks, (), 1, 4))):
        want = (n - k) // s + 1 if padding == "valid" else -(-n // s)
        got = lab.output_size(n, k, stride=s, padding=padding)
        expect_equal(got, want, f"output_size({n}, {k}, stride={s}, padding={padding!r})")


CASES = [
    ((2, 9, 9, 3), (3, 3, 3, 4), 1, "valid"),
    ((1, 10, 7, 2), (3, 3, 2, 5), 2, "valid"),
    ((3, 8, 8, 1), (3, 3, 1, 2), 1, "same"),
    ((2, 9, 10, 3), (2, 4, 3, 3), 2, "same"),
    ((1, 11, 11, 4), (5, 5, 4, 1), 3, "same"),
]


@pytest.mark.points(3)
@pytest.mark.parametrize("xs, ws, stride, padding", CASES, ids=[f"{p}-s{s}-k{w[0]}x{w[1]}" for _, w, s, p in CASES])
def test_conv2d_agrees_with_xla(lab, key, xs, ws, stride, padding):
    kx, kw, kb = jax.random.split(key, 3)
    x, w, b = draw(jax.random.normal, kx, xs), draw(jax.random.normal, kw, ws), draw(jax.random.normal, kb, (ws[3],))
    want = _xla_conv(x, w, b, stride, padding)
    expect_close(
        lab.conv2d(x, w, b, stride=stride, padding=padding),
        want,
        "conv2d vs lax.conv_general_dilated",
        atol=1e-4,
        rtol=1e-4,
    )
    jitted = lab.run(
        lambda lab, x, w, b: jax.jit(lambda x, w, b: lab.conv2d(x, w, b, stride=stride, padding=padding))(x, w, b),
        x,
        w,
        b,
    )
    expect_close(jitted, want, "jax.jit(conv2d)", atol=1e-4, rtol=1e-4)
    ws_stack = jnp.stack([w, -w, 2 * w])  # vmap over three filter banks
    mapped = lab.run(
        lambda lab, ws: jax.vmap(lambda w: lab.conv2d(x, w, b, stride=stride, padding=padding))(ws), ws_stack
    )
    expect_close(
        mapped[2], _xla_conv(x, 2 * w, b, stride, padding), "jax.vmap(conv2d) over filter banks", atol=1e-4, rtol=1e-4
    )


@pytest.mark.points(2)
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("window, stride", [(2, 2), (3, 3), (3, 2)], ids=["w2s2", "w3s3", "w3s2"])
def test_pool2d_agrees_with_xla(lab, key, kind, window, stride):
    x = draw(jax.random.normal, key, (2, 9, 10, 3))
    want = _xla_pool(x, window, stride, kind)
    expect_close(
        lab.pool2d(x, window=window, stride=stride, kind=kind), want, f"{kind} pooling vs lax.reduce_window", atol=1e-5
    )
    pool = lambda lab, x: lab.pool2d(x, window=window, stride=stride, kind=kind)  # noqa: E731
    expect_close(lab.run(lambda lab, x: jax.jit(lambda x: pool(lab, x))(x), x), want, "jitted pooling", atol=1e-5)
    stacked = jnp.stack([x, 2 * x])  # vmap over an extra leading axis
    mapped = lab.run(lambda lab, xs: jax.vmap(lambda x: pool(lab, x))(xs), stacked)
    expect_close(mapped[1], _xla_pool(2 * x, window, stride, kind), "jax.vmap(pool2d)", atol=1e-5)


@pytest.mark.parametrize(
    "kind, want", [("max", [[5.0, 7.0], [13.0, 15.0]]), ("avg", [[2.5, 4.5], [10.5, 12.5]])], ids=["max", "avg"]
)
def test_pool_stride_defaults_to_the_window(lab, key, kind, want):
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)  # rows 0-3, 4-7, 8-11, 12-15
    got = lab.pool2d(x, window=2, kind=kind)[0, :, :, 0]
    expect_close(got, want, f"2×2 {kind} pool of 0..15 (the stride defaults to 2)", atol=1e-6)
    x = draw(jax.random.normal, key, (2, 6, 9, 2))  # the grading seed's batch
    got = lab.pool2d(x, window=3, kind=kind)
    expect_close(got, _xla_pool(x, 3, 3, kind), f"3×3 {kind} pool (the stride defaults to 3)", atol=1e-5)


def _jaxprs(lab, x, w):
    """Runs in the sandbox: the programs that conv2d and pool2d trace to, as text."""
    conv = str(jax.make_jaxpr(lambda x, w: lab.conv2d(x, w, jnp.zeros(2), stride=2, padding="same"))(x, w))
    pool = str(jax.make_jaxpr(lambda x: lab.pool2d(x, window=2, kind="max"))(x))
    try:  # average pooling's own tests check its name; this one only reads what it traces to
        pool += str(jax.make_jaxpr(lambda x: lab.pool2d(x, window=2, kind="avg"))(x))
    except Exception:
        pass
    big = str(jax.make_jaxpr(lambda x, w: lab.conv2d(x, w, jnp.zeros(2)))(jnp.ones((1, 64, 64, 2)), w))
    small = str(jax.make_jaxpr(lambda x, w: lab.conv2d(x, w, jnp.zeros(2)))(jnp.ones((1, 8, 8, 2)), w))
    return conv, pool, big, small


@pytest.mark.unverifiable  # the jaxprs are the sandbox's word: they cannot be recomputed here, so 1 point
def test_from_scratch_uses_no_convolution_or_window_primitive(lab, key):
    # A program without those primitives counts only if it computes the right thing (a function that
    # returns its input has none either): the grading seed's inputs, against XLA's own ops.
    kx, kw = jax.random.split(key)
    x, w = draw(jax.random.normal, kx, (1, 8, 8, 2)), draw(jax.random.normal, kw, (3, 3, 2, 2))
    got = lab.conv2d(x, w, jnp.zeros(2), stride=2, padding="same")
    expect_close(got, _xla_conv(x, w, jnp.zeros(2), 2, "same"), "conv2d (stride 2, 'same')", atol=1e-4, rtol=1e-4)
    got = lab.pool2d(x, window=2, kind="max")
    expect_close(got, _xla_pool(x, 2, 2, "max"), "2×2 max pooling", atol=1e-5)
    conv, pool, big, small = lab.run(_jaxprs, jnp.ones((1, 8, 8, 2)), jnp.ones((3, 3, 2, 2)))
    expect("conv_general_dilated" not in conv, "conv2d must be written with jax.numpy, not lax.conv_general_dilated")
    expect("reduce_window" not in pool, "pool2d must be written with jax.numpy, not lax.reduce_window")
    # Vectorised: the program does not grow with the image (no Python loop over pixels).
    expect(
        big.count("\n") <= small.count("\n") + 2,
        "conv2d's program grows with the image size: loop over the filter, not the pixels",
    )
