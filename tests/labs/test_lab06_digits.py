"""Graded tests for lab 06, the MNIST MLP. References: numpy forward passes and log-sum-exp, counting.

Training is checked on digits the course renders itself (course.datasets.digits), so grading needs
neither the network nor MNIST and takes seconds; the real-MNIST accuracy is checked in
tests/course/test_mnist.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from course import datasets, mnist
from course.grader.testing import draw, expect, expect_close, expect_equal, expect_shape, seeded_key


def _numpy_mlp(params, images):
    """The lecture's forward pass, Flatten -> Dense + ReLU -> Dense, in numpy from the model's parameters."""
    x = np.asarray(images, np.float64).reshape(len(images), -1)  # (B, 784)
    h = np.maximum(x @ params["hidden"]["kernel"] + params["hidden"]["bias"], 0.0)
    return h @ params["output"]["kernel"] + params["output"]["bias"]


def _params(model):
    """An nnx model's parameters as nested dicts of arrays: data that can leave the sandbox."""
    return nnx.state(model, nnx.Param).to_pure_dict()


def _build(lab, hidden, seed, images=None):
    """Runs in the sandbox: build the student's MLP; return its parameters (and its logits on images)."""
    model = lab.MLP(hidden, rngs=nnx.Rngs(seed))
    return _params(model), (None if images is None else model(images))


def _log_softmax(z):
    z = np.asarray(z, np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("shape", [(1, 28, 28, 1), (5, 28, 28, 1), (3, 4, 4, 1)], ids=["one", "five", "tiny"])
def test_normalize_maps_bytes_to_unit_floats(lab, key, shape):
    images = draw(jax.random.randint, key, shape, minval=0, maxval=256).astype(jnp.uint8)
    got = lab.normalize(images)
    expect(got.dtype == jnp.float32, f"normalize should return float32, got {got.dtype}")
    expect_close(got, np.asarray(images) / 255.0, f"normalize of uint8 images {shape}", atol=1e-6)


def test_normalize_endpoints(lab, key):
    got = lab.normalize(jnp.array([0, 1, 128, 255], jnp.uint8).reshape(1, 2, 2, 1))
    expect_close(got.ravel(), [0.0, 1 / 255, 128 / 255, 1.0], "normalize of 0, 1, 128, 255", atol=1e-7)
    # The ends among the grading seed's bytes: 0 and 255 must map to exactly 0 and 1.
    images = (
        draw(jax.random.randint, key, (2, 3, 3, 1), minval=0, maxval=256)
        .astype(jnp.uint8)
        .at[0, 0, 0, 0]
        .set(0)
        .at[1, 2, 2, 0]
        .set(255)
    )
    got = np.asarray(lab.normalize(images))
    expect_close(got, np.asarray(images) / 255.0, "normalize of random bytes with 0 and 255 among them", atol=1e-7)
    expect(got[0, 0, 0, 0] == 0.0 and got[1, 2, 2, 0] == 1.0, "normalize should map 0 to 0.0 and 255 to 1.0 exactly")


@pytest.mark.parametrize("hidden", [16, 128])
def test_mlp_has_the_lecture_layers(lab, hidden):
    params, _ = lab.run(_build, hidden, 0)
    expect(set(params) == {"hidden", "output"}, f"MLP should have layers `hidden` and `output`, got {sorted(params)}")
    expect_shape(params["hidden"]["kernel"], (784, hidden), "MLP.hidden kernel (flattened 28*28 inputs)")
    expect_shape(params["output"]["kernel"], (hidden, 10), "MLP.output kernel (10 classes)")
    count = sum(np.size(x) for x in jax.tree.leaves(params))
    expect_equal(count, 784 * hidden + hidden + hidden * 10 + 10, f"number of parameters with hidden={hidden}")


@pytest.mark.points(2)
@pytest.mark.parametrize("batch", [1, 7])
def test_mlp_forward_is_flatten_dense_relu_dense(lab, key, batch):
    images = draw(jax.random.uniform, key, (batch, 28, 28, 1))
    params, logits = lab.run(_build, 32, 1, images)
    expect_shape(logits, (batch, 10), f"logits for a batch of {batch}")
    expect_close(logits, _numpy_mlp(params, images), "logits against a numpy forward pass", atol=1e-4)


@pytest.mark.points(2)
def test_loss_is_softmax_cross_entropy(lab, key):
    logits = 3.0 * draw(jax.random.normal, key, (6, 10))
    labels = jnp.array([0, 3, 9, 3, 5, 1])
    want = -np.mean(_log_softmax(logits)[np.arange(6), np.asarray(labels)])
    expect_close(lab.loss(logits, labels), want, "mean cross-entropy against numpy log-sum-exp", atol=1e-5)
    expect_close(
        lab.loss(jnp.zeros((4, 10)), jnp.array([0, 1, 2, 3])),
        np.log(10.0),
        "loss of all-zero logits (every class 1/10)",
        atol=1e-6,
    )


def test_loss_is_stable_for_large_logits(lab, key):
    logits = jnp.array([[1000.0, 0.0] + [0.0] * 8, [0.0, -1000.0] + [0.0] * 8])
    got = lab.loss(logits, jnp.array([1, 0]))
    # Row 1: true class has logit 0 against 1000 -> 1000; row 2: log(9 + e^-1000) ~ log 9.
    expect_close(got, (1000.0 + np.log(9.0)) / 2, "loss with logits of ±1000 (use log_softmax)", atol=1e-3)
    # The grading seed's logits, hundreds apart, against numpy's log-sum-exp in float64.
    kl, ky = jax.random.split(key)
    logits = 400.0 * draw(jax.random.normal, kl, (5, 10))
    labels = draw(jax.random.randint, ky, (5,), minval=0, maxval=10)
    want = -np.mean(_log_softmax(logits)[np.arange(5), np.asarray(labels)])
    expect_close(lab.loss(logits, labels), want, "loss with logits in the hundreds", atol=1e-3, rtol=1e-5)


def test_loss_gradient_is_softmax_minus_one_hot(lab, key):
    logits = draw(jax.random.normal, key, (4, 10))
    labels = jnp.array([2, 2, 7, 0])
    p = np.exp(_log_softmax(logits))
    want = (p - np.eye(10)[np.asarray(labels)]) / 4
    got = lab.run(lambda lab, logits, labels: jax.grad(lab.loss)(logits, labels), logits, labels)
    expect_close(got, want, "d loss / d logits", atol=1e-5)


def test_accuracy_counts_argmax_hits(lab, key):
    logits = jnp.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    got = lab.accuracy(logits, jnp.array([1, 0, 0, 0]))
    expect(jnp.asarray(got).dtype == jnp.float32, f"accuracy should be float32, got {jnp.asarray(got).dtype}")
    expect_close(got, 0.75, "accuracy: rows 1, 2 and 4 are right", atol=1e-6)
    kl, ky = jax.random.split(key)  # the grading seed's logits and labels
    logits, labels = draw(jax.random.normal, kl, (30, 4)), draw(jax.random.randint, ky, (30,), minval=0, maxval=4)
    want = float(np.mean(np.argmax(np.asarray(logits), -1) == np.asarray(labels)))
    expect_close(lab.accuracy(logits, labels), want, "accuracy of random logits against random labels", atol=1e-6)


@pytest.fixture(scope="module")
def rendered_digits():
    """MNIST-shaped uint8 digits rendered by the course: 2000 to train on, 500 held out."""
    k_train, k_test = jax.random.split(seeded_key(6))

    def split(n, key):
        x, y = datasets.digits(n, key=key, max_shift=2, noise=0.1)
        return mnist.Split(np.asarray(x * 255).astype(np.uint8), np.asarray(y, np.int32))

    return mnist.Dataset("rendered digits", split(2000, k_train), split(500, k_test), tuple("0123456789"))


def _train(lab, data, key):
    """Runs in the sandbox: train, and return the trained parameters and the history."""
    model, history = lab.train(data, hidden=64, epochs=3, batch_size=100, key=key)
    return _params(model), history


@pytest.mark.points(3)
def test_train_learns_digits(lab, rendered_digits):
    params, history = lab.run(_train, rendered_digits, seeded_key(0))
    expect(
        set(history) >= {"loss", "accuracy", "val_loss", "val_accuracy"},
        f"train should return fit's history, with validation metrics; got keys {sorted(history)}",
    )
    expect_equal(len(history["val_accuracy"]), 3, "one validation accuracy per epoch")
    expect(history["loss"][-1] < history["loss"][0], f"the training loss should fall: {history['loss']}")
    # The accuracy is recomputed here from the trained parameters, not taken from the code's word.
    logits = _numpy_mlp(params, rendered_digits.test.images / 255.0)
    acc = float(np.mean(np.argmax(logits, -1) == rendered_digits.test.labels))
    expect(acc >= 0.8, f"held-out accuracy after 3 epochs should be at least 80% (chance is 10%), got {acc:.1%}")
    # float32 in the sandbox, float64 here: a digit whose top two logits nearly tie may go either way.
    one_digit = 1.0 / len(rendered_digits.test.labels)
    expect_close(
        acc,
        history["val_accuracy"][-1],
        "the returned model's accuracy vs history's last val_accuracy",
        atol=one_digit + 1e-6,
    )
