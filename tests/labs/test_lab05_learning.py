"""Graded tests for lab 05, how we learn. References: float64 finite differences, calculus, numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from course.grader.testing import draw, expect, expect_close, expect_shape


def _problem(key, n=8, d=3, m=5):
    k = jax.random.split(key, 5)
    params = {
        "w1": draw(jax.random.normal, k[0], (d, m)),
        "b1": draw(jax.random.normal, k[1], (m,)),
        "w2": draw(jax.random.normal, k[2], (m, 1)),
        "b2": draw(jax.random.normal, k[3], (1,)),
    }
    x = draw(jax.random.normal, k[4], (n, d))
    return params, x, jnp.sin(x[:, :1])


def _np_loss(params, x, y):
    """An independent float64 numpy version of the lab's loss."""
    h = np.tanh(x @ params["w1"] + params["b1"])
    return np.mean((h @ params["w2"] + params["b2"] - y) ** 2)


def _np_finite_differences(params, x, y, eps=1e-6):
    grads = {}
    for name, value in params.items():
        g = np.zeros_like(value)
        for i in np.ndindex(value.shape):
            plus = {**params, name: value.copy()}
            minus = {**params, name: value.copy()}
            plus[name][i] += eps
            minus[name][i] -= eps
            g[i] = (_np_loss(plus, x, y) - _np_loss(minus, x, y)) / (2 * eps)
        grads[name] = g
    return grads


@pytest.mark.points(2)
@pytest.mark.parametrize("method", ["backprop", "autodiff"])
def test_gradient_matches_numpy_finite_differences(lab, key, method):
    params, x, y = _problem(key)
    np_params = {k: np.asarray(v, np.float64) for k, v in params.items()}
    want = _np_finite_differences(np_params, np.asarray(x, np.float64), np.asarray(y, np.float64))
    got = getattr(lab, method)(params, x, y)
    for name in params:
        expect_close(got[name], want[name], f"{method}: gradient for {name}", atol=2e-5, rtol=1e-4)


def _fd_of_loss_x64(lab, params, x, y):
    """Runs in the sandbox: the lab's finite differences of the lab's loss, in float64."""
    with jax.enable_x64(True):
        p64 = {k: jnp.asarray(np.asarray(v), jnp.float64) for k, v in params.items()}
        x64, y64 = jnp.asarray(np.asarray(x), jnp.float64), jnp.asarray(np.asarray(y), jnp.float64)
        return lab.finite_differences(lambda p: lab.loss(p, x64, y64), p64)


@pytest.mark.points(2)
def test_finite_differences_in_float64(lab, key):
    params, x, y = _problem(key)
    got = lab.run(_fd_of_loss_x64, params, x, y)
    want = _np_finite_differences(
        {k: np.asarray(v, np.float64) for k, v in params.items()}, np.asarray(x, np.float64), np.asarray(y, np.float64)
    )
    for name in params:
        expect_shape(got[name], params[name].shape, f"finite_differences[{name!r}]")
        expect_close(got[name], want[name], f"finite_differences for {name} (float64)", atol=1e-7, rtol=1e-6)


def _fd_of_known_function(lab, a, b):
    """Runs in the sandbox: f(a, b) = sum(a²) + 3·b in float64."""
    with jax.enable_x64(True):
        params = {"a": jnp.array(np.asarray(a), jnp.float64), "b": jnp.array(np.asarray(b), jnp.float64)}
        return lab.finite_differences(lambda p: jnp.sum(p["a"] ** 2) + 3 * p["b"], params)


def test_finite_differences_of_a_known_function(lab, key):
    # f(a, b) = sum(a²) + 3·b  ->  ∂f/∂a = 2a, ∂f/∂b = 3: at the lecture's point, then at the grading seed's.
    got = lab.run(_fd_of_known_function, np.array([1.0, -2.0]), np.array(0.5))
    expect_close(got["a"], [2.0, -4.0], "d/da of sum(a²)", atol=1e-6)
    expect_close(got["b"], 3.0, "d/db of 3b", atol=1e-6)
    ka, kb = jax.random.split(key)
    a, b = np.asarray(draw(jax.random.normal, ka, (3,)), np.float64), np.asarray(jax.random.normal(kb, ()), np.float64)
    got = lab.run(_fd_of_known_function, a, b)
    expect_close(got["a"], 2 * a, f"d/da of sum(a²) at a = {np.round(a, 4)}", atol=1e-6)
    expect_close(got["b"], 3.0, f"d/db of 3b at b = {b:.4f}", atol=1e-6)


@pytest.mark.points(2)
def test_per_example_gradients_average_to_the_batch_gradient(lab, key):
    params, x, y = _problem(key, n=6)
    per = lab.per_example_grads(params, x, y)
    np_params = {k: np.asarray(v, np.float64) for k, v in params.items()}
    for name in params:
        expect_shape(per[name], (6, *params[name].shape), f"per-example gradients of {name}")
    for i in (0, 5):  # each row is the gradient of that example alone
        xi, yi = np.asarray(x, np.float64)[i : i + 1], np.asarray(y, np.float64)[i : i + 1]
        want = _np_finite_differences(np_params, xi, yi)
        expect_close(per["w1"][i], want["w1"], f"gradient of example {i} for w1", atol=2e-5, rtol=1e-4)
    batch = _np_finite_differences(np_params, np.asarray(x, np.float64), np.asarray(y, np.float64))
    expect_close(
        np.mean(np.asarray(per["w2"]), axis=0), batch["w2"], "mean of per-example gradients", atol=2e-5, rtol=1e-4
    )


@pytest.mark.parametrize(
    "f, x, want",
    [(lambda x: x**3, 2.0, 12.0), (jnp.sin, 0.7, -np.sin(0.7)), (lambda x: jnp.exp(2 * x), 0.0, 4.0)],
    ids=["cube", "sin", "exp2x"],
)
def test_second_derivative(lab, f, x, want):
    got = lab.run(lambda lab, f, x: lab.second_derivative(f)(x), f, jnp.float32(x))
    expect_close(got, want, "f''(x)", atol=1e-4)


@pytest.mark.points(2)
@pytest.mark.parametrize("depth", [1, 4, 12])
def test_scan_fold_equals_the_unrolled_loop(lab, key, depth):
    kw, kb, kz = jax.random.split(key, 3)
    ws = draw(jax.random.normal, kw, (depth, 6, 6)) / np.sqrt(6)
    bs = draw(jax.random.normal, kb, (depth, 6))
    z = draw(jax.random.normal, kz, (3, 6))
    want = np.asarray(z, np.float64)
    for w, b in zip(np.asarray(ws, np.float64), np.asarray(bs, np.float64)):
        want = np.tanh(want @ w + b)
    got = lab.deep_scan(ws, bs, z)
    expect_close(got, want, f"deep_scan with {depth} layers", atol=1e-5)


@pytest.mark.unverifiable  # the jaxpr is the sandbox's word: it cannot be recomputed here, so 1 point
def test_scan_fold_uses_lax_scan(lab):
    ws, bs, z = jnp.zeros((3, 6, 6)), jnp.zeros((3, 6)), jnp.zeros((2, 6))
    jaxpr = lab.run(lambda lab, *a: str(jax.make_jaxpr(lab.deep_scan)(*a)), ws, bs, z)
    expect("scan" in jaxpr, "deep_scan should use jax.lax.scan (no scan found in its jaxpr)")
