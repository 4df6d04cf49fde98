# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     name: python3
# ---

# %%
"""Universal approximation: how width, depth and activation shape the 1-D functions a net can fit."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array

from course import datasets, plotting

# %% [markdown]
# # Lab 03 — universal approximation
#
# A network with one hidden layer of $m$ ReLU units computes
# $\hat y(x) = \sum_{j=1}^m v_j \,\mathrm{relu}(w_j x + b_j) + c$: a sum of $m$ "hinges", so a
# piecewise-linear function with at most $m$ kinks. With enough hinges it can follow any continuous
# function on an interval as closely as you like (the *universal approximation theorem*); with one
# it is a single bent line. Depth and the activation change *how* the pieces are made: tanh units
# give smooth pieces, and stacked layers reuse and fold them.
#
# The lecture's comparisons, all from one function of width, depth and activation:
#
# | networks | what to look for |
# | --- | --- |
# | 1 hidden layer, 1 vs 2 neurons | one hinge cannot make a bump; two can |
# | 2 hidden layers, 4 vs 8 | more pieces, closer fit |
# | 1 hidden layer of 16, linear output | already a good fit |
# | ReLU, 80 units, 1 layer vs tanh, 40 units, 2 layers | piecewise-linear vs smooth |
#
# And a warning: outside the data the net extrapolates with whatever its pieces do there
# (straight lines for ReLU, flat for tanh). **It learns the function the data implies, not the one
# you meant.**

# %% [markdown]
# ## 1. The network
# `x` is `(N, 1)`; parameters are a list of `{"w", "b"}` layers as in lab 02. Hidden layers use
# `activation`; the output layer is linear.


# %%
def init_network(width: int, depth: int, *, key: Array) -> list[dict[str, Array]]:
    """Layers 1 → width → … (depth hidden layers) → 1; weights ~ N(0, 1/n_in), biases ~ N(0, 1).

    Random biases spread the hinges over the input range (zero biases put every kink at x = 0).
    """
    # YOUR CODE HERE (lab03: init_network)
    raise NotImplementedError("lab03: init_network")


def forward(params: list[dict[str, Array]], x: Array, activation=jax.nn.relu) -> Array:
    """The network's output (N, 1) for inputs x (N, 1): `activation` after every hidden layer, a linear output."""
    # YOUR CODE HERE (lab03: forward)
    raise NotImplementedError("lab03: forward")


def mse(params, x: Array, y: Array, activation=jax.nn.relu) -> Array:
    """Mean squared error between forward(params, x) and y (N, 1); a scalar."""
    # YOUR CODE HERE (lab03: mse)
    raise NotImplementedError("lab03: mse")


# %% [markdown]
# ## 2. Training: the whole run as one compiled program
# `jax.lax.scan` runs `steps` optimizer updates inside one `jax.jit`-compiled function: one
# compile, no Python loop per step. The optimizer is an argument (any Optax transformation).


# %%
def fit(params, x: Array, y: Array, *, optimizer: optax.GradientTransformation, steps: int, activation=jax.nn.relu):
    """Minimise `mse` from `params` for `steps` steps; returns (params, losses (steps,))."""
    # YOUR CODE HERE (lab03: fit)
    raise NotImplementedError("lab03: fit")


def fit_seeds(
    keys: Array,
    x: Array,
    y: Array,
    *,
    width: int,
    depth: int,
    steps: int,
    learning_rate: float = 0.01,
    activation=jax.nn.relu,
):
    """Train one network per key at once with `jax.vmap`; returns (params, losses (len(keys), steps)).

    Network i is exactly what one `fit` would give: `init_network(width, depth, key=keys[i])` (the key
    itself, not split again), trained by `fit` with `optimizer=optax.adam(learning_rate)` for `steps`
    steps. `params` is the list of layers of `init_network`, each array with a leading axis of
    len(keys) (e.g. the first layer's "w" is (len(keys), 1, width)).
    """

    # YOUR CODE HERE (lab03: fit_seeds)
    raise NotImplementedError("lab03: fit_seeds")


# %% [markdown]
# ## 3. Demo: the lecture's comparisons

# %%
COMPARISONS = {
    "one hidden layer: 1 vs 2 neurons": [(1, 1, "relu"), (2, 1, "relu")],
    "two hidden layers: 4 vs 8 neurons": [(4, 2, "relu"), (8, 2, "relu")],
    "one hidden layer of 16, linear output": [(16, 1, "relu")],
    "ReLU 80×1 vs tanh 40×2": [(80, 1, "relu"), (40, 2, "tanh")],
}
ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh}


def best_of_seeds(x, y, width, depth, act, *, key, seeds=4, steps=3000):
    """Train `seeds` networks at once (vmap) and keep the one with the lowest final loss."""
    params, losses = fit_seeds(
        jax.random.split(key, seeds), x, y, width=width, depth=depth, steps=steps, activation=ACTIVATIONS[act]
    )
    best = int(jnp.argmin(losses[:, -1]))
    return jax.tree.map(lambda p: p[best], params), float(losses[best, -1])


def demo(out: Path, *, quick: bool | None = None) -> list[Path]:
    """One panel per comparison on the bump, and the extrapolation figure.

    ``quick`` (default: ``$COURSE_QUICK=1``): 500 training steps instead of 3000, a smoke run.
    """
    steps = 500 if (os.environ.get("COURSE_QUICK") == "1" if quick is None else quick) else 3000
    key_data, key_fit = jax.random.split(jax.random.key(0))
    x, y = datasets.regression_1d("bump", 120, key=key_data)
    grid = jnp.linspace(-1.0, 1.0, 400)[:, None]
    fig, axes = plotting.figure(len(COMPARISONS), size=4.2)
    for ax, (title, nets) in zip(axes, COMPARISONS.items()):
        ax.scatter(np.asarray(x), np.asarray(y), s=8, c="0.6", label="data")
        ax.plot(np.asarray(grid), np.asarray(datasets.TARGETS["bump"](grid)), "k--", lw=1, label="target")
        for width, depth, act in nets:
            params, loss = best_of_seeds(x, y, width, depth, act, key=key_fit, steps=steps)
            label = f"{act}, {depth}×{width}: MSE {loss:.4f}"
            ax.plot(np.asarray(grid), np.asarray(forward(params, grid, ACTIVATIONS[act])), lw=2, label=label)
            print(f"{title}: {label}")
        ax.set(title=title, xlabel="x", ylabel="y", ylim=(-0.4, 1.4))
        ax.legend(fontsize=7, loc="upper left")
    paths = [plotting.save(fig, out, "approximation_comparisons")]

    # Extrapolation: train on [-1, 1] only, look at [-3, 3].
    xs, ys = datasets.regression_1d("kink", 120, key=key_data)
    wide = jnp.linspace(-3.0, 3.0, 600)[:, None]
    fig, (ax,) = plotting.figure(1, size=5.5)
    ax.axvspan(-1, 1, color="0.93", label="where the data are")
    ax.scatter(np.asarray(xs), np.asarray(ys), s=8, c="0.5", label="data")
    ax.plot(np.asarray(wide), np.asarray(datasets.TARGETS["kink"](wide)), "k--", lw=1, label="the function you meant")
    for width, depth, act in [(80, 1, "relu"), (40, 2, "tanh")]:
        params, _ = best_of_seeds(xs, ys, width, depth, act, key=key_fit, steps=steps)
        ax.plot(
            np.asarray(wide), np.asarray(forward(params, wide, ACTIVATIONS[act])), lw=2, label=f"{act}, {depth}×{width}"
        )
    ax.set(
        title="It learns the function the data imply,\nnot the one you meant", xlabel="x", ylabel="y", ylim=(-1.5, 4.5)
    )
    ax.legend(fontsize=8, loc="upper center")
    paths.append(plotting.save(fig, out, "approximation_extrapolation"))
    return paths


# %%
if __name__ == "__main__":
    demo(Path("figures/lab03"))
