# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     name: python3
# ---

# %%
"""Convolution from scratch: filters, padding, pooling, striding and channel arithmetic."""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from course import images, plotting

# %% [markdown]
# # Lab 08 — convolution, padding, pooling, striding, channels
#
# A convolutional layer slides a small filter over the image and, at every position, takes the dot
# product of the filter with the patch under it. (Deep-learning libraries call this convolution; a
# mathematician would call it *cross-correlation*, because the filter is not flipped.) With input
# `x` of shape `(N, H, W, C)` (NHWC), filters `w` of shape `(KH, KW, C, F)` and biases `b` `(F,)`:
#
# $$y[n, i, j, f] = b_f + \sum_{u < KH}\sum_{v < KW}\sum_{c < C} x[n, s i + u, s j + v, c]\; w[u, v, c, f].$$
#
# The lecture's worked example: the vertical-line filter, every row $(-1, 1, -1)$, on two 3×3 patches.
#
# ```
# filter        patch A       A·filter          patch B       B·filter
# -1  1 -1      1 1 0         -1 +1  0           0 1 0        0 +1  0
# -1  1 -1      0 0 0          0  0  0           0 1 0        0 +1  0
# -1  1 -1      1 0 1         -1  0 -1           0 1 0        0 +1  0
# ```
#
# Patch A puts three of its pixels under the $-1$ weights and one under a $+1$: $-3 + 1 = -2$. Patch B,
# a thin vertical line, lies exactly on the $+1$ column: $1 + 1 + 1 = 3$, the highest score any 0/1
# patch can get. Your `conv2d` must give $-2$ and $3$ on them (a graded test).
#
# * Every filter spans **all** input channels: on a 26×26×6 input, `Conv2D(4, (3, 3))` has 4 filters
#   of 3×3×6, plus 4 biases: $4 (3 \cdot 3 \cdot 6 + 1) = 220$ parameters, and gives 24×24×4.
# * **'valid'** padding keeps only positions where the filter fits: $\lfloor (n - k)/s \rfloor + 1$.
#   **'same'** pads with zeros so that the output is $\lceil n / s \rceil$: in all
#   $\max((\lceil n/s \rceil - 1)\, s + k - n,\ 0)$ zeros, half before and half after, the extra one
#   (if the total is odd) after: the TensorFlow/XLA convention. `same_padding(n, k, stride)` below
#   gives the pair; with a stride this can be fewer than the $k - 1$ zeros of stride 1.
# * **Pooling** summarises each window by its max (`kind="max"`) or its mean (`kind="avg"`);
#   **stride** $s$ moves the window $s$ pixels at a time.
#
# Write it with `jax.numpy` only: loop over the *filter's* KH×KW offsets (a handful), never over the
# image's pixels, and let one `einsum` do the sums. The tests check that your functions do not call
# `lax.conv_general_dilated` or `lax.reduce_window`, and that they agree with them.

# %% [markdown]
# ## 1. Shapes and parameter counts


# %%
def output_size(n: int, k: int, *, stride: int = 1, padding: str = "valid") -> int:
    """Output length along one axis for input length n, window k, stride and padding ("valid" or "same")."""
    # BEGIN SOLUTION
    if padding == "valid":
        return (n - k) // stride + 1
    if padding == "same":
        return -(-n // stride)
    raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    # END SOLUTION


def conv_params(kh: int, kw: int, c_in: int, filters: int) -> int:
    """Number of weights and biases in a conv layer of `filters` filters of kh×kw×c_in."""
    # BEGIN SOLUTION
    return filters * (kh * kw * c_in + 1)
    # END SOLUTION


def same_padding(n: int, k: int, stride: int) -> tuple[int, int]:
    """Zeros (before, after) along one axis for 'same' padding; the odd one goes after."""
    total = max((output_size(n, k, stride=stride, padding="same") - 1) * stride + k - n, 0)
    return total // 2, total - total // 2


# %% [markdown]
# ## 2. Convolution and pooling


# %%
def conv2d(x: Array, w: Array, b: Array, *, stride: int = 1, padding: str = "valid") -> Array:
    """Cross-correlate x (N, H, W, C) with filters w (KH, KW, C, F), add b (F,): -> (N, H', W', F).

    padding: "valid" (no zeros) or "same" (pad H and W with the zeros `same_padding` gives, then as "valid").
    """
    # BEGIN SOLUTION
    kh, kw, _, _ = w.shape
    if padding == "same":
        ph, pw = same_padding(x.shape[1], kh, stride), same_padding(x.shape[2], kw, stride)
        x = jnp.pad(x, ((0, 0), ph, pw, (0, 0)))
    oh = output_size(x.shape[1], kh, stride=stride)
    ow = output_size(x.shape[2], kw, stride=stride)
    out = jnp.zeros((x.shape[0], oh, ow, w.shape[3]), x.dtype)
    for u in range(kh):  # loop over the filter's offsets, not the image's pixels
        for v in range(kw):
            patch = x[
                :, u : u + stride * (oh - 1) + 1 : stride, v : v + stride * (ow - 1) + 1 : stride, :
            ]  # (N, OH, OW, C)
            out = out + jnp.einsum("nhwc,cf->nhwf", patch, w[u, v])
    return out + b  # (N, H, W, C) + (C,)
    # END SOLUTION


def pool2d(x: Array, *, window: int, stride: int | None = None, kind: str = "max") -> Array:
    """Max or average pooling of x (N, H, W, C) over window×window, 'valid': -> (N, H', W', C).

    kind: "max" (the largest value of each window) or "avg" (their mean). The stride defaults to the
    window (non-overlapping windows, as in Keras).
    """
    # BEGIN SOLUTION
    stride = stride or window
    oh = output_size(x.shape[1], window, stride=stride)
    ow = output_size(x.shape[2], window, stride=stride)
    patches = jnp.stack(
        [
            x[:, u : u + stride * (oh - 1) + 1 : stride, v : v + stride * (ow - 1) + 1 : stride, :]
            for u in range(window)
            for v in range(window)
        ]
    )  # (window², N, OH, OW, C)
    if kind == "max":
        return patches.max(axis=0)
    if kind == "avg":
        return patches.mean(axis=0)
    raise ValueError(f"kind must be 'max' or 'avg', got {kind!r}")
    # END SOLUTION


# %% [markdown]
# ## 3. Demo: filters on a photograph

# %%
# A pixel is yellow when red and green are high and blue is low: weights (+1, +1, -2) on (R, G, B).
YELLOW = jnp.array([1.0, 1.0, -2.0]).reshape(1, 1, 3, 1)
# The lecture's vertical-line filter: every row is (-1, 1, -1); it scores a thin bright vertical line.
VERTICAL_LINE = jnp.tile(jnp.array([-1.0, 1.0, -1.0]), (3, 1))
# On a photograph, edge filters whose weights sum to zero ignore flat regions: dark-to-bright left to
# right (vertical edges), and its transpose (horizontal edges).
VERTICAL_EDGE = jnp.tile(jnp.array([-1.0, 0.0, 1.0]), (3, 1))
EDGES = jnp.stack([VERTICAL_EDGE, VERTICAL_EDGE.T], axis=-1)[:, :, None, :]  # (3, 3, 1, 2)


def demo(out: Path) -> list[Path]:
    """Yellow detector, edge filters, valid vs same, stride vs pooling, and timing vs XLA's conv."""
    photo = images.photo()[None].astype(jnp.float32) / 255.0  # (1, H, W, 3)
    yellow = conv2d(photo, YELLOW, jnp.zeros(1))[0, :, :, 0]
    fig, (ax_photo, ax_heat) = plotting.figure(2, size=4.5)
    ax_photo.imshow(np.asarray(photo[0]))
    ax_photo.set(title="The photograph", xticks=[], yticks=[])
    heat = ax_heat.imshow(np.asarray(yellow), cmap="inferno")
    ax_heat.set(title="Yellow filter (R + G − 2B)", xticks=[], yticks=[])
    fig.colorbar(heat, ax=ax_heat, shrink=0.8)
    paths = [plotting.save(fig, out, "conv_yellow")]

    gray = images.to_grayscale(photo)  # (1, H, W, 1)
    valid = conv2d(gray, EDGES, jnp.zeros(2))
    same = conv2d(gray, EDGES, jnp.zeros(2), padding="same")
    strided = conv2d(gray, EDGES, jnp.zeros(2), stride=2, padding="same")
    pooled = pool2d(jnp.abs(same), window=2)
    panels = [
        (valid[0, :, :, 0], f"vertical edges, 'valid' {valid.shape[1]}×{valid.shape[2]}"),
        (valid[0, :, :, 1], f"horizontal edges, 'valid' {valid.shape[1]}×{valid.shape[2]}"),
        (same[0, :, :, 0], f"vertical, 'same' {same.shape[1]}×{same.shape[2]}"),
        (strided[0, :, :, 0], f"vertical, stride 2: {strided.shape[1]}×{strided.shape[2]}"),
        (pooled[0, :, :, 0], f"|vertical|, max-pool 2: {pooled.shape[1]}×{pooled.shape[2]}"),
    ]
    fig, axes = plotting.figure(len(panels), size=3.2)
    for ax, (img, title) in zip(axes, panels):
        ax.imshow(np.asarray(img), cmap="gray")
        ax.set(title=title, xticks=[], yticks=[])
    ax.title.set_fontsize(9)
    paths.append(plotting.save(fig, out, "conv_edges_padding_stride_pool"))

    # Vectorised from scratch vs XLA's own convolution, both jitted, same input.
    x = jax.random.normal(jax.random.key(0), (32, 64, 64, 8))
    w = jax.random.normal(jax.random.key(1), (3, 3, 8, 16))
    ours = jax.jit(lambda x, w: conv2d(x, w, jnp.zeros(16), padding="same"))
    xla = jax.jit(
        lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    )
    timings = {}
    for name, fn in [("conv2d (yours)", ours), ("lax.conv_general_dilated", xla)]:
        jax.block_until_ready(fn(x, w))
        start = time.perf_counter()
        for _ in range(10):
            y = fn(x, w)
        jax.block_until_ready(y)
        timings[name] = (time.perf_counter() - start) / 10
    print(f"{'implementation':<26} {'ms':>8}")
    for name, t in timings.items():
        print(f"{name:<26} {t * 1e3:>8.2f}")
    ratio = timings["conv2d (yours)"] / timings["lax.conv_general_dilated"]
    print(f"yours / XLA's: {ratio:.2f}× on {jax.devices()[0].platform.upper()}, batch (32, 64, 64, 8), 16 filters 3×3")
    return paths


# %%
if __name__ == "__main__":
    demo(Path("figures/lab08"))
