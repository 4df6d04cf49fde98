"""Synthetic data sets, generated from an explicit PRNG key (nothing is downloaded)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from jax import Array

if TYPE_CHECKING:  # numpy is imported where it is used, below
    import numpy as np


def linearly_separable(n: int, *, key: Array, margin: float = 0.2, dim: int = 2) -> tuple[Array, Array]:
    """Points in [-1, 1]^dim labelled by a random hyperplane, with no point within ``margin`` of it.

    Returns:
      x: (n, dim) float32 points; y: (n,) float32 labels in {0, 1}.
    """
    k_w, k_x = jax.random.split(key)
    normal = jax.random.normal(k_w, (dim,))
    normal = normal / jnp.linalg.norm(normal)
    # Draw extra points and keep the first n outside the margin band, so the data are separable
    # with room to spare whatever the key.
    x = jax.random.uniform(k_x, (4 * n + 64, dim), minval=-1.0, maxval=1.0)
    dist = x @ normal
    keep = jnp.argsort(jnp.abs(dist) < margin, stable=True)[:n]
    x, dist = x[keep], dist[keep]
    return x, (dist > 0).astype(jnp.float32)


def xor() -> tuple[Array, Array]:
    """The four XOR points: x (4, 2), y (4,) with y = x1 xor x2."""
    x = jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    return x, jnp.array([0.0, 1.0, 1.0, 0.0])


# The 1-D targets of the universal-approximation lab: smooth, with a kink, and step-like.
TARGETS = {
    "bump": lambda x: jnp.exp(-8.0 * x**2),
    "kink": lambda x: jnp.abs(x - 0.2) - 0.5 * x,
    "step": lambda x: jnp.tanh(12.0 * x),
}


def regression_1d(target: str, n: int, *, key: Array, noise: float = 0.05, lo: float = -1.0, hi: float = 1.0):
    """Noisy samples of a 1-D target on [lo, hi]: x (n, 1) sorted, y (n, 1) = target(x) + noise."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {sorted(TARGETS)}")
    k_x, k_noise = jax.random.split(key)
    x = jnp.sort(jax.random.uniform(k_x, (n, 1), minval=lo, maxval=hi), axis=0)
    return x, TARGETS[target](x) + noise * jax.random.normal(k_noise, (n, 1))


def moons(n: int, *, key: Array, noise: float = 0.1) -> tuple[Array, Array]:
    """Two interleaving half circles (scikit-learn's make_moons, written with jax.random).

    Class 0: (cos t, sin t); class 1: (1 − cos t, 0.5 − sin t), t ~ U[0, π]; then Gaussian noise.
    Returns x (n, 2) float32 and y (n,) float32 in {0, 1}, n // 2 of class 0.
    """
    k_t, k_noise = jax.random.split(key)
    n0 = n // 2
    t = jax.random.uniform(k_t, (n,), maxval=jnp.pi)
    y = (jnp.arange(n) >= n0).astype(jnp.float32)
    upper = jnp.stack([jnp.cos(t), jnp.sin(t)], axis=1)
    lower = jnp.stack([1.0 - jnp.cos(t), 0.5 - jnp.sin(t)], axis=1)
    x = jnp.where(y[:, None] == 1.0, lower, upper)
    return x + noise * jax.random.normal(k_noise, (n, 2)), y


def _digit_glyphs(size: int = 28) -> "np.ndarray":
    """The ten digits rendered once by matplotlib's Agg backend: (10, size, size) float32 in [0, 1]."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    glyphs = []
    for digit in range(10):
        fig = Figure(figsize=(1, 1), dpi=size)
        FigureCanvasAgg(fig)
        fig.text(0.5, 0.5, str(digit), fontsize=52, ha="center", va="center", color="white", fontweight="bold")
        fig.patch.set_facecolor("black")
        fig.canvas.draw()
        rgba = np.asarray(fig.canvas.buffer_rgba(), np.float32)[:, :, 0] / 255.0
        glyphs.append(rgba)
    return np.stack(glyphs)


_GLYPHS = None


def digits(n: int, *, key: Array, max_shift: int = 3, noise: float = 0.1) -> tuple[Array, Array]:
    """MNIST-like digits made here: rendered glyphs, randomly shifted, with pixel noise.

    Returns images (n, 28, 28, 1) float32 in [0, 1] (NHWC) and labels (n,) int32.
    """
    global _GLYPHS
    if _GLYPHS is None:
        _GLYPHS = jnp.asarray(_digit_glyphs())
    k_label, k_dx, k_dy, k_noise = jax.random.split(key, 4)
    labels = jax.random.randint(k_label, (n,), 0, 10)
    dx = jax.random.randint(k_dx, (n,), -max_shift, max_shift + 1)
    dy = jax.random.randint(k_dy, (n,), -max_shift, max_shift + 1)
    shift = jax.vmap(lambda g, a, b: jnp.roll(g, (a, b), axis=(0, 1)))
    imgs = shift(_GLYPHS[labels], dy, dx) + noise * jax.random.normal(k_noise, (n, 28, 28))
    return jnp.clip(imgs, 0.0, 1.0)[..., None], labels  # (N, 28, 28, 1)
