"""The pure core of the shared training loop: train state, steps, batching, evaluation, devices.

Everything here is a function of arrays; nothing prints, writes files or keeps hidden state. The loop
around it (progress bars, prediction grids, checkpoints, W&B, ``fit`` itself) is ``course.training``.

* A model crosses into pure JAX once: ``graphdef, params, rest = nnx.split(model, nnx.Param, ...)``.
  A step rebuilds it with ``nnx.merge`` inside the compiled function, so the gradient is plain
  ``jax.grad`` of a function of ``params``.
* A step is ``train_step(state, batch, *, key) -> (state, sums)``: ``state`` a :class:`TrainState`,
  ``batch`` ``{"image": (B, ...), "label": (B,), "mask": (B,) bool}`` (``mask`` False on the padding of
  the last batch), ``key`` the run's dropout key, which the step folds with ``state.step``. ``sums`` are
  :func:`batch_sums`: summed loss, number correct, number of real examples.
* An epoch is a key-drawn permutation cut into padded batches (:func:`epoch_batches`): every example
  counts once and the step compiles once.
* Batches are split over every device along a ``data`` axis (:class:`Devices`); parameters are replicated.

Losses and metrics are written for a batch, as a student writes them: ``loss(logits, labels) -> ()``, the
mean over the batch. :func:`per_example` evaluates them per example with ``jax.vmap`` over batches of one,
which is what lets the built-in step mask the padding without asking for a per-example version.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import Array
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from course import layers
from course.errors import CourseError

Metric = Callable[[Array, Array], Array]  # (logits (B, K), labels (B,)) -> () mean over the batch


class TrainState(NamedTuple):
    """Everything that changes during training; returned by each step, never mutated."""

    step: Array  # () int32: optimizer steps taken so far
    params: nnx.State  # the model's nnx.Param variables: what the gradient is taken of
    rest: nnx.State  # any other model state (e.g. BatchNorm statistics), carried along
    opt_state: optax.OptState


class Batches(NamedTuple):
    """One epoch's mini-batches, as indices into the training set."""

    index: Array  # (steps, batch_size) int32
    mask: Array  # (steps, batch_size) bool: False marks the padding of the last batch


def batched(order: Array, batch_size: int) -> Batches:
    """Indices ``order`` (n,) cut into ``ceil(n / batch_size)`` batches of equal size.

    The last batch is padded (index 0, mask False) rather than dropped or made smaller: a smaller
    batch would be a new shape, and a new shape is a new compilation.
    """
    n = order.shape[0]
    steps = math.ceil(n / batch_size)
    pad = steps * batch_size - n
    index = jnp.concatenate([order.astype(jnp.int32), jnp.zeros((pad,), jnp.int32)]).reshape(steps, batch_size)
    mask = (jnp.arange(steps * batch_size) < n).reshape(steps, batch_size)
    return Batches(index, mask)


def epoch_batches(n: int, batch_size: int, *, key: Array) -> Batches:
    """A random permutation of ``range(n)``, drawn from ``key``, in padded batches (see ``batched``)."""
    return batched(jax.random.permutation(key, n), batch_size)


def per_example(metric: Metric, logits: Array, labels: Array) -> Array:
    """A batch-mean metric evaluated on each example alone: (B, K), (B,) -> (B,)."""

    def one(lg, lb):
        value = metric(lg[None], lb[None])  # a batch of one: (1, K), (1,)
        if jnp.ndim(value) != 0:
            name = getattr(metric, "__name__", "the metric")
            raise CourseError(
                f"{name} returned shape {jnp.shape(value)} for a batch of 1; it should return "
                "the mean over the batch, a scalar of shape ()"
            )
        return value

    return jax.vmap(one)(logits, labels)


def batch_sums(losses: Array, correct: Array, weight: Array) -> dict[str, Array]:
    """Per-example losses and hits (B,) summed over the real examples (weight 1; padding weight 0).

    Returns ``{"loss": (), "correct": (), "count": ()}``, float32: what a train step reports.
    """
    weight = weight.astype(jnp.float32)
    return {
        "loss": jnp.sum(losses.astype(jnp.float32) * weight),
        "correct": jnp.sum(correct.astype(jnp.float32) * weight),
        "count": jnp.sum(weight),
    }


def call_options(model: nnx.Module) -> frozenset[str]:
    """Which of ``train`` and ``key`` the model's ``__call__`` accepts."""
    params = inspect.signature(type(model).__call__).parameters
    return frozenset(name for name in ("train", "key") if name in params)


def apply(graphdef, params, rest, images, *, options, train: bool, key: Array):
    """Run the model as a pure function: (params, images (B, ...)) -> (logits (B, K), new rest)."""
    model = nnx.merge(graphdef, params, rest)
    kwargs = {"train": train, "key": key}
    logits = model(images, **{k: v for k, v in kwargs.items() if k in options})
    if not hasattr(logits, "ndim") or logits.ndim != 2 or logits.shape[0] != images.shape[0]:
        raise CourseError(
            f"the model returned {getattr(logits, 'shape', type(logits).__name__)} for a batch of "
            f"{images.shape[0]} images; it should return logits of shape (batch, classes) = "
            f"({images.shape[0]}, K)"
        )
    _, _, rest = nnx.split(model, nnx.Param, ...)
    return logits, rest


def make_train_step(
    graphdef,
    *,
    loss: Metric,
    accuracy: Metric,
    optimizer: optax.GradientTransformation,
    preprocess: Callable[[Array], Array],
    options: frozenset[str],
):
    """The built-in ``train_step(state, batch, *, key) -> (state, sums)``, jitted, donating ``state``."""

    def train_step(state: TrainState, batch: dict[str, Array], *, key: Array):
        images = preprocess(batch["image"])
        weight = batch["mask"].astype(jnp.float32)
        step_key = jax.random.fold_in(key, state.step)

        def objective(params):
            logits, rest = apply(graphdef, params, state.rest, images, options=options, train=True, key=step_key)
            losses = per_example(loss, logits, batch["label"]).astype(jnp.float32)
            # The mean over the real examples only: padding has weight 0 and does not dilute it.
            return jnp.sum(losses * weight) / jnp.maximum(jnp.sum(weight), 1.0), (logits, rest, losses)

        (_, (logits, rest, losses)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        correct = per_example(accuracy, jax.lax.stop_gradient(logits), batch["label"])
        return TrainState(state.step + 1, params, rest, opt_state), batch_sums(losses, correct, weight)

    return jax.jit(train_step, donate_argnums=0)


def make_eval_step(graphdef, *, loss: Metric, accuracy: Metric, preprocess, options, devices: Devices | None = None):
    """``eval_step(params, rest, batch) -> (sums, predictions (B,))``, jitted; no dropout, no updates."""

    def eval_step(params, rest, batch):
        if devices is not None:
            batch = devices.split(batch)
        logits, _ = apply(
            graphdef, params, rest, preprocess(batch["image"]), options=options, train=False, key=jax.random.key(0)
        )
        losses = per_example(loss, logits, batch["label"]).astype(jnp.float32)
        correct = per_example(accuracy, logits, batch["label"])
        return batch_sums(losses, correct, batch["mask"]), jnp.argmax(logits, axis=-1)

    return layers.jit(eval_step)


# --------------------------------------------------------------------------------------------- devices


class Devices(NamedTuple):
    """The devices a run uses: a 1-D mesh whose axis ``data`` splits each batch; parameters replicated."""

    mesh: Mesh

    @classmethod
    def every(cls, *batch_sizes: int) -> Devices:
        """All devices (``jax.devices()``: every local one, and every host's after ``jax.distributed.initialize()``),
        or the largest leading group whose size divides every batch size."""
        devices = jax.devices()
        n = max(k for k in range(1, len(devices) + 1) if all(b % k == 0 for b in batch_sizes))
        return cls(Mesh(np.array(devices[:n]), ("data",)))

    @property
    def count(self) -> int:
        return self.mesh.size

    def replicate(self, tree):
        """A copy of ``tree`` on every device."""
        return jax.device_put(tree, NamedSharding(self.mesh, PartitionSpec()))

    def split(self, batch):
        """Inside a compiled step: each leaf (B, ...) split along B over the ``data`` axis."""
        if self.count == 1:
            return batch
        return jax.lax.with_sharding_constraint(batch, NamedSharding(self.mesh, PartitionSpec("data")))


# ----------------------------------------------------------------------------------- epochs and data


@jax.jit
def take(images: Array, labels: Array, batches: Batches, i: Array) -> dict[str, Array]:
    """Batch ``i`` of an epoch, gathered on the device."""
    index = batches.index[i]
    return {"image": images[index], "label": labels[index], "mask": batches.mask[i]}


def _step_on_batch(train_step, preprocess, devices):
    """``train_step`` on batch ``i`` of an epoch (gathered, split over the devices, preprocessed), its sums
    added to running totals."""

    def step_at(state, totals, images, labels, batches, i, key):
        batch = take(images, labels, batches, i)
        if devices is not None:
            batch = devices.split(batch)
        batch = {**batch, "image": preprocess(batch["image"])}
        state, sums = train_step(state, batch, key=key)
        return state, jax.tree.map(jnp.add, totals, sums)

    return step_at


def step_at_index(train_step, *, preprocess: Callable[[Array], Array] = lambda x: x, devices: Devices | None = None):
    """``step_at(state, totals, images, labels, batches, i, key) -> (state, totals)``: one step, one compiled
    call, compiled with the course's CPU options (``course.layers.jit``); ``fit``'s default loop shape (its
    progress bar moves each step)."""
    return layers.jit(_step_on_batch(train_step, preprocess, devices), donate_argnums=(0, 1))


def epoch_at_once(train_step, *, preprocess: Callable[[Array], Array] = lambda x: x, devices: Devices | None = None):
    """``run_epoch(state, totals, images, labels, batches, key) -> (state, totals)``: every step of an epoch
    as one compiled program (``lax.scan`` over the batches): no Python between steps, which can bound a
    small model's epoch on an accelerator. On a CPU the convolutions' gradients are written out in Eigen's
    layout (``course.layers.canonical_backward``), else XLA's generic convolution would run in the loop
    (``benchmarks/bench_cnn.py`` times both loop shapes)."""
    step_at = _step_on_batch(train_step, preprocess, devices)

    def run_epoch(state, totals, images, labels, batches, key):
        def body(carry, i):
            return step_at(*carry, images, labels, batches, i, key), None

        steps = jnp.arange(batches.index.shape[0], dtype=jnp.int32)
        # On a CPU, convolution gradients inside a loop must be written as Eigen takes them, or XLA
        # runs its generic convolution, tens of times slower (course.layers.canonical_backward).
        with layers.canonical_backward(jax.default_backend() == "cpu"):
            return jax.lax.scan(body, (state, totals), steps)[0]

    return layers.jit(run_epoch, donate_argnums=(0, 1))


EIGEN_CONVOLUTION = "[b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f]"  # NHWC x HWIO -> NHWC, in StableHLO's notation


def generic_convolutions(lowered_text: str) -> list[str]:
    """The dimension numbers of each convolution in a lowered program (``jit(f).lower(...).as_text()``)
    that is not in Eigen's layout: inside a loop XLA:CPU runs such a one with its generic, slow code.

    Only the layout is read: a 1-D or 3-D convolution counts as not Eigen's, a grouped or bfloat16
    one in this layout passes (Eigen may still not take it)."""
    found = re.findall(r"stablehlo\.convolution\(.*?dim_numbers = (\[[^\]]*\]x\[[^\]]*\]->\[[^\]]*\])", lowered_text)
    return [numbers for numbers in found if numbers != EIGEN_CONVOLUTION]


def check_split(name: str, split) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` checked: same length, not empty, integer labels (N,); as numpy arrays."""
    images, labels = split
    if len(images) != len(labels):
        raise CourseError(f"{name} has {len(images)} images but {len(labels)} labels; they must match")
    if len(images) == 0:
        raise CourseError(f"{name} is empty")
    if np.asarray(labels).ndim != 1 or not np.issubdtype(np.asarray(labels).dtype, np.integer):
        raise CourseError(
            f"{name} labels should be class numbers of shape (N,) and an integer dtype; got "
            f"shape {np.shape(labels)} and dtype {np.asarray(labels).dtype}"
        )
    return np.asarray(images), np.asarray(labels).astype(np.int32)


def evaluate(eval_step, params, rest, images: Array, labels: Array, *, batch_size: int) -> tuple[dict, Array]:
    """Loss and accuracy over a whole split, in padded batches; also every prediction (N,)."""
    n = len(labels)
    batches = batched(jnp.arange(n), batch_size)
    totals, predictions = [], []
    for i in range(batches.index.shape[0]):
        sums, pred = eval_step(params, rest, take(images, labels, batches, jnp.int32(i)))
        totals.append(sums)
        predictions.append(pred)
    return means(jax.tree.map(lambda *xs: sum(xs), *totals)), jnp.concatenate(predictions)[:n]


def means(totals: dict[str, Array]) -> dict[str, float]:
    """Mean loss and accuracy from summed ``loss``, ``correct`` and ``count`` (reads the device)."""
    t = jax.device_get(totals)
    return {"loss": float(t["loss"] / t["count"]), "accuracy": float(t["correct"] / t["count"])}


__all__ = [
    "Batches",
    "Devices",
    "Metric",
    "TrainState",
    "apply",
    "batch_sums",
    "batched",
    "call_options",
    "check_split",
    "epoch_at_once",
    "epoch_batches",
    "evaluate",
    "make_eval_step",
    "make_train_step",
    "means",
    "per_example",
    "step_at_index",
    "take",
]
