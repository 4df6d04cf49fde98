# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     name: python3
# ---

# %%
"""Combining perceptrons: dense layers, MLPs, why linear stacks collapse, and XOR solved."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array

from course import datasets, plotting

# %% [markdown]
# # Lab 02 — combining perceptrons
#
# Put $m$ perceptrons side by side on the same input and you have a **dense layer**:
# $h = f(xW + b)$ with $W \in \mathbb{R}^{d \times m}$, $b \in \mathbb{R}^m$. Feed one layer's
# output into the next and you have a **multi-layer perceptron** (MLP).
#
# A model here is a *pure function* of a parameter pytree: a layer's parameters are the dict
# `{"w": W, "b": b}`, an MLP's a list of those. Nothing is hidden in an object, and the
# initial values come from an explicit PRNG key, so every run is reproducible.
#
# **Why the non-linearity matters.** Without an activation, two layers are
# $(xW_1 + b_1)W_2 + b_2 = x(W_1W_2) + (b_1W_2 + b_2)$: one linear map again. However many layers you
# stack, a linear network is one big honking linear regression, and it still cannot do XOR.
# Put a ReLU, tanh or sigmoid between the layers and one hidden layer is enough.

# %% [markdown]
# ## 1. Activations


# %%
def relu(z: Array) -> Array:
    """max(z, 0), elementwise."""
    # YOUR CODE HERE (lab02: relu)
    raise NotImplementedError("lab02: relu")


def tanh(z: Array) -> Array:
    """The hyperbolic tangent (e^z − e^−z) / (e^z + e^−z), elementwise."""
    # YOUR CODE HERE (lab02: tanh)
    raise NotImplementedError("lab02: tanh")


def sigmoid(z: Array) -> Array:
    """1 / (1 + e^−z), elementwise."""
    # YOUR CODE HERE (lab02: sigmoid)
    raise NotImplementedError("lab02: sigmoid")


def identity(z: Array) -> Array:
    """No activation: a purely linear layer."""
    return z


# %% [markdown]
# ## 2. A dense layer and an MLP as pure functions
# `x @ W + b` adds the `(n_out,)` bias to every row of the `(N, n_out)` product: NumPy's broadcasting
# lines shapes up from the right. The same rule bites when the shapes are `(N, 1)` and `(N,)`: their
# difference is an `(N, N)` matrix, not a vector — the classic silent loss bug. The grader watches
# for that implicit rank promotion and names the line in a hint when a test fails.
#
# Initialise weights from $\mathcal{N}(0, 1/d_\text{in})$ (LeCun normal: it keeps the variance of
# $xW$ close to that of $x$) and biases at zero.


# %%
def init_dense(n_in: int, n_out: int, *, key: Array) -> dict[str, Array]:
    """Parameters of one dense layer: {"w": (n_in, n_out) ~ N(0, 1/n_in), "b": (n_out,) zeros}."""
    # YOUR CODE HERE (lab02: init_dense)
    raise NotImplementedError("lab02: init_dense")


def dense(params: dict[str, Array], x: Array) -> Array:
    """x W + b: x (N, n_in) -> (N, n_out)."""
    # YOUR CODE HERE (lab02: dense)
    raise NotImplementedError("lab02: dense")


def init_mlp(sizes: list[int], *, key: Array) -> list[dict[str, Array]]:
    """One dense layer per consecutive pair in sizes, e.g. [2, 8, 1] -> layers 2→8 and 8→1.

    Split the key so that every layer gets its own: never reuse a key.
    """
    # YOUR CODE HERE (lab02: init_mlp)
    raise NotImplementedError("lab02: init_mlp")


def mlp(params: list[dict[str, Array]], x: Array, activation=relu) -> Array:
    """Dense layers with `activation` between them and a linear output: x (N, d) -> (N, n_out)."""
    # YOUR CODE HERE (lab02: mlp)
    raise NotImplementedError("lab02: mlp")


# %% [markdown]
# ## 3. The big honking linear regression
# Multiply out a stack of linear layers into a single $(W, b)$ such that
# `mlp(params, x, identity) == x @ W + b` for every x.


# %%
def collapse_linear(params: list[dict[str, Array]]) -> tuple[Array, Array]:
    """The single (W (d, n_out), b (n_out,)) equal to a stack of layers with no activation."""
    # YOUR CODE HERE (lab02: collapse_linear)
    raise NotImplementedError("lab02: collapse_linear")


# %% [markdown]
# ## 4. XOR with one hidden layer
# Train `mlp` with Optax's Adam on the binary cross-entropy of the output logit. The update is a
# pure function `(params, opt_state) -> (params, opt_state, loss)` that we compile once with `jax.jit`.


# %%
def bce_loss(params: list[dict[str, Array]], x: Array, y: Array, activation=relu) -> Array:
    """Mean binary cross-entropy of the MLP's single output logit (N, 1) against labels y (N,)."""
    # YOUR CODE HERE (lab02: bce_loss)
    raise NotImplementedError("lab02: bce_loss")


def fit(params, x: Array, y: Array, *, activation=relu, steps: int = 500, learning_rate: float = 0.05):
    """Adam on `bce_loss` for `steps` steps; returns (params, losses (steps,))."""
    optimizer = optax.adam(learning_rate)

    @jax.jit
    def run(params):
        def one_step(carry, _):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(bce_loss)(params, x, y, activation)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(one_step, (params, optimizer.init(params)), length=steps)
        return params, losses

    return run(params)


def predict(params, x: Array, activation=relu) -> Array:
    """Class labels 0/1 from the output logit: (N, d) -> (N,)."""
    return (mlp(params, x, activation)[:, 0] > 0).astype(jnp.float32)


def solve_xor(*, key: Array, hidden: int = 8, steps: int = 500) -> list[dict[str, Array]]:
    """Train a 2 → hidden → 1 ReLU network on XOR (`init_mlp`, then `fit`); returns its parameters.

    The parameters are the list of {"w", "b"} layers that `init_mlp` makes; the tests recompute the
    network's predictions from them (ReLU hidden layer, linear output, class 1 where the logit > 0).
    """
    # YOUR CODE HERE (lab02: solve_xor)
    raise NotImplementedError("lab02: solve_xor")


# %% [markdown]
# ## 5. Demo: linear vs non-linear on XOR


# %%
def demo(out: Path) -> list[Path]:
    """Decision regions on XOR for a deep linear network and a one-hidden-layer ReLU network."""
    x, y = datasets.xor()
    key_lin, key_relu = jax.random.split(jax.random.key(0))
    linear, losses_lin = fit(init_mlp([2, 8, 8, 1], key=key_lin), x, y, activation=identity, steps=500)
    nonlinear = solve_xor(key=key_relu)
    stack = init_mlp([2, 8, 8, 1], key=jax.random.key(1))
    w, b = collapse_linear(stack)
    gap = float(jnp.max(jnp.abs(mlp(stack, x, identity) - (x @ w + b))))
    print(f"a random 3-layer linear stack equals one layer x @ W + b (largest difference {gap:.1e})")

    xx, yy, pts = plotting.grid(-0.5, 1.5)
    fig, axes = plotting.figure(2)
    for ax, params, act, name in [
        (axes[0], linear, identity, "3 linear layers (= 1 linear map)"),
        (axes[1], nonlinear, relu, "1 hidden ReLU layer of 8"),
    ]:
        prob = np.asarray(jax.nn.sigmoid(mlp(params, jnp.asarray(pts), act)[:, 0])).reshape(xx.shape)
        acc = float(jnp.mean(predict(params, x, act) == y))
        cs = plotting.decision_regions(ax, xx, yy, prob, x, y)
        ax.set(title=f"{name}\naccuracy {acc:.0%}", xlabel="$x_1$", ylabel="$x_2$")
        print(f"XOR, {name}: accuracy {acc:.2f}")
    fig.colorbar(cs, ax=axes.tolist(), label="P(class 1)", shrink=0.8)
    return [plotting.save(fig, out, "xor_linear_vs_nonlinear")]


# %%
if __name__ == "__main__":
    demo(Path("figures/lab02"))
