"""Fast CNN layers for the CPU: the same values and gradients as XLA's, written for speed.

Lab 08 wrote convolution and pooling from scratch; lab 10 trains the lecture's CNN with them for real,
and on a laptop CPU these details decide whether an epoch takes one minute or four:

* **Which library runs the convolutions.** XLA:CPU hands convolutions to its YNNPACK library, whose
  *weight gradient* of a 3×3 convolution over (128, 26, 26, 32) is several times slower than Eigen's
  (``benchmarks/bench_cnn.py``; figures in ``docs/performance.md``). The compile option ``xla_cpu_experimental_ynn_fusion_type``
  chooses what YNNPACK gets: ``LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE``, matrix
  products and reductions, so convolutions go to Eigen. (With products alone, XLA's own code sums each
  bias gradient, a (128, 24, 24, 64) reduction, more slowly than YNNPACK.) It is experimental: :func:`cpu_compiler_options` checks once which
  value the installed jaxlib accepts (products and reductions, else products alone, else nothing) and
  :func:`jit` applies it to the course's compiled CPU functions only (never to the whole process through
  ``XLA_FLAGS``, where a value a jaxlib does not know stops XLA at start-up).
* **How max-pooling is differentiated.** ``lax.reduce_window`` max-pooling differentiates into
  ``select_and_scatter``, slow on the CPU. A non-overlapping 2×2 pool is also the elementwise maximum of
  four strided slices, whose gradient is four cheap selects (:func:`max_pool`). The two agree in value,
  and in gradient wherever the window's maximum is unique; after a ReLU, windows of zeros tie, so the
  lab pools *before* the ReLU (the two commute: ``relu(max(a, b)) == max(relu(a), relu(b))``).
* **Gradients inside a loop.** Within a ``lax.scan`` body XLA:CPU leaves the gradient convolutions'
  dimensions in the order JAX wrote them, which Eigen cannot take, and runs a generic convolution
  tens of times slower; :func:`canonical_backward` writes them out in Eigen's layout
  (``fit(loop="epoch")`` uses it on a CPU).

``conv2d`` and ``Conv2D`` are XLA's own convolution (``lax.conv_general_dilated``, 'valid', NHWC), with
Keras' defaults (Glorot-uniform kernels, zero biases): the speed comes from the compile option, not from
rewriting them (im2col and lab 08's shifted products were both slower than Eigen's convolution here).
On a GPU, XLA's cuDNN convolutions are used as they are and the option is not applied.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
YNN_DOTS_ONLY = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"
YNN_DOTS_AND_REDUCTIONS = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"


def _accepted(value: str) -> bool:
    """Whether this jaxlib's CPU compiler knows the option and the value (compiling a tiny function)."""
    try:
        cpu = jax.devices("cpu")[0]
        x = jax.device_put(jnp.ones((2,), jnp.float32), cpu)
        jax.jit(lambda v: v + 1, compiler_options={YNN_OPTION: value}).lower(x).compile()
        return True
    except Exception:  # an older or newer jaxlib: unknown option or value (JaxRuntimeError), no CPU backend
        return False


@functools.cache
def _ynn_value() -> str | None:
    """The first value this jaxlib accepts: products and reductions to YNNPACK, else products alone."""
    return next((value for value in (YNN_DOTS_AND_REDUCTIONS, YNN_DOTS_ONLY) if _accepted(value)), None)


def cpu_compiler_options(backend: str | None = None) -> dict[str, str] | None:
    """The compile options that make CPU convolutions fast, or ``None`` (not the CPU, or not supported)."""
    if (backend or jax.default_backend()) != "cpu":
        return None
    value = _ynn_value()
    return {YNN_OPTION: value} if value is not None else None


def jit(fun: Callable, **kwargs) -> Callable:
    """``jax.jit(fun, **kwargs)``, plus :func:`cpu_compiler_options` when the default backend is the CPU."""
    options = cpu_compiler_options()
    if options is not None:
        kwargs["compiler_options"] = {**options, **kwargs.get("compiler_options", {})}
    return jax.jit(fun, **kwargs)


_NHWC = ("NHWC", "HWIO", "NHWC")  # the one layout XLA:CPU hands to Eigen as it is
_CANONICAL = contextvars.ContextVar("course_layers_canonical_backward", default=False)


def conv2d(x: Array, w: Array, b: Array) -> Array:
    """'valid' cross-correlation, stride 1: x (N, H, W, C), w (KH, KW, C, F), b (F,) -> (N, H-KH+1, W-KW+1, F).

    Traced inside :func:`canonical_backward`, its gradient is written out in the layout Eigen takes.
    """
    if _CANONICAL.get():
        return _conv_canonical(x, w) + b
    return _conv(x, w) + b


def _conv(x: Array, w: Array) -> Array:
    return jax.lax.conv_general_dilated(x, w, window_strides=(1, 1), padding="VALID", dimension_numbers=_NHWC)


@contextlib.contextmanager
def canonical_backward(enabled: bool = True) -> Iterator[None]:
    """While a function is traced inside this, :func:`conv2d`'s gradients are NHWC/HWIO convolutions.

    Why: JAX differentiates a convolution into two more, for the input and for the kernel, with their
    dimensions in another order (``b01f_01oi->b01f`` and ``f01b_i01o->01bf`` in XLA's notation). In an
    ordinary compiled function XLA:CPU adds transposes that turn them into the one layout Eigen takes;
    inside a loop (``lax.scan``, ``fori_loop``) it does not, and runs its generic convolution instead:
    tens of times slower (``benchmarks/bench_cnn.py``, ``docs/performance.md``). Here the two are
    written out as Eigen takes them (a flipped kernel over the padded gradient; the inputs, channels
    first, against the gradient), and a step in a scan is as fast as separate calls. The values are the
    same (tests). The cost: a
    ``custom_vjp``, so forward-mode differentiation (``jax.jvp``, ``jax.hessian``) of what is traced
    inside is refused; ``fit(loop="epoch")`` uses it on a CPU, where only ``jax.grad`` is taken.
    It acts while tracing: a function jitted and traced before keeps the gradients it was traced with.
    """
    token = _CANONICAL.set(enabled)
    try:
        yield
    finally:
        _CANONICAL.reset(token)


@jax.custom_vjp
def _conv_canonical(x: Array, w: Array) -> Array:
    return _conv(x, w)


def _conv_canonical_fwd(x: Array, w: Array):
    return _conv(x, w), (x, w)


def _conv_canonical_bwd(residuals, g: Array):
    x, w = residuals  # (N, H, W, C), (KH, KW, C, F); g (N, H', W', F)
    g = g.astype(x.dtype)
    kh, kw = w.shape[:2]
    flipped = w[::-1, ::-1].transpose(0, 1, 3, 2)  # (KH, KW, F, C)
    pad = [(kh - 1, kh - 1), (kw - 1, kw - 1)]
    dx = jax.lax.conv_general_dilated(g, flipped, (1, 1), pad, dimension_numbers=_NHWC)  # (N, H, W, C)
    # dW[u, v, c, f] = sum over n, i, j of x[n, i + u, j + v, c] g[n, i, j, f]: channels as the batch,
    # images as the features, the gradient as the kernel.
    dw = jax.lax.conv_general_dilated(
        x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), (1, 1), "VALID", dimension_numbers=_NHWC
    )  # (C, KH, KW, F)
    return dx.astype(x.dtype), dw.transpose(1, 2, 0, 3).astype(w.dtype)


_conv_canonical.defvjp(_conv_canonical_fwd, _conv_canonical_bwd)


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


__all__ = ["Conv2D", "canonical_backward", "conv2d", "cpu_compiler_options", "jit", "max_pool"]
