"""Graded tests for lab 01, the perceptron. Expected values come from numpy and hand calculation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from course import datasets
from course.grader.testing import draw, expect, expect_close, expect_equal, expect_shape


def np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


def np_accuracy(theta, x, y):
    """Accuracy of a sigmoid perceptron, recomputed here from its weights (not the code's own word)."""
    z = np.c_[np.asarray(x, np.float64), np.ones(len(x))] @ np.asarray(theta, np.float64)
    return float(np.mean((z >= 0) == (np.asarray(y) > 0.5)))


def np_loss(theta, x, y):
    """Mean logistic loss in float64."""
    z = np.c_[np.asarray(x, np.float64), np.ones(len(x))] @ np.asarray(theta, np.float64)
    y = np.asarray(y, np.float64)
    return float(np.mean(np.logaddexp(0, -z) * y + np.logaddexp(0, z) * (1 - y)))


def test_augment_appends_a_column_of_ones(lab, key):
    x = jnp.array([[2.0, 3.0], [-1.0, 0.5], [0.0, 0.0]])
    expect_close(lab.augment(x), [[2, 3, 1], [-1, 0.5, 1], [0, 0, 1]], "augment(x)", atol=0)
    x = draw(jax.random.normal, key, (5, 3))  # the grading seed's inputs
    expect_close(lab.augment(x), np.c_[np.asarray(x), np.ones(5)], "augment of a (5, 3) batch", atol=0)


@pytest.mark.parametrize(
    "z, want", [(-3.0, 0.0), (-1e-6, 0.0), (0.0, 1.0), (2.5, 1.0)], ids=["neg", "tiny-neg", "zero", "pos"]
)
def test_step(lab, key, z, want):
    expect_close(lab.step(jnp.array([z])), [want], f"step({z})", atol=0)
    zs = jnp.concatenate([jnp.array([z]), draw(jax.random.normal, key, (8,))])  # and the grading seed's values
    expect_close(lab.step(zs), (np.asarray(zs) >= 0).astype(np.float32), f"step of {len(zs)} values", atol=0)


def test_sigmoid_matches_the_formula(lab, key):
    z = jnp.linspace(-8.0, 8.0, 33)
    expect_close(lab.sigmoid(z), np_sigmoid(z), "sigmoid(z) on [-8, 8]", atol=1e-6)
    expect_close(lab.sigmoid(jnp.array([0.0])), [0.5], "sigmoid(0)", atol=1e-7)
    z = 4.0 * draw(jax.random.normal, key, (33,))
    expect_close(lab.sigmoid(z), np_sigmoid(z), "sigmoid(z) of 33 random values", atol=1e-6)


def test_perceptron_is_f_of_the_augmented_dot_product(lab, key):
    # Hand-worked: theta = (w1, w2, b) = (1, -2, 0.5); x = (3, 1) -> z = 3 - 2 + 0.5 = 1.5
    theta = jnp.array([1.0, -2.0, 0.5])
    x = jnp.array([[3.0, 1.0], [0.0, 1.0]])  # second: z = -2 + 0.5 = -1.5
    expect_close(lab.perceptron(theta, x, lab.step), [1.0, 0.0], "perceptron with step", atol=0)
    expect_close(lab.perceptron(theta, x), np_sigmoid([1.5, -1.5]), "perceptron with sigmoid (default)", atol=1e-6)
    kt, kx = jax.random.split(key)  # the grading seed's weights and inputs
    theta, x = draw(jax.random.normal, kt, (4,)), draw(jax.random.normal, kx, (10, 3))
    z = np.c_[np.asarray(x, np.float64), np.ones(10)] @ np.asarray(theta, np.float64)
    expect_close(lab.perceptron(theta, x), np_sigmoid(z), "perceptron with sigmoid, random theta and x", atol=1e-6)
    sure = np.abs(z) > 1e-4  # float32 may round a z this close to 0 to either side
    got = np.asarray(lab.perceptron(theta, x, lab.step))
    expect_close(got[sure], (z[sure] >= 0).astype(np.float32), "perceptron with step, random theta and x", atol=0)


def test_logistic_loss_matches_cross_entropy(lab, key):
    x = draw(jax.random.normal, key, (16, 3))
    theta = jnp.array([0.5, -1.0, 2.0, 0.1])
    y = (jnp.arange(16) % 2).astype(jnp.float32)
    p = np_sigmoid(np.c_[np.asarray(x), np.ones(16)] @ np.asarray(theta))
    want = -np.mean(np.asarray(y) * np.log(p) + (1 - np.asarray(y)) * np.log(1 - p))
    expect_close(lab.logistic_loss(theta, x, y), want, "logistic_loss", atol=1e-5)


def test_logistic_loss_is_stable_for_confident_predictions(lab, key):
    # z = ±100, then the grading seed's z in [40, 140]: log σ(z) in float32 underflows to log(0) = -inf
    # unless written with softplus.
    for z in [100.0, float(40.0 + 100.0 * jax.random.uniform(key))]:
        x, theta = jnp.array([[z], [-z]]), jnp.array([1.0, 0.0])
        right, wrong = np.logaddexp(0.0, -z), np.logaddexp(0.0, z)  # softplus in float64: ~0 and ~z
        got = lab.logistic_loss(theta, x, jnp.array([1.0, 0.0]))
        expect_close(got, right, f"loss of two confident right answers (z = ±{z:.4g})", atol=1e-6)
        got = lab.logistic_loss(theta, x, jnp.array([0.0, 1.0]))
        expect_close(got, wrong, f"loss of two confident wrong answers (z = ±{z:.4g})", atol=1e-3)


def _finite_difference(f, theta, eps=1e-6):
    theta = np.asarray(theta, np.float64)
    grad = np.zeros_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = eps
        grad[i] = (f(theta + e) - f(theta - e)) / (2 * eps)
    return grad


@pytest.mark.points(2)
@pytest.mark.parametrize("which", ["hand_gradient", "autodiff_gradient"])
def test_gradient_matches_finite_differences(lab, key, which):
    x = np.asarray(draw(jax.random.normal, key, (20, 2)), np.float64)
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).astype(np.float64)
    theta = np.array([0.3, -0.7, 0.2])

    def np_loss(t):  # an independent float64 reference of the loss
        z = np.c_[x, np.ones(len(x))] @ t
        return np.mean(np.logaddexp(0, -z) * y + np.logaddexp(0, z) * (1 - y))

    want = _finite_difference(np_loss, theta)
    got = getattr(lab, which)(jnp.asarray(theta, jnp.float32), jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    expect_shape(got, (3,), which)
    expect_close(got, want, f"{which} vs central finite differences", atol=1e-5)


@pytest.mark.points(2)
def test_training_separates_separable_data(lab, key):
    x, y = datasets.linearly_separable(100, key=key)
    theta, losses = lab.train(jnp.zeros(3), x, y, learning_rate=2.0, steps=300)
    expect_shape(losses, (300,), "losses from train(steps=300)")
    before, after = np_loss(np.zeros(3), x, y), np_loss(theta, x, y)
    expect(after < before, f"the loss of the trained weights should be below the start's: {before:.4f} -> {after:.4f}")
    expect_close(np_accuracy(theta, x, y), 1.0, "training accuracy on separable data (recomputed from theta)", atol=0)


def test_accuracy_counts_thresholded_predictions(lab, key):
    theta = jnp.array([1.0, 0.0])  # predicts 1 where x >= 0
    x = jnp.array([[-2.0], [-1.0], [1.0], [2.0]])
    expect_close(
        lab.accuracy(theta, x, jnp.array([0.0, 1.0, 1.0, 1.0])), 0.75, "accuracy with one mistake in four", atol=1e-7
    )
    kt, kx, ky = jax.random.split(key, 3)  # the grading seed's weights, points and labels
    theta, x = draw(jax.random.normal, kt, (3,)), draw(jax.random.normal, kx, (40, 2))
    y = draw(jax.random.bernoulli, ky, (40,), p=0.5).astype(jnp.float32)
    z = np.c_[np.asarray(x, np.float64), np.ones(40)] @ np.asarray(theta, np.float64)
    want = float(np.mean((z >= 0) == (np.asarray(y) > 0.5)))
    expect_close(lab.accuracy(theta, x, y), want, "accuracy of random weights on 40 random points", atol=1e-6)


def test_xor_defeats_one_perceptron(lab, key):
    x, y = datasets.xor()
    # A start of the grading seed's, each weight at least 0.5 from 0: the loss on XOR is convex with its
    # minimum at theta = 0 (where every pull cancels), so gradient descent from here must lower it.
    ks, km = jax.random.split(key)
    start = jnp.where(draw(jax.random.bernoulli, ks, (3,), p=0.5), 1.0, -1.0) * (
        0.5 + draw(jax.random.uniform, km, (3,))
    )
    theta, _ = lab.train(start, x, y, learning_rate=1.0, steps=200)
    expect_equal(jnp.isfinite(theta).all(), True, "all weights finite after training on XOR")
    acc = np_accuracy(theta, x, y)
    # No line separates XOR: at most 3 of the 4 points can be right, whatever the training does.
    expect(acc <= 0.75 + 1e-6, f"a single perceptron cannot classify XOR perfectly, yet accuracy is {acc}")
    before, after = np_loss(start, x, y), np_loss(theta, x, y)
    expect(after < before - 1e-3, f"training on XOR should lower the loss from the start: {before:.4f} -> {after:.4f}")
