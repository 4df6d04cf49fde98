"""Helpers for the graded tests: assertions whose failure reads as plain words to a student.

Every float comparison states its tolerance. The messages say what was checked, what was expected
and what came back, because the autograder shows a failed test's message to the student verbatim.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SEED = 0  # the grading seed (``--seed``), set by the test plugin


SHOWN_WHOLE = 12  # an array of at most this many elements is shown whole; a larger one, a window of it
WINDOW = 5  # a window's side over an array's two spatial axes (8 along a single one)


def _show(value: Any) -> str:
    arr = np.asarray(value)
    with np.printoptions(precision=5, threshold=SHOWN_WHOLE, edgeitems=3, suppress=True):
        text = np.array2string(arr, separator=", ") if arr.ndim else repr(arr.item())
    return text if arr.ndim == 0 else f"{text} (shape {arr.shape})"


def window(shape: tuple[int, ...], worst: tuple[int, ...]) -> tuple:
    """The index of a window around the element ``worst``: up to ``WINDOW`` x ``WINDOW`` over an image's
    height and width (the course's arrays of 3 or more axes are ``(..., H, W, C)``), over both axes of a
    matrix, or 8 along a single axis; the worst element's own index on every other axis."""
    spatial = [len(shape) - 3, len(shape) - 2] if len(shape) >= 3 else list(range(len(shape)))
    axes = [i for i in spatial if shape[i] > 1] or [i for i, n in enumerate(shape) if n > 1][-2:]
    span = WINDOW if len(axes) == 2 else 2 * WINDOW - 2
    index: list = []
    for i, n in enumerate(shape):
        if i in axes:
            start = min(max(worst[i] - span // 2, 0), max(n - span, 0))
            index.append(slice(start, min(start + span, n)))
        else:
            index.append(int(worst[i]))
    return tuple(index)


def _show_window(arr: np.ndarray, index: tuple) -> str:
    """Where the window is in ``arr``, then ``arr[index]`` on lines of its own:
    ``(elements [1:6, 2:7, 0] of shape (8, 8, 3))`` and the 5 x 5 values."""
    where = ", ".join(f"{i.start}:{i.stop}" if isinstance(i, slice) else str(i) for i in index)
    with np.printoptions(precision=5, suppress=True, linewidth=100):
        text = np.array2string(arr[index], separator=", ")
    return f"(elements [{where}] of shape {arr.shape})\n{text}"


def _mismatch(what: str, want: np.ndarray, got: np.ndarray, worst: tuple, detail: str) -> str:
    """``WHAT: expected X, got Y; DETAIL``, where X and Y are the same window of each around the worst
    element when the arrays are too large to show whole, so that what came back is always shown."""
    if want.size <= SHOWN_WHOLE or not worst:
        return f"{what}: expected {_show(want)}, got {_show(got)}; {detail}"
    index = window(want.shape, worst)
    return f"{what}: expected {_show_window(want, index)}, got {_show_window(got, index)}; {detail}"


def _failure(message: str, what: str, want: np.ndarray, got: np.ndarray, worst: tuple) -> AssertionError:
    """The AssertionError of a failed comparison, carrying what was compared (``.compared``: the check's
    name, the expected and returned arrays, the worst element's index), from which the grading plugin
    draws a picture (:mod:`course.grader.picture`) once the test has ended."""
    error = AssertionError(message)
    error.compared = (what, want, got, worst)  # type: ignore[attr-defined]
    return error


def _as_array(value: Any, what: str) -> np.ndarray:
    if value is None:
        raise AssertionError(f"{what}: expected an array, but the function returned None (missing `return`?)")
    try:
        return np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic objects
        raise AssertionError(f"{what}: expected an array, got {type(value).__name__}") from exc


def expect_shape(value: Any, shape: tuple[int, ...], what: str) -> None:
    """Assert that ``value`` has exactly ``shape``."""
    got = _as_array(value, what).shape
    if tuple(got) != tuple(shape):
        raise AssertionError(f"{what}: expected shape {tuple(shape)}, got shape {tuple(got)}")


def expect_close(value: Any, expected: Any, what: str, *, atol: float, rtol: float = 0.0) -> None:
    """Assert ``|value - expected| <= atol + rtol * |expected|`` elementwise, shapes equal."""
    got = _as_array(value, what)
    want = np.asarray(expected)
    if got.shape != want.shape:
        raise AssertionError(f"{what}: expected shape {want.shape}, got shape {got.shape}")
    got64, want64 = got.astype(np.float64), want.astype(np.float64)
    if not np.all(np.isfinite(got64)) and np.all(np.isfinite(want64)):
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(got64))[0])
        raise _failure(f"{what}: the result contains NaN or inf: {_show(got)}", what, want, got, first)
    with np.errstate(invalid="ignore"):  # an expected inf: inf - inf and 0 * inf are NaN, so not close
        err = np.abs(got64 - want64)
        excess = err - (atol + rtol * np.abs(want64))  # argmax takes a NaN first: the worst
    if not np.all(excess <= 0):
        worst = tuple(int(i) for i in np.unravel_index(np.argmax(excess), err.shape)) if err.ndim else ()
        where = f" (worst at index {worst})" if err.ndim else ""
        detail = f"largest difference {err.max():.3g}{where}, allowed {atol:g} + {rtol:g}·|expected|"
        raise _failure(_mismatch(what, want, got, worst, detail), what, want, got, worst)


def expect_equal(value: Any, expected: Any, what: str) -> None:
    """Assert exact equality (integers, booleans, shapes, labels)."""
    got = _as_array(value, what)
    want = np.asarray(expected)
    if got.shape != want.shape or not np.array_equal(got, want):
        if got.shape != want.shape or want.size <= SHOWN_WHOLE:
            raise AssertionError(f"{what}: expected {_show(want)}, got {_show(got)}")
        differ = np.argwhere(got != want)
        first = tuple(int(i) for i in differ[0])
        detail = f"{len(differ)} of {want.size} elements differ, the first at index {first}"
        raise _failure(_mismatch(what, want, got, first, detail), what, want, got, first)


def expect(condition: Any, message: str) -> None:
    """Assert a condition, with a message written for the student."""
    if not bool(condition):
        raise AssertionError(message)


def numpy_mlp(params: list[dict], x: Any) -> np.ndarray:
    """A reference forward pass in float64 numpy: ReLU hidden layers, a linear output layer.

    ``params`` is a list of ``{"w": (n_in, n_out), "b": (n_out,)}``, as the early labs' networks are.
    Tests use it to recompute what a trained network predicts from the weights that came back,
    rather than trusting a number the student's code reports.
    """
    h = np.asarray(x, np.float64)
    for i, layer in enumerate(params):
        h = h @ np.asarray(layer["w"], np.float64) + np.asarray(layer["b"], np.float64)
        if i < len(params) - 1:
            h = np.maximum(h, 0.0)
    return h


def seeded_key(n: int):
    """``jax.random.key(n)``, varied by the grading seed: tests use it instead of a literal key.

    With the default seed 0 it is exactly ``jax.random.key(n)``; with another seed, every test's
    inputs change, deterministically.
    """
    import jax

    key = jax.random.key(n)
    if SEED == 0:
        return key
    key = jax.random.fold_in(key, SEED & 0xFFFFFFFF)  # fold_in takes 32 bits: a longer seed folds in again
    return jax.random.fold_in(key, SEED >> 32 & 0xFFFFFFFF) if SEED >> 32 else key


def draw(sample, key, shape: tuple[int, ...], **kwargs):
    """``sample(key, shape, **kwargs)`` bit for bit, e.g. ``draw(jax.random.normal, key, (2, 8, 8, 3))``:
    a test's random input, made by a program compiled once per size class instead of once per shape.

    Why: with JAX's default ``jax_threefry_partitionable``, XLA on a CPU is slow to compile a draw of a
    new many-axis shape, and a test that draws a dozen shapes spent most of its time there. Element
    ``i`` of such a draw depends only on the key and ``i``: a draw of ``shape`` is a flat one reshaped,
    and a flat draw of ``n`` is the first ``n`` of a longer one, so every size up to the next power of
    two shares one program. ``sample`` is one of JAX's element-wise samplers (normal, uniform,
    truncated_normal, randint, bernoulli: ``p`` by keyword); without the flag only the reshape is used.
    """
    import jax

    r = jax.random
    if sample not in {r.normal, r.uniform, r.truncated_normal, r.randint, r.bernoulli}:
        raise ValueError(
            f"draw() takes one of JAX's element-wise samplers (jax.random.normal, uniform, truncated_normal, "
            f"randint, bernoulli), not {getattr(sample, '__name__', sample)!r}: call that one directly"
        )
    n = math.prod(shape)
    size = 1 << max(n - 1, 0).bit_length() if jax.config.jax_threefry_partitionable else n
    flat = np.asarray(sample(key, shape=(size,), **kwargs))[:n]  # NumPy slices and reshapes without compiling
    return jax.numpy.asarray(flat.reshape(shape))
