"""Fast CNN layers for the CPU: the same values and gradients as XLA's, written for speed.

Lab 08 wrote convolution and pooling from scratch; lab 10 trains the lecture's CNN with them for real,
and on a laptop CPU two details decide whether an epoch takes one minute or four:

* **Which library runs the convolutions.** XLA:CPU hands convolutions to its YNNPACK library, whose
  *weight gradient* of a 3×3 convolution over (128, 26, 26, 32) is several times slower than Eigen's
  (measured here: ~730 ms vs ~55 ms). The compile option
  ``xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT`` keeps YNNPACK for matrix
  products only, so convolutions go to Eigen. It is experimental: :func:`cpu_compiler_options` checks
  once that the installed jaxlib accepts it and returns ``None`` otherwise, and :func:`jit` applies it to
  the course's compiled CPU functions only (never to the whole process through ``XLA_FLAGS``, where a
  value a jaxlib does not know stops XLA at start-up).
* **How max-pooling is differentiated.** ``lax.reduce_window`` max-pooling differentiates into
  ``select_and_scatter``, slow on the CPU. A non-overlapping 2×2 pool is also the elementwise maximum of
  four strided slices, whose gradient is four cheap selects (:func:`max_pool`). The two agree in value,
  and in gradient wherever the window's maximum is unique; after a ReLU, windows of zeros tie, so the
  lab pools *before* the ReLU (the two commute: ``relu(max(a, b)) == max(relu(a), relu(b))``).

``conv2d`` and ``Conv2D`` are XLA's own convolution (``lax.conv_general_dilated``, 'valid', NHWC), with
Keras' defaults (Glorot-uniform kernels, zero biases): the speed comes from the compile option, not from
rewriting them (im2col and lab 08's shifted products were both slower than Eigen's convolution here).
On a GPU, XLA's cuDNN convolutions are used as they are and the option is not applied.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
YNN_DOTS_ONLY = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"


@functools.cache
def _ynn_option_accepted() -> bool:
    """Whether this jaxlib's CPU compiler knows the option and the value (compiling a tiny function)."""
    try:
        cpu = jax.devices("cpu")[0]
        x = jax.device_put(jnp.ones((2,), jnp.float32), cpu)
        jax.jit(lambda v: v + 1, compiler_options={YNN_OPTION: YNN_DOTS_ONLY}).lower(x).compile()
        return True
    except Exception:  # an older or newer jaxlib: unknown option or value (JaxRuntimeError), no CPU backend
        return False


def cpu_compiler_options(backend: str | None = None) -> dict[str, str] | None:
    """The compile options that make CPU convolutions fast, or ``None`` (not the CPU, or not supported)."""
    if (backend or jax.default_backend()) != "cpu":
        return None
    return {YNN_OPTION: YNN_DOTS_ONLY} if _ynn_option_accepted() else None


def jit(fun: Callable, **kwargs) -> Callable:
    """``jax.jit(fun, **kwargs)``, plus :func:`cpu_compiler_options` when the default backend is the CPU."""
    options = cpu_compiler_options()
    if options is not None:
        kwargs["compiler_options"] = {**options, **kwargs.get("compiler_options", {})}
    return jax.jit(fun, **kwargs)


def conv2d(x: Array, w: Array, b: Array) -> Array:
    """'valid' cross-correlation, stride 1: x (N, H, W, C), w (KH, KW, C, F), b (F,) -> (N, H-KH+1, W-KW+1, F)."""
    y = jax.lax.conv_general_dilated(
        x, w, window_strides=(1, 1), padding="VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return y + b


def max_pool(x: Array, window: int = 2) -> Array:
    """Non-overlapping max-pooling, 'valid': x (N, H, W, C) -> (N, H // window, W // window, C).

    The maximum of the window² strided slices ``x[:, u::window, v::window]``, as lab 08 wrote it; equal to
    ``lax.reduce_window(x, -inf, max, (1, k, k, 1), (1, k, k, 1), "VALID")`` (trailing rows/columns that do
    not fill a window are dropped, like Keras' MaxPooling2D).
    """
    oh, ow = x.shape[1] // window, x.shape[2] // window
    x = x[:, : oh * window, : ow * window]  # (N, OH·k, OW·k, C)
    out = None
    for u in range(window):
        for v in range(window):
            part = x[:, u::window, v::window]  # (N, OH, OW, C)
            out = part if out is None else jnp.maximum(out, part)
    return out


class Conv2D(nnx.Module):
    """Keras' ``Conv2D(filters, kernel_size)``: 'valid', stride 1, Glorot-uniform kernel, zero bias.

    Parameters ``kernel`` (KH, KW, C, F) and ``bias`` (F,), as in ``nnx.Conv``; ``(N, H, W, C) -> (N, H', W', F)``.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: tuple[int, int] = (3, 3), *, rngs: nnx.Rngs):
        init = jax.nn.initializers.glorot_uniform()
        self.kernel = nnx.Param(init(rngs.params(), (*kernel_size, in_features, out_features), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))

    def __call__(self, x: Array) -> Array:
        return conv2d(x, self.kernel[...], self.bias[...])


__all__ = ["Conv2D", "conv2d", "cpu_compiler_options", "jit", "max_pool"]
