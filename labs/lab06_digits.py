# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     name: python3
# ---

# %%
"""Digits: an MLP on real MNIST with Flax, trained by the course's shared loop."""

from __future__ import annotations

import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import Array

from course import mnist, plotting, training

# %% [markdown]
# # Lab 06 — digits
#
# The lecture's first real data set: 70 000 handwritten digits, 28×28 grey pixels, labelled 0–9.
# `course.mnist.load()` gives them as uint8 arrays, images `(N, 28, 28, 1)` (NHWC) and labels `(N,)`:
# 60 000 to train on and 10 000 to test on. (It reads the official files from `$COURSE_DATA_DIR`, or
# downloads them once; see the README.)
#
# The lecture's Keras model, in Flax:
#
# ```python
# model = Sequential([Flatten(input_shape=(28, 28)), Dense(128, activation="relu"),
#                     Dense(10, activation="softmax")])
# model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
# model.fit(X_train, y_train, epochs=5, validation_data=(X_test, y_test),
#           callbacks=[WandbCallback(data_type="image", labels=labels)])
# ```
#
# Here the model outputs **logits** (no softmax layer): the loss applies the softmax itself, in a form
# that cannot overflow. You write the four pieces; `course.training.fit` is the `model.fit`.

# %% [markdown]
# ## 1. Normalisation
# Pixels arrive as integers 0…255 (uint8). Networks train best on inputs of order 1, so divide by 255.
# In JAX, as in NumPy and Python 3, `/` is true division: `images / 255.0` already gives floats
# (float32), values in [0, 1]. (Only `//`, floor division, would keep integers: 0 for every pixel but
# the brightest.) The tests check the dtype is float32 and the values are `pixel / 255`.


# %%
def normalize(images: Array) -> Array:
    """uint8 images (B, 28, 28, 1) in 0…255 -> float32 in [0, 1], same shape."""
    # YOUR CODE HERE (lab06: normalize)
    raise NotImplementedError("lab06: normalize")


# %% [markdown]
# ## 2. The model
# Flatten → Dense(hidden, ReLU) → Dense(10). In `flax.nnx` a layer is an object holding its parameters:
# `nnx.Linear(in_features, out_features, rngs=rngs)` makes a kernel `(in, out)` and a bias `(out,)`.
# Name the layers `self.hidden` and `self.output` (the tests look at them).
#
# The training loop does not keep this object: it splits it once into a *graph* (the code) and a
# *state* (the arrays), `nnx.split(model)`, and differentiates a pure function of the state.


# %%
class MLP(nnx.Module):
    """Flatten -> Dense(hidden) -> ReLU -> Dense(10): images (B, 28, 28, 1) -> logits (B, 10)."""

    def __init__(self, hidden: int = 128, *, rngs: nnx.Rngs):
        # YOUR CODE HERE (lab06: MLP.__init__)
        raise NotImplementedError("lab06: MLP.__init__")

    def __call__(self, images: Array) -> Array:
        # YOUR CODE HERE (lab06: MLP.__call__)
        raise NotImplementedError("lab06: MLP.__call__")


# %% [markdown]
# ## 3. Loss and accuracy
# The softmax turns logits $z$ into probabilities $p_k = e^{z_k} / \sum_j e^{z_j}$; the cross-entropy of
# the true class $y$ is $-\log p_y = \log \sum_j e^{z_j} - z_y$. Compute it with
# `jax.nn.log_softmax` (or `jax.nn.logsumexp`), never `jnp.log(jax.nn.softmax(z))`: with logits near
# 1000 the latter gives `inf`. Both functions return the **mean over the batch**.


# %%
def loss(logits: Array, labels: Array) -> Array:
    """Mean softmax cross-entropy: logits (B, 10) float, labels (B,) int -> () float32."""
    # YOUR CODE HERE (lab06: loss)
    raise NotImplementedError("lab06: loss")


def accuracy(logits: Array, labels: Array) -> Array:
    """Fraction of the batch whose largest logit is the true label: () float32 in [0, 1]."""
    # YOUR CODE HERE (lab06: accuracy)
    raise NotImplementedError("lab06: accuracy")


# %% [markdown]
# ## 4. Training
# Call the shared loop, `course.training.fit(model, train, val, *, loss, accuracy, optimizer, epochs,
# batch_size, key, preprocess, ...)`, with your pieces: the model made from `key`, Adam at
# `learning_rate`, `normalize` as the preprocessing, and the test split as validation data (as the
# lecture does). Pass `workdir`, `progress` and `class_names` through. It returns `(model, history)`.


# %%
def train(
    data: mnist.Dataset,
    *,
    hidden: int = 128,
    epochs: int = 10,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    key: Array,
    workdir: str | Path | None = None,
    progress: bool | None = None,
) -> tuple[MLP, dict[str, list[float]]]:
    """Train an MLP on ``data.train``, validating on ``data.test``; returns (model, history)."""
    # YOUR CODE HERE (lab06: train)
    raise NotImplementedError("lab06: train")


# %% [markdown]
# ## 5. Demo: the real thing
# Ten epochs of 469 batches of 128 (Adam, learning rate 0.001): about 6 s on a laptop CPU. Watch the
# validation accuracy pass 97.5 %; then look at the prediction grid: the digits it gets wrong are
# often ones a person would hesitate over.


# %%
def demo(out: Path, *, quick: bool | None = None) -> list[Path]:
    """Train on real MNIST; print the test accuracy and seconds per epoch; draw curves and predictions.

    ``quick`` (default: ``$COURSE_QUICK=1``): a smoke run, 2 epochs on the first 10 000 training images.
    """
    out = Path(out)
    quick = os.environ.get("COURSE_QUICK") == "1" if quick is None else quick
    start = time.perf_counter()
    data = mnist.load("mnist")
    if quick:
        data = data._replace(train=data.train.head(10_000))
    print(
        f"loaded MNIST in {time.perf_counter() - start:.2f} s on {jax.devices()[0].platform}: "
        f"train {data.train.images.shape}, test {data.test.images.shape}" + (" (quick run)" if quick else "")
    )
    model, history = train(data, epochs=2 if quick else 10, key=jax.random.key(0), workdir=out / "lab06_run")
    # The first epoch includes compiling; report the steady state too.
    per_epoch = history["seconds"]
    print(
        f"seconds per epoch: {np.mean(per_epoch):.2f} (first {per_epoch[0]:.2f}, "
        f"then {np.mean(per_epoch[1:]) if len(per_epoch) > 1 else per_epoch[0]:.2f})"
    )
    print(f"test accuracy: {history['val_accuracy'][-1]:.4f}")
    curves = plotting.save(
        plotting.history_curves(history, title="MNIST MLP (128 hidden, Adam, batch 128)"), out, "mnist_mlp_curves"
    )
    shown = data.test.head(32)
    predicted = np.asarray(jnp.argmax(model(normalize(jnp.asarray(shown.images))), axis=-1))
    grid = plotting.image_grid(
        shown.images,
        [f"pred: {p} / true: {t}" for p, t in zip(predicted, shown.labels)],
        wrong=predicted != shown.labels,
        title=f"test images, test accuracy {history['val_accuracy'][-1]:.2%}",
    )
    return [curves, plotting.save(grid, out, "mnist_mlp_predictions")]


# %%
if __name__ == "__main__":
    demo(Path("figures/lab06"))
