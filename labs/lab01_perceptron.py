# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     name: python3
# ---

# %%
"""The perceptron: f((w, b)·(x, 1)), trained by gradient descent, and why XOR defeats it."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from course import datasets, plotting

# %% [markdown]
# # Lab 01 — the perceptron
#
# A perceptron takes an input vector $x \in \mathbb{R}^d$, computes a weighted sum plus a bias and
# passes it through an activation $f$:
#
# $$\hat y = f(w \cdot x + b) = f\big((w, b) \cdot (x, 1)\big).$$
#
# The second form is the *augmented-input trick*: append a constant 1 to every input and the bias
# becomes one more weight. One vector $\theta = (w, b) \in \mathbb{R}^{d+1}$ describes the whole
# model, and the model is a dot product.
#
# With the step function as $f$ this is Rosenblatt's perceptron; with the sigmoid
# $\sigma(z) = 1 / (1 + e^{-z})$ it is logistic regression, whose output reads as a probability and
# which we train by gradient descent on the logistic (cross-entropy) loss
#
# $$L(\theta) = -\frac{1}{N} \sum_i \big[y_i \log \sigma(z_i) + (1 - y_i) \log(1 - \sigma(z_i))\big],
# \qquad z_i = \theta \cdot (x_i, 1).$$
#
# Its gradient has a famously simple form, $\nabla L = \frac{1}{N} \sum_i (\sigma(z_i) - y_i)\,(x_i, 1)$,
# which you derive by hand and check against `jax.grad` and finite differences.
#
# Fill in every function that raises `NotImplementedError`; `nox -s grade -- lab01` tells you how you do.

# %% [markdown]
# ## 1. The model
# Shapes: `x` is `(N, d)` (one example per row), `theta` is `(d + 1,)`, outputs are `(N,)`.


# %%
def augment(x: Array) -> Array:
    """Append a column of ones: (N, d) -> (N, d + 1), so the bias is the last weight."""
    # YOUR CODE HERE (lab01: augment)
    raise NotImplementedError("lab01: augment")


def step(z: Array) -> Array:
    """Heaviside step: 1.0 where z >= 0, else 0.0 (same shape and dtype as z)."""
    # YOUR CODE HERE (lab01: step)
    raise NotImplementedError("lab01: step")


def sigmoid(z: Array) -> Array:
    """The logistic function 1 / (1 + exp(-z)), elementwise."""
    # YOUR CODE HERE (lab01: sigmoid)
    raise NotImplementedError("lab01: sigmoid")


def perceptron(theta: Array, x: Array, activation=sigmoid) -> Array:
    """f((w, b)·(x, 1)) for every row of x: theta (d + 1,), x (N, d) -> (N,)."""
    # YOUR CODE HERE (lab01: perceptron)
    raise NotImplementedError("lab01: perceptron")


# %% [markdown]
# ## 2. The loss and its gradient
# Write the loss in terms of the logit $z$, not $\sigma(z)$: $\log \sigma(z) = -\mathrm{softplus}(-z)$
# and $\log(1 - \sigma(z)) = -\mathrm{softplus}(z)$. Then a confident, correct prediction
# ($z = 100$) costs $\approx 0$ instead of $\log 0 = -\infty$ (`jax.nn.softplus` is stable).


# %%
def logistic_loss(theta: Array, x: Array, y: Array) -> Array:
    """Mean binary cross-entropy of sigmoid(z) against labels y in {0, 1}; a scalar.

    Exact even for confident predictions (z = ±100 costs 0 when right, 100 when wrong): write it with
    softplus of z as above, not log(sigmoid(z)) and not a clipped probability.
    """
    # YOUR CODE HERE (lab01: logistic_loss)
    raise NotImplementedError("lab01: logistic_loss")


def hand_gradient(theta: Array, x: Array, y: Array) -> Array:
    """The gradient you derived on paper: (1/N) Σ (σ(z_i) − y_i)(x_i, 1); shape (d + 1,)."""
    # YOUR CODE HERE (lab01: hand_gradient)
    raise NotImplementedError("lab01: hand_gradient")


def autodiff_gradient(theta: Array, x: Array, y: Array) -> Array:
    """The same gradient, by `jax.grad` of `logistic_loss` with respect to theta."""
    # YOUR CODE HERE (lab01: autodiff_gradient)
    raise NotImplementedError("lab01: autodiff_gradient")


# %% [markdown]
# ## 3. Training
# Gradient descent: $\theta \leftarrow \theta - \eta \nabla L(\theta)$, for a fixed number of steps.
# `jax.lax.scan` runs the loop inside one compiled program and collects the loss at every step.


# %%
def train(theta: Array, x: Array, y: Array, *, learning_rate: float = 1.0, steps: int = 500) -> tuple[Array, Array]:
    """Gradient descent on the logistic loss from `theta`.

    Returns:
      (final theta (d + 1,), the loss before each step (steps,)).
    """
    # YOUR CODE HERE (lab01: train)
    raise NotImplementedError("lab01: train")


def accuracy(theta: Array, x: Array, y: Array) -> Array:
    """Fraction of points whose thresholded prediction step(z) equals the label."""
    # YOUR CODE HERE (lab01: accuracy)
    raise NotImplementedError("lab01: accuracy")


# %% [markdown]
# ## 4. Demo: a separable problem, and XOR
# On linearly separable data the perceptron reaches 100 % training accuracy. On XOR it cannot:
# no line puts (0, 1) and (1, 0) on one side and (0, 0) and (1, 1) on the other, so at best
# 3 of the 4 points are right. That is the limit lab 02 removes.
#
# Started from $\theta = 0$ it does not even get that far. There every $\sigma(z_i) = 0.5$, and the four
# points' pulls $(\sigma(z_i) - y_i)(x_i, 1)$ cancel exactly: the gradient is zero, $\theta$ never moves,
# and step(0) = 1 calls every point class 1, so the training accuracy stays at 0.50.


# %%
def demo(out: Path) -> list[Path]:
    """Train on separable data and on XOR; write the figures to `out`."""
    x, y = datasets.linearly_separable(200, key=jax.random.key(0))
    theta, losses = train(jnp.zeros(3), x, y, learning_rate=2.0, steps=500)
    print(f"separable data: training accuracy {float(accuracy(theta, x, y)):.3f}, final loss {float(losses[-1]):.4f}")

    xx, yy, pts = plotting.grid(-1.1, 1.1)
    fig, (ax_data, ax_loss) = plotting.figure(2)
    prob = np.asarray(perceptron(theta, jnp.asarray(pts))).reshape(xx.shape)
    plotting.decision_regions(ax_data, xx, yy, prob, x, y, alpha=0.35)
    ax_data.set(title="Separable data and the learned line σ(z) = 0.5", xlabel="$x_1$", ylabel="$x_2$")
    ax_loss.plot(np.asarray(losses))
    ax_loss.set(title="Logistic loss during training", xlabel="step", ylabel="loss", yscale="log")
    paths = [plotting.save(fig, out, "perceptron_separable")]

    xo, yo = datasets.xor()
    theta_x, losses_x = train(jnp.zeros(3), xo, yo, learning_rate=1.0, steps=500)
    acc_x = float(accuracy(theta_x, xo, yo))
    print(
        f"XOR from θ = 0: training accuracy {acc_x:.2f}; the gradient there is exactly zero, so training "
        "never moves (the best any line can do is 0.75)"
    )
    xx, yy, pts = plotting.grid(-0.5, 1.5)
    fig, (ax,) = plotting.figure(1)
    prob = np.asarray(perceptron(theta_x, jnp.asarray(pts))).reshape(xx.shape)
    plotting.decision_regions(ax, xx, yy, prob, xo, yo, alpha=0.35)
    ax.set(
        title=f"XOR from θ = 0: the gradient is zero,\naccuracy stays {acc_x:.0%} (the best line: 75%)",
        xlabel="$x_1$",
        ylabel="$x_2$",
    )
    paths.append(plotting.save(fig, out, "perceptron_xor"))
    return paths


# %%
if __name__ == "__main__":
    demo(Path("figures/lab01"))
