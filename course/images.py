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


def check_channels_last(x: Array, what: str) -> None:
    """Raise a ValueError that names the axes when x does not look like (…, H, W, C)."""
    shape = tuple(x.shape)
    if len(shape) < 3:
        raise ValueError(f"{what}: expected an image (H, W, C) or a batch (N, H, W, C), got shape {shape}")
    if shape[-1] not in CHANNEL_COUNTS:
        guess = ""
        if shape[-3] in CHANNEL_COUNTS:
            guess = (f"; axis {len(shape) - 3} has size {shape[-3]}, so this looks channels-first "
                     f"({'N, ' if len(shape) == 4 else ''}C, H, W): convert it with to_channels_last first")
        raise ValueError(
            f"{what}: expected channels last ({'N, ' if len(shape) == 4 else ''}H, W, C) with C in "
            f"{CHANNEL_COUNTS}, but the last axis has size {shape[-1]} (shape {shape}){guess}"
        )


def check_channels_first(x: Array, what: str) -> None:
    """Raise a ValueError that names the axes when x does not look like (…, C, H, W)."""
    shape = tuple(x.shape)
    if len(shape) < 3:
        raise ValueError(f"{what}: expected an image (C, H, W) or a batch (N, C, H, W), got shape {shape}")
    if shape[-3] not in CHANNEL_COUNTS:
        guess = ""
        if shape[-1] in CHANNEL_COUNTS:
            guess = (f"; the last axis has size {shape[-1]}, so this looks channels-last "
                     f"({'N, ' if len(shape) == 4 else ''}H, W, C): convert it with to_channels_first first")
        raise ValueError(
            f"{what}: expected channels first ({'N, ' if len(shape) == 4 else ''}C, H, W) with C in "
            f"{CHANNEL_COUNTS}, but axis {len(shape) - 3} has size {shape[-3]} (shape {shape}){guess}"
        )


def conv2d(x: Array, w: Array, *, stride: int = 1, padding: str = "SAME") -> Array:
    """XLA's convolution in the course's layouts: x (N, H, W, C), w (KH, KW, C, F) -> (N, H', W', F).

    Labs after lab 08 use this one; lab 08 is where you write it yourself.
    """
    import jax

    return jax.lax.conv_general_dilated(x, w, (stride, stride), padding.upper(),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
