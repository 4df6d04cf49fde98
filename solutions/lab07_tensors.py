# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     name: python3
# ---

# %%
"""Images as tensors: one image, a batch, grayscale vs RGB, channels-last vs channels-first, flattening."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array

from course import datasets, images, plotting

# %% [markdown]
# # Lab 07 — images as tensors
#
# To a network an image is an array of numbers with named axes:
#
# | what | channels last (JAX, Flax, TensorFlow) | channels first (PyTorch, cuDNN's default) |
# | --- | --- | --- |
# | one grayscale image | `(H, W, 1)` | `(1, H, W)` |
# | one RGB image | `(H, W, 3)` | `(3, H, W)` |
# | a batch of N images | `(N, H, W, C)` — NHWC | `(N, C, H, W)` — NCHW |
#
# The numbers are the same; only the order of the axes differs, and converting is a transpose.
# Getting it wrong rarely crashes: a `(N, 3, 28, 28)` batch read as NHWC is "28-channel images of
# 3×28 pixels". So the conversions here *check* the layout and say which axis is which.
#
# An MLP needs each image as one vector: **flattening** `(N, H, W, C) -> (N, H·W·C)`. That throws
# away which pixels are neighbours: shuffle every image's pixels with one fixed permutation and an MLP
# learns exactly as well, while you can no longer read the digits. Convolutions (lab 08) use the
# neighbourhood.

# %% [markdown]
# ## 1. Layouts
# Use `images.check_channels_last(x, what)` / `images.check_channels_first(x, what)` first: they raise
# a `ValueError` naming the axes when the layout is wrong. (The tests pass a wrong layout and read the
# message: it must be a `ValueError` that says which layout the input looks like, "channels-first" or
# "channels-last", and which axis is which, as the helpers' messages do.)


# %%
def to_channels_first(x: Array) -> Array:
    """(H, W, C) -> (C, H, W), or (N, H, W, C) -> (N, C, H, W); checks the input is channels-last.

    A channels-first input raises the ValueError of `images.check_channels_last`, which says that it
    looks channels-first and names the axes.
    """
    # BEGIN SOLUTION
    images.check_channels_last(x, "to_channels_first's input")
    return jnp.moveaxis(x, -1, -3)
    # END SOLUTION


def to_channels_last(x: Array) -> Array:
    """(C, H, W) -> (H, W, C), or (N, C, H, W) -> (N, H, W, C); checks the input is channels-first.

    A channels-last input raises the ValueError of `images.check_channels_first`, which says that it
    looks channels-last and names the axes.
    """
    # BEGIN SOLUTION
    images.check_channels_first(x, "to_channels_last's input")
    return jnp.moveaxis(x, -3, -1)
    # END SOLUTION


def add_batch_axis(image: Array) -> Array:
    """One image (H, W, C) -> a batch of one (1, H, W, C)."""
    # BEGIN SOLUTION
    return image[None]
    # END SOLUTION


def grayscale(rgb: Array) -> Array:
    """RGB (…, H, W, 3) -> luma (…, H, W, 1) = 0.299 R + 0.587 G + 0.114 B (keep the channel axis)."""
    # BEGIN SOLUTION
    weights = jnp.array([0.299, 0.587, 0.114], rgb.dtype)
    return jnp.einsum("...c,c->...", rgb, weights)[..., None]
    # END SOLUTION


# %% [markdown]
# ## 2. Flattening, and what it throws away


# %%
def flatten(batch: Array) -> Array:
    """(N, H, W, C) -> (N, H·W·C), row-major: pixel (h, w, c) goes to h·W·C + w·C + c."""
    # BEGIN SOLUTION
    return batch.reshape(batch.shape[0], -1)  # (N, H*W*C)
    # END SOLUTION


def shuffle_pixels(batch: Array, permutation: Array) -> Array:
    """Apply one permutation of the H·W·C positions to every image: (N, H, W, C) -> same shape.

    Position i of the flattened result holds position permutation[i] of the flattened input.
    """
    # BEGIN SOLUTION
    return flatten(batch)[:, permutation].reshape(batch.shape)  # (N, H, W, C)
    # END SOLUTION


# %% [markdown]
# ## 3. Demo


# %%
def train_softmax_mlp(x: Array, y: Array, *, key: Array, steps: int = 300) -> callable:
    """A 784 → 64 → 10 MLP on flattened images, Adam, full batch; returns a predict function."""
    k1, k2 = jax.random.split(key)
    n_in = x.shape[1]
    params = {
        "w1": jax.random.normal(k1, (n_in, 64)) / np.sqrt(n_in),
        "b1": jnp.zeros(64),
        "w2": jax.random.normal(k2, (64, 10)) / 8.0,
        "b2": jnp.zeros(10),
    }

    def logits(p, x):
        return jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    def loss(p):
        return optax.softmax_cross_entropy_with_integer_labels(logits(p, x), y).mean()

    opt = optax.adam(3e-3)

    @jax.jit
    def run(p):
        def step(carry, _):
            p, s = carry
            g = jax.grad(loss)(p)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        return jax.lax.scan(step, (p, opt.init(p)), length=steps)[0][0]

    trained = run(params)
    return lambda x: jnp.argmax(logits(trained, x), axis=1)


def demo(out: Path) -> list[Path]:
    """The photo in both layouts, a batch of digits, and the pixel-shuffle experiment."""
    photo = images.photo()  # (H, W, 3) uint8
    chw = to_channels_first(photo)
    print(f"one RGB image: HWC {photo.shape} -> CHW {chw.shape}; as a batch: {add_batch_axis(photo).shape}")
    gray = grayscale(photo.astype(jnp.float32) / 255.0)
    print(f"grayscale: {gray.shape}; back to channels-first: {to_channels_first(gray).shape}")
    fig, axes = plotting.figure(5, size=3.0)
    axes[0].imshow(np.asarray(photo))
    axes[0].set_title(f"RGB, HWC {tuple(photo.shape)}")
    for ax, c, name in zip(axes[1:4], range(3), ["red", "green", "blue"]):
        ax.imshow(np.asarray(chw[c]), cmap="gray")
        ax.set_title(f"CHW[{c}] — the {name} channel")
    axes[4].imshow(np.asarray(gray[:, :, 0]), cmap="gray")
    axes[4].set_title(f"grayscale {tuple(gray.shape)}")
    for ax in axes:
        ax.set(xticks=[], yticks=[])
    paths = [plotting.save(fig, out, "tensors_photo_channels")]

    k_train, k_test, k_perm, k_fit = jax.random.split(jax.random.key(0), 4)
    x, y = datasets.digits(3000, key=k_train)
    x_test, y_test = datasets.digits(1000, key=k_test)
    perm = jax.random.permutation(k_perm, 28 * 28)
    results = {}
    for name, tx, tt in [
        ("original", x, x_test),
        ("pixels shuffled", shuffle_pixels(x, perm), shuffle_pixels(x_test, perm)),
    ]:
        predict = train_softmax_mlp(flatten(tx), y, key=k_fit)
        results[name] = float(jnp.mean(predict(flatten(tt)) == y_test))
        print(f"MLP on flattened digits, {name}: test accuracy {results[name]:.3f}")
    fig, axes = plotting.figure(8, 2, size=1.6)
    shuffled = shuffle_pixels(x_test[:8], perm)
    for i in range(8):
        axes[i].imshow(np.asarray(x_test[i, :, :, 0]), cmap="gray")
        axes[8 + i].imshow(np.asarray(shuffled[i, :, :, 0]), cmap="gray")
        axes[i].set_title(f"label {int(y_test[i])}", fontsize=8)
    for ax in axes:
        ax.set(xticks=[], yticks=[])
    axes[0].set_ylabel(f"original\nacc {results['original']:.1%}", fontsize=8)
    axes[8].set_ylabel(f"shuffled\nacc {results['pixels shuffled']:.1%}", fontsize=8)
    fig.suptitle("An MLP on flattened pixels cannot tell the difference", fontsize=10)
    paths.append(plotting.save(fig, out, "tensors_pixel_shuffle"))
    return paths


# %%
if __name__ == "__main__":
    demo(Path("figures/lab07"))
