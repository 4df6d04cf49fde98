"""Graded tests for lab 03, universal approximation. References: numpy, and facts about ReLU nets."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from course import datasets
from course.grader.testing import draw, expect, expect_close, expect_shape, numpy_mlp, seeded_key


@pytest.mark.parametrize("width, depth", [(1, 1), (16, 1), (4, 2), (40, 2)], ids=["1x1", "16x1", "4x2", "40x2"])
def test_init_network_shapes(lab, key, width, depth):
    params = lab.init_network(width, depth, key=key)
    sizes = [1] + [width] * depth + [1]
    expect(len(params) == depth + 1, f"init_network({width}, {depth}): expected {depth + 1} layers, got {len(params)}")
    for i, (layer, n_in, n_out) in enumerate(zip(params, sizes[:-1], sizes[1:])):
        expect_shape(layer["w"], (n_in, n_out), f"layer {i} weights")
        expect_shape(layer["b"], (n_out,), f"layer {i} biases")
    if width >= 16:
        expect(float(jnp.std(params[0]["b"])) > 0.3, "hidden biases should be random N(0, 1), not zero")


def test_forward_matches_a_hand_computation(lab, key):
    # Hidden: relu(x·[1, -1] + [0, 0.5]); output: h·[2, 3] - 1. At x = 1: h = [1, 0] -> 1; at x = -1: h = [0, 1.5] -> 3.5
    params = [
        {"w": jnp.array([[1.0, -1.0]]), "b": jnp.array([0.0, 0.5])},
        {"w": jnp.array([[2.0], [3.0]]), "b": jnp.array([-1.0])},
    ]
    expect_close(lab.forward(params, jnp.array([[1.0], [-1.0]])), [[1.0], [3.5]], "forward with relu", atol=1e-6)
    expect_close(
        lab.forward(params, jnp.array([[1.0]]), jnp.tanh),
        [[2 * np.tanh(1.0) + 3 * np.tanh(-0.5) - 1]],
        "forward with tanh",
        atol=1e-6,
    )
    # The grading seed's network (1 -> 6 -> 4 -> 1) and inputs, against numpy forward passes.
    keys = jax.random.split(key, 7)
    sizes = [1, 6, 4, 1]
    params = [
        {"w": draw(jax.random.normal, keys[2 * i], (a, b)), "b": draw(jax.random.normal, keys[2 * i + 1], (b,))}
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
    ]
    x = 2.0 * draw(jax.random.normal, keys[6], (9, 1))
    expect_close(lab.forward(params, x), numpy_mlp(params, x), "forward with relu, a random network", atol=1e-4)
    h = np.asarray(x, np.float64)
    for i, layer in enumerate(params):
        h = h @ np.asarray(layer["w"], np.float64) + np.asarray(layer["b"], np.float64)
        h = np.tanh(h) if i < len(params) - 1 else h
    expect_close(lab.forward(params, x, jnp.tanh), h, "forward with tanh, a random network", atol=1e-4)


def test_mse(lab, key):
    params = lab.init_network(3, 1, key=key)
    x = jnp.linspace(-1, 1, 7)[:, None]
    y = jnp.cos(x)
    want = np.mean((numpy_mlp(params, x) - np.cos(np.asarray(x, np.float64))) ** 2)  # an independent forward pass
    expect_close(lab.mse(params, x, y), want, "mse", atol=1e-6)


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", range(5))
def test_one_relu_neuron_is_monotone_with_at_most_one_kink(lab, seed):
    params = lab.init_network(1, 1, key=seeded_key(seed))
    xs = np.linspace(-3, 3, 601)
    ys = np.asarray(lab.forward(params, jnp.asarray(xs, jnp.float32)[:, None]), np.float64)[:, 0]
    slopes = np.diff(ys) / np.diff(xs)
    expect(np.all(slopes >= -1e-4) or np.all(slopes <= 1e-4), "a 1-neuron ReLU net v·relu(wx + b) + c must be monotone")
    kinks = np.flatnonzero(np.abs(np.diff(slopes)) > 1e-3)
    expect(
        len(kinks) <= 1 or kinks.max() - kinks.min() <= 1,
        f"expected at most one kink, found changes of slope at x = {xs[kinks + 1]}",
    )


def _best_monotone_mse(y):
    """The lowest MSE any monotone function can reach on y (pool-adjacent-violators, both directions)."""

    def increasing(v):
        blocks = []  # [mean, count]
        for value in v:
            blocks.append([value, 1])
            while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
                (m2, c2), (m1, c1) = blocks.pop(), blocks.pop()
                blocks.append([(m1 * c1 + m2 * c2) / (c1 + c2), c1 + c2])
        fit = np.concatenate([[m] * c for m, c in blocks])
        return np.mean((fit - v) ** 2)

    return min(increasing(y), increasing(-y))


@pytest.mark.points(3)
def test_a_wide_net_fits_the_bump_that_one_neuron_cannot(lab, key):
    k_train, k_test, k_init = jax.random.split(key, 3)
    x, y = datasets.regression_1d("bump", 100, key=k_train)
    x_test, y_test = datasets.regression_1d("bump", 200, key=k_test)
    # 64 wide: a 16-wide net misses the bump's flank from about a third of the keys (held-out MSE up to 0.02);
    # 64 reached at most 0.014 over 6000 keys, and the noise alone costs 0.0025.
    params, losses = lab.fit(lab.init_network(64, 1, key=k_init), x, y, optimizer=optax.adam(0.01), steps=2000)
    expect_shape(losses, (2000,), "losses from fit(steps=2000)")
    held_out = float(np.mean((numpy_mlp(params, x_test) - np.asarray(y_test, np.float64)) ** 2))  # recomputed here
    expect(held_out < 0.02, f"a 64-wide ReLU net should reach held-out MSE < 0.02 on the bump; got {held_out:.4f}")
    # Any 1-neuron ReLU net is monotone, so it can do no better than the best monotone function.
    bound = _best_monotone_mse(np.asarray(y_test, np.float64)[:, 0])
    expect(bound > 0.05, f"(test sanity) the best monotone fit should be poor, got MSE {bound:.4f}")


@pytest.mark.points(2)
def test_fit_seeds_trains_one_network_per_key(lab, key):
    x, y = datasets.regression_1d("kink", 50, key=key)
    keys = jax.random.split(seeded_key(3), 3)
    params, losses = lab.fit_seeds(keys, x, y, width=8, depth=1, steps=100)
    expect_shape(losses, (3, 100), "losses from fit_seeds with 3 keys and 100 steps")
    expect_shape(params[0]["w"], (3, 1, 8), "first-layer weights of the 3 vmapped networks")
    expect(len({round(float(v), 6) for v in losses[:, 0]}) == 3, "different keys should give different networks")
    # vmap must not change the maths: the second network equals one trained alone from the same key.
    alone, alone_losses = lab.fit(lab.init_network(8, 1, key=keys[1]), x, y, optimizer=optax.adam(0.01), steps=100)
    expect_close(losses[1], alone_losses, "vmapped losses vs a single fit with the same key", atol=1e-4, rtol=1e-3)
    # The losses are claims: the trained parameters that came back must bear them out (recomputed here).
    for k in range(3):
        net = [{name: np.asarray(v)[k] for name, v in layer.items()} for layer in params]
        mse = float(np.mean((numpy_mlp(net, x) - np.asarray(y, np.float64)) ** 2))
        expect(
            mse < float(losses[k, 0]),
            f"network {k}'s returned parameters have MSE {mse:.4f} (recomputed here), no better than its first "
            f"step's reported loss {float(losses[k, 0]):.4f}: return the trained parameters",
        )
    expect_close(params[0]["w"][1], alone[0]["w"], "network 1's first-layer weights vs fit alone", atol=1e-4)
