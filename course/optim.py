"""Optax, made to work under the strict dtype promotion that the course's tests run with."""

from __future__ import annotations

import jax
import optax


def strict_safe(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """The same optimizer, with its ``init``/``update`` traced under standard dtype promotion.

    Optax's Adam computes ``decay ** count`` with an int32 step count, which JAX rejects under
    ``jax_numpy_dtype_promotion="strict"``. Strict promotion catches real bugs in student code, so
    rather than relaxing it everywhere, only the optimizer's own arithmetic is exempt.
    """

    def init(params):
        with jax.numpy_dtype_promotion("standard"):
            return tx.init(params)

    def update(updates, state, params=None, **extra):
        with jax.numpy_dtype_promotion("standard"):
            return tx.update(updates, state, params, **extra)

    return optax.GradientTransformationExtraArgs(init, update)
