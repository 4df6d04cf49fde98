"""Images for the labs: a real photograph, grayscale conversion and layout checks (NHWC inside)."""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
from jax import Array

# ITU-R BT.601 luma weights for (R, G, B).
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
CHANNEL_COUNTS = (1, 3, 4)  # grayscale, RGB, RGBA


@functools.cache
def _photo() -> np.ndarray:
    import matplotlib.cbook
    import matplotlib.pyplot as plt

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(plt.imread(f, format="jpg"))


def photo(*, step: int = 2) -> Array:
    """Grace Hopper's portrait, shipped with matplotlib: (H, W, 3) uint8, every `step`-th pixel."""
    return jnp.asarray(_photo()[::step, ::step, :3])


def to_grayscale(x: Array) -> Array:
    """(…, H, W, 3) RGB -> (…, H, W, 1) luma."""
    check_channels_last(x, "to_grayscale's input")
    return (x @ jnp.asarray(LUMA, x.dtype))[..., None]


def _check_layout(x: Array, what: str, *, channels_last: bool) -> None:
    """Raise a ValueError naming the axes when x's channel axis is not where the layout puts it."""
    shape, batch = tuple(x.shape), "N, " if x.ndim == 4 else ""
    want, other = ("channels last", "channels-first") if channels_last else ("channels first", "channels-last")
    order, other_order = (
        (f"{batch}H, W, C", f"{batch}C, H, W") if channels_last else (f"{batch}C, H, W", f"{batch}H, W, C")
    )
    if len(shape) < 3:
        raise ValueError(
            f"{what}: expected an image ({order[len(batch) :]}) or a batch (N, {order[len(batch) :]}), got shape {shape}"
        )
    axis, other_axis = (len(shape) - 1, len(shape) - 3) if channels_last else (len(shape) - 3, len(shape) - 1)
    if shape[axis] in CHANNEL_COUNTS:
        return
    guess = ""
    if shape[other_axis] in CHANNEL_COUNTS:
        convert = "to_channels_last" if channels_last else "to_channels_first"
        guess = (
            f"; axis {other_axis} has size {shape[other_axis]}, so this looks {other} ({other_order}): "
            f"convert it with {convert} first"
        )
    raise ValueError(
        f"{what}: expected {want} ({order}) with C in {CHANNEL_COUNTS}, but axis {axis} has size "
        f"{shape[axis]} (shape {shape}){guess}"
    )


def check_channels_last(x: Array, what: str) -> None:
    """Raise a ValueError that names the axes when x does not look like (…, H, W, C)."""
    _check_layout(x, what, channels_last=True)


def check_channels_first(x: Array, what: str) -> None:
    """Raise a ValueError that names the axes when x does not look like (…, C, H, W)."""
    _check_layout(x, what, channels_last=False)


def conv2d(x: Array, w: Array, *, stride: int = 1, padding: str = "SAME") -> Array:
    """XLA's convolution in the course's layouts: x (N, H, W, C), w (KH, KW, C, F) -> (N, H', W', F).

    Labs after lab 08 use this one; lab 08 is where you write it yourself.
    """
    import jax

    return jax.lax.conv_general_dilated(
        x, w, (stride, stride), padding.upper(), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
