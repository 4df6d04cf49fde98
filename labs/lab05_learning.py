# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     name: python3
# ---

# %%
"""How we learn: backpropagation by hand vs jax.grad, jit, vmap, grad of grad, layers as a fold."""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.flatten_util import ravel_pytree

from course import datasets, plotting

# %% [markdown]
# # Lab 05 — how we learn
#
# Training is gradient descent, $\theta \leftarrow \theta - \eta \nabla_\theta L$, and the gradient
# comes from the chain rule applied backwards through the network: **backpropagation**. For the
# two-layer network
#
# $$h = \tanh(x W_1 + b_1), \qquad \hat y = h W_2 + b_2, \qquad L = \tfrac{1}{N}\sum (\hat y - y)^2,$$
#
# the backward pass is
#
# $$\delta_2 = \tfrac{2}{N}(\hat y - y),\quad \nabla W_2 = h^\top \delta_2,\quad \nabla b_2 = \textstyle\sum \delta_2,$$
# $$\delta_1 = (\delta_2 W_2^\top) \odot (1 - h^2),\quad \nabla W_1 = x^\top \delta_1,\quad \nabla b_1 = \textstyle\sum \delta_1.$$
#
# `jax.grad` does this for any function, `jax.jit` compiles the whole step for the CPU or GPU,
# `jax.vmap` maps a function over a batch axis (per-example gradients), and the same network of
# any depth is a *recursion* $z_n = s(z_{n-1} W_n + b_n)$: a fold over stacked layer weights,
# which is what `jax.lax.scan` computes.

# %% [markdown]
# ## 1. Backpropagation by hand
# `params = {"w1": (d, m), "b1": (m,), "w2": (m, 1), "b2": (1,)}`, `x` `(N, d)`, `y` `(N, 1)`.


# %%
def two_layer(params: dict[str, Array], x: Array) -> Array:
    """tanh(x W1 + b1) W2 + b2: (N, d) -> (N, 1)."""
    h = jnp.tanh(x @ params["w1"] + params["b1"])  # (N, m)
    return h @ params["w2"] + params["b2"]


def loss(params: dict[str, Array], x: Array, y: Array) -> Array:
    """Mean squared error of two_layer against y (N, 1)."""
    return jnp.mean((two_layer(params, x) - y) ** 2)


def backprop(params: dict[str, Array], x: Array, y: Array) -> dict[str, Array]:
    """The gradient of `loss` by the backward pass above: a dict shaped like params."""
    # YOUR CODE HERE (lab05: backprop)
    raise NotImplementedError("lab05: backprop")


def autodiff(params: dict[str, Array], x: Array, y: Array) -> dict[str, Array]:
    """The same gradient by `jax.grad`."""
    # YOUR CODE HERE (lab05: autodiff)
    raise NotImplementedError("lab05: autodiff")


def finite_differences(f, params: dict[str, Array], *, eps: float = 1e-6) -> dict[str, Array]:
    """Central differences (f(θ + εe_i) − f(θ − εe_i)) / 2ε for every entry of every array in params.

    f maps a dict shaped like params to a scalar; the result is the gradient of f as a dict shaped
    like params (same keys, each array the shape of its parameter, a 0-d one included).
    Slow (two evaluations per parameter) but needs no calculus: the referee for the other two.
    Use it in float64 (`with jax.enable_x64(True):`), where ε = 1e-6 is accurate.
    """
    # YOUR CODE HERE (lab05: finite_differences)
    raise NotImplementedError("lab05: finite_differences")


# %% [markdown]
# ## 2. vmap: per-example gradients; grad of grad
# `jax.grad(loss)` averages over the batch. `jax.vmap` of the gradient of one example's loss gives
# every example's gradient at once: arrays with a leading axis of N.


# %%
def per_example_grads(params: dict[str, Array], x: Array, y: Array) -> dict[str, Array]:
    """Gradient of each example's own squared error: leaves of shape (N, *param.shape)."""

    # YOUR CODE HERE (lab05: per_example_grads)
    raise NotImplementedError("lab05: per_example_grads")


def second_derivative(f):
    """f'' for a scalar function f: R -> R, by applying jax.grad twice."""
    # YOUR CODE HERE (lab05: second_derivative)
    raise NotImplementedError("lab05: second_derivative")


# %% [markdown]
# ## 3. Recursive representations: a deep net as a fold
# With every hidden layer the same width, stack their weights: `ws (L, m, m)`, `bs (L, m)`. Then
# $z_n = \tanh(z_{n-1} W_n + b_n)$ is one `lax.scan` step, and the network is the fold. It compiles
# to one loop however deep the network, where the Python loop unrolls L copies.


# %%
def deep_loop(ws: Array, bs: Array, z: Array) -> Array:
    """z_n = tanh(z_{n-1} W_n + b_n) for n = 1..L, a Python loop: z (N, m) -> (N, m)."""
    for w, b in zip(ws, bs):
        z = jnp.tanh(z @ w + b)
    return z


def deep_scan(ws: Array, bs: Array, z: Array) -> Array:
    """The same recursion, z_n = tanh(z_{n-1} @ ws[n] + bs[n]), with `jax.lax.scan` over the stacked layers.

    ws (L, m, m), bs (L, m), z (N, m) -> (N, m).
    """

    # YOUR CODE HERE (lab05: deep_scan)
    raise NotImplementedError("lab05: deep_scan")


# %% [markdown]
# ## 4. Demo: gradient descent, jit, retracing, the device


# %%
def init(d: int, m: int, *, key: Array) -> dict[str, Array]:
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (d, m)),
        "b1": jnp.zeros(m),
        "w2": jax.random.normal(k2, (m, 1)) / jnp.sqrt(m),
        "b2": jnp.zeros(1),
    }


def sgd_step(params, x, y, learning_rate):
    grads = backprop(params, x, y)
    return jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)


def _time(fn, *args, repeat=50):
    jax.block_until_ready(fn(*args))  # compile (for jit) and warm up
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / repeat


def demo(out: Path) -> list[Path]:
    """Train by hand-written backprop, time jit, show retracing; write the loss curve and timings."""
    print(f"JAX runs on: {jax.devices()[0].platform.upper()} ({jax.devices()[0].device_kind})")
    key_data, key_init = jax.random.split(jax.random.key(0))
    x, y = datasets.regression_1d("bump", 200, key=key_data)
    params = init(1, 32, key=key_init)

    step = jax.jit(sgd_step)
    losses = []
    for _ in range(2000):
        losses.append(float(loss(params, x, y)))
        params = step(params, x, y, 0.1)
    print(f"gradient descent with hand-written backprop: loss {losses[0]:.4f} -> {losses[-1]:.4f}")

    # Timing: the same step, eager vs compiled (a printed table, not a test).
    rows = []
    for n in (200, 2000, 20000):
        xb = jnp.tile(x, (n // 200, 1))
        yb = jnp.tile(y, (n // 200, 1))
        eager = _time(sgd_step, params, xb, yb, 0.1)
        compiled = _time(step, params, xb, yb, 0.1)
        rows.append((n, eager * 1e3, compiled * 1e3, eager / compiled))
    print(f"{'batch':>7} {'eager ms':>10} {'jit ms':>8} {'speed-up':>9}")
    for n, e, c, r in rows:
        print(f"{n:>7} {e:>10.3f} {c:>8.3f} {r:>8.1f}×")

    # Retracing: jit traces once per new input shape/dtype, or per value of a static argument.
    traces = []

    def scaled(x, power):
        traces.append((x.shape, power))
        return x**power

    scaled_jit = jax.jit(scaled, static_argnames="power")
    for shape, power in [((3,), 2), ((3,), 2), ((4,), 2), ((3,), 3)]:
        scaled_jit(jnp.ones(shape), power=power)
    print(f"4 calls, {len(traces)} traces: {traces} (a new shape or a new static value retraces)")

    fig, (ax_loss, ax_time) = plotting.figure(2, size=4.5)
    ax_loss.plot(losses)
    ax_loss.set(title="Gradient descent with hand-written backprop", xlabel="step", ylabel="MSE", yscale="log")
    labels = [str(r[0]) for r in rows]
    pos = np.arange(len(rows))
    ax_time.bar(pos - 0.2, [r[1] for r in rows], width=0.4, label="eager")
    ax_time.bar(pos + 0.2, [r[2] for r in rows], width=0.4, label="jax.jit")
    ax_time.set(
        title=f"One training step on {jax.devices()[0].platform.upper()}",
        xlabel="batch size",
        ylabel="ms per step",
        yscale="log",
        xticks=pos,
        xticklabels=labels,
    )
    ax_time.legend()
    return [plotting.save(fig, out, "learning_loss_and_jit")]


# %%
if __name__ == "__main__":
    demo(Path("figures/lab05"))
