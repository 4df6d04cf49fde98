"""Graded tests for lab 11, VGG16 and filter visualisation.

References: the architecture of the paper (configuration "D") and its arithmetic; a tiny VGG-shaped
net written here twice, with `lax.conv_general_dilated` (the `features` handed to your code) and in
float64 numpy (to recompute activations and finite differences from the images your code returns).
Nothing here needs the real weights or a download.

Your functions that take `features` or return images are called through `lab.run(fn, ...)`, which runs
`fn(your_lab, ...)` where your code lives and brings back only arrays and numbers; every claim (the
activation went up, batched equals one at a time) is checked here, on the images themselves.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from course.grader import testing
from course.grader.testing import draw, expect, expect_close, expect_equal, expect_shape

# Simonyan & Zisserman (2015), Table 1, configuration D: 13 convolutions in five blocks.
CONFIG_D = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]

# ------------------------------------------------------------------ a tiny VGG-shaped net, twice


def _rng(n: int) -> np.random.Generator:
    """numpy's generator n, varied by the grading seed (as `seeded_key`): hidden seeds change the inputs."""
    return np.random.default_rng([n, testing.SEED])


TINY = [("block1_conv1", 3, 4), ("block1_conv2", 4, 4), ("pool", 0, 0), ("block2_conv1", 4, 6)]
SIZE = 16  # 16×16 -> pool -> 8×8×6; border 2 leaves the central 4×4


def _tiny_params(seed: int = 0) -> dict:
    """float32 He-initialised weights. The last layer's biases put each filter's lower-quartile response
    to small-noise images (centre of the map) at zero, so every filter is alive (and has a gradient)
    at the start."""
    rng = _rng(seed)
    params = {}
    for name, c_in, c_out in TINY:
        if name == "pool":
            continue
        kernel = rng.normal(0.0, np.sqrt(2.0 / (9 * c_in)), (3, 3, c_in, c_out)).astype(np.float32)
        params[name] = (kernel, rng.normal(0.0, 0.1, c_out).astype(np.float32))
    kernel, bias = params["block2_conv1"]
    params["block2_conv1"] = (kernel, np.zeros_like(bias))
    linear = _np_features(params, _starts(4, seed=99), relu_last=False)[:, 2:-2, 2:-2]  # (4, 4, 4, 6) before the ReLU
    params["block2_conv1"] = (kernel, (-np.quantile(linear, 0.25, axis=(0, 1, 2))).astype(np.float32))
    return params


def _features(params, x):
    """The tiny net in JAX: x (N, 16, 16, 3) -> block2_conv1 after its ReLU (N, 8, 8, 6)."""
    for name, _, _ in TINY:
        if name == "pool":
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        else:
            kernel, bias = params[name]
            x = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
            x = jax.nn.relu(x + bias[None, None, None, :])
    return x


def _np_features(params, x, *, relu_last=True):
    """The same net in float64 numpy: zero padding, a loop over the 3×3 offsets, ReLU, 2×2 max-pool."""
    x = np.asarray(x, np.float64)
    for name, _, _ in TINY:
        if name == "pool":
            n, h, w, c = x.shape
            x = x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
            continue
        kernel, bias = (np.asarray(a, np.float64) for a in params[name])
        n, h, w, _ = x.shape
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        out = np.zeros((n, h, w, kernel.shape[-1]))
        for u in range(3):
            for v in range(3):
                out += np.einsum("nhwc,cf->nhwf", padded[:, u : u + h, v : v + w], kernel[u, v])
        x = out + bias if (name == TINY[-1][0] and not relu_last) else np.maximum(out + bias, 0.0)
    return x


def _np_objective(params, image, f, border=2):
    """Mean of channel f over the feature map without a `border` on each side, in float64."""
    act = _np_features(params, np.asarray(image)[None])[0]
    h, w = act.shape[:2]
    return act[border : h - border, border : w - border, f].mean()


def _reference_ascent(params, image, f, steps, step_size, border=2):
    """The recipe, written here: steps of step_size · g / (rms(g) + 1e-5), g the input gradient."""

    def objective(x):
        act = _features(params, x[None])[0]
        h, w = act.shape[:2]
        return jnp.mean(act[border : h - border, border : w - border, f])

    x = jnp.asarray(image)
    for _ in range(steps):
        g = jax.grad(objective)(x)
        x = x + step_size * g / (jnp.sqrt(jnp.mean(g * g)) + 1e-5)
    return np.asarray(x)


def _starts(k: int, seed: int = 1) -> np.ndarray:
    """k start images (k, 16, 16, 3): small noise, as the lab's initial_images."""
    return _rng(seed).uniform(-1.0, 1.0, (k, SIZE, SIZE, 3)).astype(np.float32)


# Run where the lab lives; return only data.


def _objective_gradient(lab, params, image, f):
    return np.asarray(jax.grad(lambda x: lab.filter_activation(_features, params, x, f))(jnp.asarray(image)))


def _ascent(lab, params, image, f, steps, step_size):
    return np.asarray(lab.gradient_ascent(_features, params, jnp.asarray(image), f, steps=steps, step_size=step_size))


def _batched_and_single(lab, params, starts, steps, step_size):
    filters = jnp.arange(len(starts))
    batched = lab.visualize_filters(_features, params, filters, jnp.asarray(starts), steps=steps, step_size=step_size)
    chunked = lab.visualize_filters(
        _features, params, filters, jnp.asarray(starts), steps=steps, step_size=step_size, chunk=4
    )
    single = [
        lab.gradient_ascent(_features, params, jnp.asarray(s), f, steps=steps, step_size=step_size)
        for f, s in enumerate(starts)
    ]
    return {
        "batched": np.asarray(batched),
        "chunked": np.asarray(chunked),
        "single": np.stack([np.asarray(s) for s in single]),
    }


def _program_sizes(lab, params, steps):
    """Lines of the jaxpr of visualize_filters for 2 and for 6 filters."""
    sizes = {}
    for k in (2, 6):
        jaxpr = jax.make_jaxpr(
            lambda imgs, fs: lab.visualize_filters(_features, params, fs, imgs, steps=steps, step_size=1.0)
        )(jnp.zeros((k, SIZE, SIZE, 3)), jnp.arange(k))
        sizes[k] = str(jaxpr).count("\n")
    return sizes


# ------------------------------------------------------------------------------ 1. architecture


def _expected_table(blocks, input_shape, include_top, classes=1000):
    """The architecture arithmetic: 'same' 3×3 keeps H×W, a pool halves it (floor), counts as in lab 08."""
    h, w, c = input_shape
    rows = []
    for b, widths in enumerate(blocks, start=1):
        for i, f in enumerate(widths, start=1):
            rows.append((f"block{b}_conv{i}", (h, w, f), (3 * 3 * c + 1) * f))
            c = f
        h, w = h // 2, w // 2
        rows.append((f"block{b}_pool", (h, w, c), 0))
    if include_top:
        rows.append(("flatten", (h * w * c,), 0))
        n = h * w * c
        for name, units in [("fc1", 4096), ("fc2", 4096), ("predictions", classes)]:
            rows.append((name, (units,), (n + 1) * units))
            n = units
    return rows


def _check_table(got, want, what):
    expect(isinstance(got, (list, tuple)), f"{what}: expected a list of rows, got {type(got).__name__}")
    names = [row[0] for row in got]
    expect(names == [row[0] for row in want], f"{what}: layer names {names}, expected {[row[0] for row in want]}")
    for (name, shape, n), (_, want_shape, want_n) in zip(got, want):
        expect_equal(tuple(int(d) for d in shape), want_shape, f"{what}: output shape of {name}")
        expect_equal(int(n), want_n, f"{what}: parameters of {name}")


def _seeded_shape(n: int) -> tuple[int, int, int]:
    """An input shape (H, W, C) of the grading seed's: 32 to 255 pixels a side, 1 to 4 channels."""
    h, w, c = _rng(n).integers([32, 32, 1], [256, 256, 5])
    return int(h), int(w), int(c)


def test_the_blocks_are_configuration_d(lab):
    blocks = lab.vgg16_blocks()
    expect(blocks is not None, "vgg16_blocks returned None (missing `return`?)")
    got = [[int(f) for f in block] for block in blocks]
    expect(got == CONFIG_D, f"VGG16's filters per convolution, block by block: expected {CONFIG_D}, got {got}")
    # A function of no inputs can be copied from a table, so the blocks are also put to work: your
    # layer_table of them on an input of the grading seed's has the arithmetic's rows.
    shape = _seeded_shape(11)
    _check_table(
        lab.layer_table(got, input_shape=shape, include_top=False),
        _expected_table(CONFIG_D, shape, False),
        f"layer_table(vgg16_blocks(), input_shape={shape})",
    )


@pytest.mark.parametrize("kh, kw, c_in, filters", [(3, 3, 3, 64), (3, 3, 512, 512), (5, 3, 2, 7), (1, 1, 10, 1)])
def test_conv_params(lab, kh, kw, c_in, filters):
    seeded = [int(v) for v in _rng(kh * 1000 + filters).integers(1, [8, 8, 600, 600])]  # the grading seed's
    for kh, kw, c_in, filters in [(kh, kw, c_in, filters), seeded]:
        expect_equal(
            lab.conv_params(kh, kw, c_in, filters),
            filters * (kh * kw * c_in + 1),
            f"conv_params({kh}, {kw}, {c_in}, {filters}): one bias per filter",
        )


@pytest.mark.parametrize("n_in, n_out", [(25088, 4096), (4096, 1000), (3, 2)])
def test_dense_params(lab, n_in, n_out):
    seeded = [int(v) for v in _rng(n_in + 7 * n_out).integers(1, [30000, 5000])]  # the grading seed's
    for n_in, n_out in [(n_in, n_out), seeded]:
        expect_equal(
            lab.dense_params(n_in, n_out), n_out * (n_in + 1), f"dense_params({n_in}, {n_out}): weights and biases"
        )


@pytest.mark.points(3)
@pytest.mark.parametrize("include_top, total", [(False, 14_714_688), (True, 138_357_544)], ids=["no-top", "top"])
def test_the_vgg16_table(lab, include_top, total):
    rows = lab.layer_table(CONFIG_D, input_shape=(224, 224, 3), include_top=include_top)
    want = _expected_table(CONFIG_D, (224, 224, 3), include_top)
    _check_table(rows, want, f"VGG16 {'with' if include_top else 'without'} the top")
    # Keras' documented totals; the same numbers as the sum of the arithmetic above.
    assert sum(n for _, _, n in want) == total
    expect_equal(sum(int(n) for _, _, n in rows), total, "the whole network's parameter count")
    shape = _seeded_shape(12 + include_top)  # and on an input of the grading seed's
    rows = lab.layer_table(CONFIG_D, input_shape=shape, include_top=include_top)
    _check_table(rows, _expected_table(CONFIG_D, shape, include_top), f"VGG16 on an input of shape {shape}")


@pytest.mark.points(2)
def test_other_vgg_shapes(lab):
    blocks = [[4, 4], [6], [5, 5, 5]]
    _check_table(
        lab.layer_table(blocks, input_shape=(37, 18, 1), include_top=False),
        _expected_table(blocks, (37, 18, 1), False),
        "a small VGG on a 37×18×1 input (odd sizes round down)",
    )
    _check_table(
        lab.layer_table(blocks, input_shape=(32, 32, 3), include_top=True, classes=10),
        _expected_table(blocks, (32, 32, 3), True, classes=10),
        "a small VGG with a 10-class top",
    )
    # The grading seed's VGG: 2 to 4 blocks of 1 to 3 convolutions, 1 to 16 filters each.
    rng = _rng(13)
    blocks = [[int(f) for f in rng.integers(1, 17, rng.integers(1, 4))] for _ in range(rng.integers(2, 5))]
    shape, classes = _seeded_shape(14), int(rng.integers(2, 20))
    _check_table(
        lab.layer_table(blocks, input_shape=shape, include_top=True, classes=classes),
        _expected_table(blocks, shape, True, classes=classes),
        f"a VGG of blocks {blocks} on a {shape} input with a {classes}-class top",
    )


# -------------------------------------------------------------------------------- 2. objective


@pytest.mark.points(2)
@pytest.mark.parametrize("border", [2, 0, 3])
def test_filter_activation(lab, border):
    params, image = _tiny_params(), _starts(1, seed=3)[0]
    got = [lab.filter_activation(_features, params, jnp.asarray(image), f, border=border) for f in range(6)]
    for f, value in enumerate(got):
        expect_shape(value, (), f"filter_activation(..., f={f}) (a scalar)")
    want = [_np_objective(params, image, f, border) for f in range(6)]
    expect_close(
        np.array([np.asarray(v) for v in got]),
        want,
        f"mean activation of each filter, border {border} (float64 reference)",
        atol=1e-5,
        rtol=1e-4,
    )


@pytest.mark.points(3)
@pytest.mark.parametrize("f", [0, 5])
def test_objective_gradient_matches_finite_differences(lab, f):
    params, image = _tiny_params(), _starts(1, seed=4)[0]
    grad = lab.run(_objective_gradient, params, image, f)
    expect_shape(grad, image.shape, "the gradient with respect to the image")
    rng, eps = _rng(5), 1e-6
    directions = rng.normal(size=(4, *image.shape))
    fd = [
        (_np_objective(params, image + eps * d, f) - _np_objective(params, image - eps * d, f)) / (2 * eps)
        for d in directions
    ]  # central differences in float64, along random directions
    along = [float(np.sum(np.asarray(grad, np.float64) * d)) for d in directions]
    expect(np.abs(fd).max() > 1e-3, "the test's directions see no change (test bug)")
    expect_close(
        along, fd, "directional derivatives of the objective: jax.grad vs finite differences", atol=1e-4, rtol=1e-3
    )


# -------------------------------------------------------------------------------- gradient ascent


@pytest.mark.points(3)
@pytest.mark.parametrize("f", [1, 4])
def test_gradient_ascent_follows_the_recipe(lab, f):
    params, start = _tiny_params(), _starts(1, seed=6)[0]
    last = lab.run(_ascent, params, start, f, 6, 0.2)
    expect_shape(last, start.shape, "gradient_ascent's image")
    before, after = _np_objective(params, start, f), _np_objective(params, last, f)
    expect(
        after > before, f"the activation of filter {f} did not increase: {before:.5f} at the start, {after:.5f} after"
    )
    expect_close(
        last,
        _reference_ascent(params, start, f, 6, 0.2),
        "6 steps of step_size · g / (sqrt(mean(g²)) + 1e-5)",
        atol=2e-3,
        rtol=1e-3,
    )


@pytest.mark.points(4)
def test_all_filters_at_once(lab):
    params, starts = _tiny_params(), _starts(6, seed=7)
    got = lab.run(_batched_and_single, params, starts, 5, 0.1)
    batched, single, chunked = got["batched"], got["single"], got["chunked"]
    expect_shape(batched, starts.shape, "visualize_filters on all 6 filters")
    before = np.array([_np_objective(params, s, f) for f, s in enumerate(starts)])
    after = np.array([_np_objective(params, x, f) for f, x in enumerate(batched)])
    worse = [f for f in range(6) if not after[f] > before[f]]
    expect(
        not worse, f"the activation did not increase for filters {worse}: start {before[worse]}, after {after[worse]}"
    )
    expect_close(
        batched, single, "visualize_filters (batched) vs gradient_ascent one filter at a time", atol=1e-4, rtol=1e-4
    )
    expect_close(chunked, batched, "visualize_filters with chunk=4 vs without", atol=1e-4, rtol=1e-4)
    want = np.stack([_reference_ascent(params, s, f, 5, 0.1) for f, s in enumerate(starts)])
    expect_close(batched, want, "every filter's image vs the recipe computed here", atol=2e-3, rtol=1e-3)


@pytest.mark.unverifiable  # the jaxprs are the sandbox's word: they cannot be recomputed here, so 1 point
def test_the_layer_is_one_program(lab):
    params = _tiny_params()
    sizes = lab.run(_program_sizes, params, 3)
    expect(
        sizes[6] <= sizes[2] + 2,
        f"visualize_filters' program grows with the number of filters ({sizes[2]} lines "
        f"for 2 filters, {sizes[6]} for 6): vmap over them instead of a Python loop",
    )
    # A small program counts only if it is the recipe (a function that returns its input is small too):
    # two filters from the grading seed's starts, against the recipe computed here.
    starts = _starts(2, seed=8)
    got = lab.visualize_filters(_features, params, jnp.arange(2), jnp.asarray(starts), steps=3, step_size=0.1)
    want = np.stack([_reference_ascent(params, s, f, 3, 0.1) for f, s in enumerate(starts)])
    expect_close(got, want, "visualize_filters on 2 filters vs the recipe computed here", atol=2e-3, rtol=1e-3)


# ---------------------------------------------------------------------------------- 4. display


def test_deprocess(lab, key):
    image = np.asarray(draw(jax.random.normal, key, (5, 7, 3))) * 30.0 + 12.0
    image[0, 0] = [400.0, -400.0, 0.0]  # far out: clipped
    x = image - image.mean()
    want = np.clip(x / (x.std() + 1e-5) * 0.15 + 0.5, 0.0, 1.0)[..., ::-1]
    got = lab.deprocess(jnp.asarray(image, jnp.float32))
    expect_shape(got, image.shape, "deprocess's image")
    expect_close(got, want, "centred, scaled to std 0.15 around 0.5, clipped, BGR -> RGB", atol=1e-5)


def test_filter_grid(lab, key):
    tiles = np.asarray(draw(jax.random.uniform, key, (5, 3, 4, 2)))
    got = np.asarray(lab.filter_grid(jnp.asarray(tiles), ncols=3, margin=1, fill=0.5))
    expect_shape(got, (2 * 3 + 1, 3 * 4 + 2, 2), "5 tiles of 3×4, 3 per row, margin 1")
    want = np.full((7, 14, 2), 0.5)
    for k in range(5):
        r, c = divmod(k, 3)
        want[r * 4 : r * 4 + 3, c * 5 : c * 5 + 4] = tiles[k]
    expect_close(got, want, "tiles row by row, margins and the empty cell filled", atol=1e-6)
