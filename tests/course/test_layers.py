"""course.layers: the fast CPU layers equal XLA's own in value and gradient; the compile option is optional."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from course import layers
from course.grader.testing import draw


def xla_conv(x, w, b):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b


def reduce_window_pool(x, k):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, k, k, 1), (1, k, k, 1), "VALID")


def numpy_conv(x, w, b):
    """Lab 08's definition, in float64: y[n,i,j,f] = b_f + sum_{u,v,c} x[n,i+u,j+v,c] w[u,v,c,f]."""
    kh, kw = w.shape[:2]
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    return (
        sum(np.einsum("nhwc,cf->nhwf", x[:, u : u + oh, v : v + ow], w[u, v]) for u in range(kh) for v in range(kw)) + b
    )


@pytest.fixture
def conv_case():
    kx, kw, kb, ky = jax.random.split(jax.random.key(0), 4)
    x = draw(jax.random.normal, kx, (4, 11, 9, 3))
    w = draw(jax.random.normal, kw, (3, 3, 3, 5))
    b = draw(jax.random.normal, kb, (5,))
    dy = draw(jax.random.normal, ky, (4, 9, 7, 5))
    return x, w, b, dy


def test_conv2d_is_the_lab08_convolution(conv_case):
    x, w, b, _ = conv_case
    want = numpy_conv(*(np.asarray(a, np.float64) for a in (x, w, b)))
    np.testing.assert_allclose(layers.conv2d(x, w, b), want, atol=1e-4)
    np.testing.assert_allclose(layers.jit(layers.conv2d)(x, w, b), want, atol=1e-4)


def test_conv2d_gradients_with_the_cpu_option_equal_xla_defaults(conv_case):
    """The option changes which library runs the convolution, not what it computes."""
    x, w, b, dy = conv_case

    def vjp(conv):
        return lambda x, w, b: jax.vjp(conv, x, w, b)[1](dy)

    want = jax.jit(vjp(xla_conv))(x, w, b)  # no compile options: XLA's default path
    got = layers.jit(vjp(layers.conv2d))(x, w, b)
    for g, h, name in zip(got, want, ("dx", "dw", "db")):
        np.testing.assert_allclose(g, h, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("kernel", [(3, 3), (2, 4)])
def test_conv2d_canonical_backward_equals_xla_gradients(kernel):
    """The gradients written out for Eigen (course.layers.canonical_backward) are XLA's own."""
    kx, kw, kb, ky = jax.random.split(jax.random.key(1), 4)
    x = draw(jax.random.normal, kx, (3, 10, 8, 4))
    w = draw(jax.random.normal, kw, (*kernel, 4, 6))
    b = draw(jax.random.normal, kb, (6,))
    dy = draw(jax.random.normal, ky, (3, 10 - kernel[0] + 1, 8 - kernel[1] + 1, 6))

    def grads(x, w, b):
        with layers.canonical_backward():
            y, vjp = jax.vjp(layers.conv2d, x, w, b)
        return y, vjp(dy)

    want_y, want_vjp = jax.vjp(xla_conv, x, w, b)
    want = want_vjp(dy)
    for jitted in (grads, layers.jit(grads)):
        y, got = jitted(x, w, b)
        np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-5)
        for g, h, name in zip(got, want, ("dx", "dw", "db")):
            np.testing.assert_allclose(g, h, rtol=1e-4, atol=1e-4, err_msg=name)


def test_conv2d_gradients_inside_a_scan_stay_in_eigens_layout():
    """In a loop body XLA:CPU does not reorder a convolution's dimensions for Eigen; written out, they are."""
    if jax.default_backend() != "cpu" or layers.cpu_compiler_options() is None:
        pytest.skip("the layout question is XLA:CPU's, with convolutions sent to Eigen")
    x = jnp.ones((5, 4, 10, 10, 3))  # 5 steps of a batch of 4
    w, b = jnp.ones((3, 3, 3, 8)), jnp.zeros((8,))

    def loop(w, b, x):
        def body(carry, xi):
            w, b = carry
            dw, db = jax.grad(lambda w, b: jnp.sum(layers.conv2d(xi, w, b) ** 2), argnums=(0, 1))(w, b)
            return (w - 0.01 * dw, b - 0.01 * db), None

        with layers.canonical_backward():
            return jax.lax.scan(body, (w, b), x)[0]

    hlo = layers.jit(loop).lower(w, b, x).compile().as_text()
    labels = [line.split("dim_labels=")[1].split(",")[0] for line in hlo.splitlines() if " convolution(" in line]
    assert len(labels) == 2, labels  # the forward convolution and the kernel's gradient (x is not differentiated)
    assert set(labels) == {"b01f_01io->b01f"}, labels


def test_conv2d_canonical_backward_takes_what_the_plain_one_takes():
    """A scalar bias, a bfloat16 convolution with a float32 bias: the same gradients either way."""
    x = draw(jax.random.normal, jax.random.key(2), (2, 6, 6, 3))
    w = draw(jax.random.normal, jax.random.key(3), (3, 3, 3, 4))
    for x, w, b in [(x, w, 0.5), (x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), jnp.ones((4,)))]:

        def loss(x, w, b):
            return jnp.sum(layers.conv2d(x, w, b).astype(jnp.float32) ** 2)

        want = jax.grad(loss, argnums=(0, 1, 2))(x, w, b)
        with layers.canonical_backward():
            got = jax.grad(loss, argnums=(0, 1, 2))(x, w, b)
        for g, h in zip(got, want):
            assert g.dtype == h.dtype and g.shape == h.shape
            np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(h, np.float32), rtol=2e-2, atol=2e-2)


def test_conv2d_outside_canonical_backward_keeps_forward_mode():
    x, w, b = jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 4)), jnp.ones((4,))
    _, tangent = jax.jvp(layers.conv2d, (x, w, b), (x, w, b))  # forward mode: an ordinary convolution
    np.testing.assert_allclose(tangent, 2 * xla_conv(x, w, b) - b, rtol=1e-6)
    with layers.canonical_backward(), pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(layers.conv2d, (x, w, b), (x, w, b))


def test_conv2d_module_equals_nnx_conv_with_keras_init():
    ours = layers.Conv2D(3, 8, (3, 3), rngs=nnx.Rngs(0))
    limit = np.sqrt(6 / (3 * 3 * 3 + 3 * 3 * 8))  # Glorot-uniform: ±sqrt(6 / (fan_in + fan_out))
    assert 0.5 * limit < np.abs(ours.kernel[...]).max() <= limit and not ours.bias[...].any()
    # Theirs starts at zero: its parameters are overwritten with ours (its own initializer would only cost a compile).
    theirs = nnx.Conv(3, 8, (3, 3), padding="VALID", kernel_init=nnx.initializers.zeros_init(), rngs=nnx.Rngs(1))
    theirs.kernel[...] = ours.kernel[...]
    theirs.bias[...] = draw(jax.random.normal, jax.random.key(2), (8,))
    ours.bias[...] = theirs.bias[...]
    x = draw(jax.random.normal, jax.random.key(3), (2, 10, 10, 3))
    np.testing.assert_allclose(ours(x), theirs(x), atol=1e-5)
    # And in gradient, with respect to the input and to both parameters, compiled as the loop compiles it.
    dy = draw(jax.random.normal, jax.random.key(4), (2, 8, 8, 8))
    grads = []
    for module in (ours, theirs):
        graphdef, params = nnx.split(module, nnx.Param)

        def pullback(params, x, graphdef=graphdef):
            return jax.vjp(lambda p, v: nnx.merge(graphdef, p)(v), params, x)[1](dy)

        grads.append(layers.jit(pullback)(params, x))
    (dp_ours, dx_ours), (dp_theirs, dx_theirs) = grads
    np.testing.assert_allclose(dx_ours, dx_theirs, atol=1e-4)
    np.testing.assert_allclose(dp_ours["kernel"][...], dp_theirs["kernel"][...], atol=1e-4)
    np.testing.assert_allclose(dp_ours["bias"][...], dp_theirs["bias"][...], atol=1e-4)
    # Keras' defaults: Glorot-uniform kernel within ±sqrt(6 / (9·3 + 9·8)), zero bias.
    fresh = layers.Conv2D(3, 8, (3, 3), rngs=nnx.Rngs(0))
    assert np.abs(np.asarray(fresh.kernel[...])).max() <= np.sqrt(6 / (27 + 72))
    assert not np.asarray(fresh.bias[...]).any()


@pytest.mark.parametrize(
    "shape,window", [((3, 24, 24, 4), 2), ((2, 7, 9, 3), 2), ((2, 9, 10, 2), 3)], ids=["even-2", "odd-2", "window-3"]
)
def test_max_pool_equals_reduce_window_in_value_and_gradient(shape, window):
    x = draw(jax.random.normal, jax.random.key(0), shape)  # continuous values: every window has one maximum
    want = reduce_window_pool(x, window)
    np.testing.assert_array_equal(layers.max_pool(x, window), want)
    dy = draw(jax.random.normal, jax.random.key(1), want.shape)
    grad = lambda pool: jax.jit(lambda x: jax.vjp(pool, x)[1](dy)[0])(x)  # noqa: E731
    np.testing.assert_allclose(
        grad(lambda x: layers.max_pool(x, window)), grad(lambda x: reduce_window_pool(x, window)), atol=1e-6
    )


def test_pool_then_relu_equals_relu_then_pool():
    x = draw(jax.random.normal, jax.random.key(0), (2, 8, 8, 3))
    np.testing.assert_array_equal(jax.nn.relu(layers.max_pool(x)), reduce_window_pool(jax.nn.relu(x), 2))


def test_cpu_option_only_on_the_cpu_and_only_where_accepted(monkeypatch):
    assert layers.cpu_compiler_options("gpu") is None
    assert layers.cpu_compiler_options("tpu") is None
    accepted = layers.cpu_compiler_options("cpu")
    assert accepted in (
        None,
        {layers.YNN_OPTION: layers.YNN_DOTS_AND_REDUCTIONS},
        {layers.YNN_OPTION: layers.YNN_DOTS_ONLY},
    )
    # A jaxlib that does not know a value: detected at compile time, and the course falls back cleanly,
    # first to products alone, then to no option at all.
    try:
        monkeypatch.setattr(layers, "YNN_DOTS_AND_REDUCTIONS", "NO_SUCH_FUSION_TYPE")
        layers._ynn_value.cache_clear()
        expected = None if accepted is None else {layers.YNN_OPTION: layers.YNN_DOTS_ONLY}
        assert layers.cpu_compiler_options("cpu") == expected
        monkeypatch.setattr(layers, "YNN_DOTS_ONLY", "NO_SUCH_FUSION_TYPE_EITHER")
        layers._ynn_value.cache_clear()
        assert layers.cpu_compiler_options("cpu") is None
        np.testing.assert_allclose(layers.jit(lambda v: v * 2)(jnp.arange(3.0)), [0.0, 2.0, 4.0])
    finally:
        monkeypatch.undo()
        layers._ynn_value.cache_clear()


def test_cpu_option_sends_convolutions_to_eigen_and_reductions_to_ynnpack():
    """What the option is for, read from the compiled program: a convolution stays XLA's (Eigen), a bias
    gradient's reduction goes to YNNPACK (XLA's own reduction of it was a few milliseconds slower)."""
    if layers.cpu_compiler_options() != {layers.YNN_OPTION: layers.YNN_DOTS_AND_REDUCTIONS}:
        pytest.skip(f"this jaxlib takes {layers.cpu_compiler_options()}, not products and reductions")
    x, w = jnp.ones((4, 26, 26, 32)), jnp.ones((3, 3, 32, 8))  # XLA keeps reductions of a few values
    compiled = layers.jit(lambda x, w: (layers.conv2d(x, w, jnp.zeros(8)), x.sum((0, 1, 2)))).lower(x, w).compile()
    hlo = compiled.as_text()
    fusions = re.findall(r"^\s*(?:ROOT )?%\S+ = \S+ fusion\(.*$", hlo, flags=re.M)
    ynn = [line for line in fusions if "__ynn_fusion" in line]
    assert re.search(r"= f32\[4,24,24,8\]\S* convolution\(", hlo), "the convolution should be in the program"
    assert not any("= f32[4,24,24,8]" in line for line in ynn), "the convolution should be XLA's (Eigen's), not YNN's"
    assert any("= f32[32]" in line for line in ynn), "the reduction should be a YNNPACK fusion"
