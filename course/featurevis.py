"""Feature visualisation as the references do it: a decorrelated Fourier image, jittered at every step.

Lab 11's students climb the gradient of a filter's activation on the pixels themselves (Keras'
``conv_filter_visualization``). That ascent finds what the filter responds to, but at small sizes
the picture is dominated by a checkerboard of high frequencies: the gradient of strided pools and
convolutions has the most energy there, and nothing in plain ascent discourages it. Olah, Mordvintsev
& Schubert, "Feature Visualization" (Distill, 2017) and their library Lucid
(github.com/tensorflow/lucid, ``lucid/optvis``) change two things, both kept here:

* **the parameterisation** (:func:`to_image`): the image is the inverse real FFT of a spectrum whose
  coefficients are scaled by 1/frequency (so a unit step moves low frequencies as much as natural
  images have them), in a colour space decorrelated by the square root of ImageNet's colour
  correlation, squashed into [0, 1] by a sigmoid;
* **transformation robustness** (:func:`random_transforms`, :func:`transform`): before the network sees it, every step moves
  the image by a random jitter, scale and rotation, so a pattern that only works at one exact pixel
  alignment (a checkerboard) earns nothing.

:func:`render` optimises any objective of an RGB image in [0, 1] this way with Adam (Lucid's default
optimiser); :func:`render_filters` does it for many filters at once, one jitted step at a time. :func:`high_frequency_fraction`
is the number ``benchmarks/bench_vgg.py`` compares, plain ascent against this.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array

# The square root of ImageNet's RGB colour correlation, from its SVD: Lucid's
# `lucid/optvis/param/color.py` (`color_correlation_svd_sqrt`). Optimising in the colour space this
# matrix maps from decorrelates the three channels, as natural images' colours are decorrelated.
COLOR_CORRELATION_SVD_SQRT = np.asarray(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32
)
# Lucid normalises it by its largest column norm, so no decorrelated channel is amplified.
COLOR_CORRELATION = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))


def frequencies(h: int, w: int) -> np.ndarray:
    """|frequency| in cycles per pixel of each coefficient of ``jnp.fft.rfft2`` on (h, w): (h, w // 2 + 1)."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy)


def init_spectrum(size: int, *, key: Array, batch: tuple[int, ...] = (), sd: float = 0.01) -> Array:
    """A random start (*batch, 2, 3, size, size // 2 + 1): real and imaginary parts of standard deviation ``sd``.

    Lucid draws them normal with sd 0.01; uniform ones of the same sd start as well (see :func:`_uniform`).
    """
    return (sd * math.sqrt(3.0)) * _uniform(key, (*batch, 2, 3, size, size // 2 + 1))


def _uniform(key: Array, shape: tuple[int, ...]) -> Array:
    """Uniform in [-1, 1), drawn flat and reshaped: with JAX's default (partitionable) threefry, XLA:CPU
    compiles a draw of a many-axis shape for seconds, and the same draw flat in a tenth of that."""
    return jax.random.uniform(key, (math.prod(shape),), minval=-1.0, maxval=1.0).reshape(shape)


def to_image(spectrum: Array, *, decay_power: float = 1.0) -> Array:
    """The image a spectrum (2, 3, H, H // 2 + 1) stands for: (H, H, 3) RGB in (0, 1).

    As Lucid's ``fft_image`` and ``to_valid_rgb(decorrelate=True, sigmoid=True)``: coefficients scaled by
    1 / max(|f|, 1/H) ** decay_power · H, the inverse FFT divided by 4, the decorrelated colours
    mapped back by :data:`COLOR_CORRELATION`, then a sigmoid.
    """
    h = spectrum.shape[2]
    freqs = frequencies(h, h)
    scale = jnp.asarray(h / np.maximum(freqs, 1.0 / h) ** decay_power, jnp.float32)  # (H, H//2+1)
    coefficients = scale * (spectrum[0] + 1j * spectrum[1])  # (3, H, H//2+1), complex
    image = jnp.fft.irfft2(coefficients, s=(h, h)).transpose(1, 2, 0) / 4.0  # (H, H, 3)
    image = image @ jnp.asarray(COLOR_CORRELATION).T  # decorrelated colours -> RGB
    return jax.nn.sigmoid(image)


def random_transforms(key: Array, shape: tuple[int, ...], *, jitter: float, scale: float, degrees: float) -> Array:
    """Random moves (*shape, 4): (dy, dx, scale, angle in radians), for :func:`transform`.

    Shifts uniform in ±``jitter`` pixels, scales in 1 ± ``scale``, angles in ±``degrees``. All drawn by
    one call, before the ascent, so its steps hold no random-number generator (slow to compile on XLA:CPU).
    """
    u = _uniform(key, (*shape, 4))
    return jnp.stack(
        [u[..., 0] * jitter, u[..., 1] * jitter, 1.0 + u[..., 2] * scale, u[..., 3] * (degrees * math.pi / 180.0)],
        axis=-1,
    )


def transform(image: Array, params: Array, *, fill: float = 0.5) -> Array:
    """An image (H, W, C) shifted by (dy, dx), scaled and rotated about its centre: (H, W, C), bilinear.

    ``params``: (dy, dx, scale, angle in radians), one row of :func:`random_transforms`. Lucid's
    ``standard_transforms`` (jitter, random_scale, random_rotate, jitter) as one affine resample;
    pixels brought in from outside the image are ``fill`` (grey).
    """
    h, w, _ = image.shape
    ys, xs = jnp.meshgrid(jnp.arange(h) - (h - 1) / 2, jnp.arange(w) - (w - 1) / 2, indexing="ij")  # (H, W)
    # Output pixel p shows the input at R(-angle) (p - shift) / scale: the forward map's inverse.
    ys, xs = ys - params[0], xs - params[1]
    cos, sin = jnp.cos(params[3]), jnp.sin(params[3])
    src_y = (cos * ys + sin * xs) / params[2] + (h - 1) / 2
    src_x = (-sin * ys + cos * xs) / params[2] + (w - 1) / 2
    y0, x0 = jnp.floor(src_y), jnp.floor(src_x)
    out = jnp.zeros_like(image)
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):  # the four neighbours, bilinear weights
        y, x = y0 + dy, x0 + dx
        weight = (1 - jnp.abs(src_y - y)) * (1 - jnp.abs(src_x - x))  # (H, W)
        inside = (y >= 0) & (y <= h - 1) & (x >= 0) & (x <= w - 1)
        pixel = image[jnp.clip(y, 0, h - 1).astype(jnp.int32), jnp.clip(x, 0, w - 1).astype(jnp.int32)]  # (H, W, C)
        out = out + (weight * inside)[..., None] * pixel + (weight * ~inside)[..., None] * fill
    return out


def ascent_step(objective: Callable[[Array], Array], *, learning_rate: float, decay_power: float = 1.0):
    """Lucid's step as a pure function: (spectrum, Adam state, moves (4,)) -> (spectrum, Adam state).

    The objective sees :func:`transform` of :func:`to_image` of the spectrum; Adam climbs its gradient.
    """
    optimizer = optax.adam(learning_rate)

    def loss(spectrum, moves):
        return -objective(transform(to_image(spectrum, decay_power=decay_power), moves))

    def step(spectrum, state, moves):
        updates, state = optimizer.update(jax.grad(loss)(spectrum, moves), state, spectrum)
        return optax.apply_updates(spectrum, updates), state

    return step, optimizer.init


def render(
    objective: Callable[[Array], Array],
    *,
    size: int,
    steps: int,
    key: Array,
    learning_rate: float = 0.05,
    jitter: float = 2.0,
    scale: float = 0.1,
    degrees: float = 10.0,
    decay_power: float = 1.0,
) -> Array:
    """Maximise ``objective`` (an image (size, size, 3) RGB in [0, 1] -> a 0-d array): -> (size, size, 3).

    Lucid's recipe: the image is :func:`to_image` of a spectrum, every step the objective sees a
    :func:`transform` of it (a fresh random jitter, scale and rotation), and Adam climbs its gradient.
    Returns the last image without any transform, RGB in (0, 1). ``key`` draws the start and every
    step's transform; the same key gives the same image. Jittable (a ``lax.scan`` over the steps).
    """
    step, init = ascent_step(objective, learning_rate=learning_rate, decay_power=decay_power)
    k_init, k_steps = jax.random.split(key)
    spectrum = init_spectrum(size, key=k_init)
    moves = random_transforms(k_steps, (steps,), jitter=jitter, scale=scale, degrees=degrees)  # (steps, 4)
    (spectrum, _), _ = jax.lax.scan(lambda c, m: (step(*c, m), None), (spectrum, init(spectrum)), moves)
    return to_image(spectrum, decay_power=decay_power)


@functools.partial(jax.jit, static_argnames=("objective", "learning_rate", "decay_power"))
def _filters_step(objective, params, filters, spectra, states, moves, *, learning_rate, decay_power):
    """One step of :func:`ascent_step` for K filters at once (vmapped): spectra (K, 2, 3, S, S//2+1)."""

    def one(f, spectrum, state, m):
        step, _ = ascent_step(
            lambda image: objective(params, image, f), learning_rate=learning_rate, decay_power=decay_power
        )
        return step(spectrum, state, m)

    return jax.vmap(one)(filters, spectra, states, moves)


def render_filters(
    objective: Callable[[object, Array, Array], Array],
    params,
    filters: Array,
    *,
    size: int,
    steps: int,
    key: Array,
    learning_rate: float = 0.05,
    jitter: float = 2.0,
    scale: float = 0.1,
    degrees: float = 10.0,
    decay_power: float = 1.0,
) -> Array:
    """:func:`render` for every filter index in ``filters`` (K,) at once: -> (K, size, size, 3), RGB in (0, 1).

    ``objective(params, image, f)``: image (size, size, 3) RGB in [0, 1], f a (traced) filter index ->
    a 0-d array; the weights ``params`` are an argument so they are not baked into the program. Filter
    k starts from ``init_spectrum(size, key=k_init, batch=(K,))[k]`` with ``k_init, k_steps = split(key)``,
    as :func:`render` does for one (K = 1: the same image, to rounding). One jitted, vmapped step called
    ``steps`` times from Python (as Keras' recipe): XLA:CPU compiles a loop around the network's
    gradient many times slower than the step alone, and a GPU runs the calls back to back.
    """
    spectra, states, moves = _start(
        key, filters.shape[0], size, steps, learning_rate, jnp.asarray([jitter, scale, degrees])
    )
    for t in range(steps):
        spectra, states = _filters_step(
            objective,
            params,
            filters,
            spectra,
            states,
            moves[:, t],
            learning_rate=learning_rate,
            decay_power=decay_power,
        )
    return _images(spectra, decay_power)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _start(key: Array, n: int, size: int, steps: int, learning_rate: float, ranges: Array):
    """:func:`render`'s start for n filters: spectra (n, 2, 3, S, S//2+1), Adam states, moves (n, steps, 4).

    Jitted: op by op, XLA:CPU would compile each random-number kernel apart, for seconds.
    """
    k_init, k_steps = jax.random.split(key)
    spectra = init_spectrum(size, key=k_init, batch=(n,))
    moves = random_transforms(k_steps, (n, steps), jitter=ranges[0], scale=ranges[1], degrees=ranges[2])
    return spectra, jax.vmap(optax.adam(learning_rate).init)(spectra), moves


@functools.partial(jax.jit, static_argnums=1)
def _images(spectra: Array, decay_power: float) -> Array:
    """:func:`to_image` of each spectrum (K, 2, 3, S, S//2+1): (K, S, S, 3)."""
    return jax.vmap(lambda s: to_image(s, decay_power=decay_power))(spectra)


def high_frequency_fraction(image: Array) -> float:
    """The share of an image's (H, W, C) spectral energy above half the Nyquist frequency, in [0, 1].

    Per channel, the mean is removed and the power spectrum |FFT2|² taken; the energy of the
    frequencies whose radius sqrt(fy² + fx²) exceeds 0.25 cycles per pixel (half of Nyquist's 0.5),
    summed over channels, divided by the energy of all of them. White noise gives about 0.80; a
    checkerboard (0.5, 0.5 cycles per pixel) 1; a smooth gradient nearly 0. NumPy, for a measurement.
    """
    x = np.asarray(image, np.float64)
    x = x - x.mean(axis=(0, 1))
    power = np.abs(np.fft.fft2(x, axes=(0, 1))) ** 2  # (H, W, C)
    fy = np.fft.fftfreq(x.shape[0])[:, None]
    fx = np.fft.fftfreq(x.shape[1])[None, :]
    high = np.sqrt(fy * fy + fx * fx) > 0.25  # (H, W)
    total = power.sum()
    return float(power[high].sum() / total) if total > 0 else 0.0
