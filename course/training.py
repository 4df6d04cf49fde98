"""The training loop every lab from 06 on shares: a Flax ``nnx`` model, trained as a pure function.

::

    model, history = fit(model, data.train, data.test, loss=loss, accuracy=accuracy,
                         preprocess=normalize, optimizer=optax.adam(1e-3), epochs=5,
                         batch_size=128, key=jax.random.key(0), workdir="runs/mlp")

What happens, in order:

* The model crosses into pure JAX once: ``graphdef, params, rest = nnx.split(model, nnx.Param, ...)``.
  Every step rebuilds it with ``nnx.merge`` inside the jitted function, so the gradient is plain
  ``jax.grad`` of a function of ``params``.
* The data go to the device once, as they are (uint8 images stay uint8: 4× less memory); ``preprocess``
  (e.g. ``/ 255``) runs on each batch inside the compiled step.
* Each epoch is a permutation drawn from ``fold_in(key, epoch)``. The last, partial batch is padded to the
  full batch size and masked out of the loss and metrics, so every example counts once and the step
  compiles once.
* ``train_step(state, batch, *, key)`` is jitted with the state's buffers donated; a model whose
  ``__call__`` takes ``train``/``key`` gets ``train=True`` and the dropout key ``fold_in(key, step)``, so a
  resumed run draws the same masks as an uninterrupted one.
* After each epoch: validation loss/accuracy, a progress line or bar, a PNG grid of validation images with
  predicted and true labels (``workdir/predictions/``), the same images to Weights & Biases when asked,
  and an Orbax checkpoint (``workdir/checkpoints/``). Calling ``fit`` again with the same ``workdir``
  resumes after the last saved epoch.

Losses and metrics are written for a batch, as a student writes them: ``loss(logits, labels) -> ()``, the
mean over the batch. The loop evaluates them per example with ``jax.vmap`` over batches of one, which is
what lets it mask the padding without asking the student for a per-example version.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import Array

from course.labs import CourseError
from course.optim import strict_safe

History = dict[str, list[float]]
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
            raise CourseError(f"{name} returned shape {jnp.shape(value)} for a batch of 1; it should return "
                              "the mean over the batch, a scalar of shape ()")
        return value

    return jax.vmap(one)(logits, labels)


def _call_options(model: nnx.Module) -> frozenset[str]:
    """Which of ``train`` and ``key`` the model's ``__call__`` accepts."""
    params = inspect.signature(type(model).__call__).parameters
    return frozenset(name for name in ("train", "key") if name in params)


def _apply(graphdef, params, rest, images, *, options, train: bool, key: Array):
    """Run the model as a pure function: (params, images (B, ...)) -> (logits (B, K), new rest)."""
    model = nnx.merge(graphdef, params, rest)
    kwargs = {"train": train, "key": key}
    logits = model(images, **{k: v for k, v in kwargs.items() if k in options})
    if not hasattr(logits, "ndim") or logits.ndim != 2 or logits.shape[0] != images.shape[0]:
        raise CourseError(
            f"the model returned {getattr(logits, 'shape', type(logits).__name__)} for a batch of "
            f"{images.shape[0]} images; it should return logits of shape (batch, classes) = "
            f"({images.shape[0]}, K)")
    _, _, rest = nnx.split(model, nnx.Param, ...)
    return logits, rest


def _sums(losses: Array, correct: Array, weight: Array) -> dict[str, Array]:
    """Per-example values (B,) summed over the real examples (weight 1; padding has weight 0)."""
    return {"loss": jnp.sum(losses * weight), "correct": jnp.sum(correct.astype(jnp.float32) * weight),
            "count": jnp.sum(weight)}


def make_train_step(graphdef, *, loss: Metric, accuracy: Metric, optimizer: optax.GradientTransformation,
                    preprocess: Callable[[Array], Array], options: frozenset[str]):
    """``train_step(state, batch, *, key) -> (state, sums)``, jitted, donating ``state``.

    ``batch`` is ``{"image": (B, ...), "label": (B,), "mask": (B,) bool}``; ``sums`` holds the summed loss,
    the number correct and the number of real examples in the batch.
    """

    def train_step(state: TrainState, batch: dict[str, Array], *, key: Array):
        images = preprocess(batch["image"])
        weight = batch["mask"].astype(jnp.float32)
        step_key = jax.random.fold_in(key, state.step)

        def objective(params):
            logits, rest = _apply(graphdef, params, state.rest, images, options=options, train=True, key=step_key)
            losses = per_example(loss, logits, batch["label"]).astype(jnp.float32)
            # The mean over the real examples only: padding has weight 0 and does not dilute it.
            return jnp.sum(losses * weight) / jnp.maximum(jnp.sum(weight), 1.0), (logits, rest, losses)

        (_, (logits, rest, losses)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        correct = per_example(accuracy, jax.lax.stop_gradient(logits), batch["label"])
        return TrainState(state.step + 1, params, rest, opt_state), _sums(losses, correct, weight)

    return jax.jit(train_step, donate_argnums=0)


def make_eval_step(graphdef, *, loss: Metric, accuracy: Metric, preprocess, options):
    """``eval_step(params, rest, batch) -> (sums, predictions (B,))``, jitted; no dropout, no updates."""

    @jax.jit
    def eval_step(params, rest, batch):
        logits, _ = _apply(graphdef, params, rest, preprocess(batch["image"]), options=options, train=False,
                           key=jax.random.key(0))
        losses = per_example(loss, logits, batch["label"]).astype(jnp.float32)
        correct = per_example(accuracy, logits, batch["label"])
        return _sums(losses, correct, batch["mask"].astype(jnp.float32)), jnp.argmax(logits, axis=-1)

    return eval_step


@jax.jit
def _take(images: Array, labels: Array, batches: Batches, i: Array) -> dict[str, Array]:
    """Batch ``i`` of an epoch, gathered on the device."""
    index = batches.index[i]
    return {"image": images[index], "label": labels[index], "mask": batches.mask[i]}


def _indexed(train_step):
    """``train_step`` on batch ``i``, adding its sums to running totals: one dispatch per step, since
    on a fast device the Python between steps, not the arithmetic, bounds a small model's epoch."""

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step_at(state, totals, images, labels, batches, i, key):
        state, sums = train_step(state, _take(images, labels, batches, i), key=key)
        return state, jax.tree.map(jnp.add, totals, sums)

    return step_at


def _check_split(name: str, split) -> tuple[Array, Array]:
    images, labels = split
    if len(images) != len(labels):
        raise CourseError(f"{name} has {len(images)} images but {len(labels)} labels; they must match")
    if len(images) == 0:
        raise CourseError(f"{name} is empty")
    if np.asarray(labels).ndim != 1 or not np.issubdtype(np.asarray(labels).dtype, np.integer):
        raise CourseError(f"{name} labels should be class numbers of shape (N,) and an integer dtype; got "
                          f"shape {np.shape(labels)} and dtype {np.asarray(labels).dtype}")
    return jax.device_put(np.asarray(images)), jax.device_put(np.asarray(labels).astype(np.int32))


def evaluate(eval_step, params, rest, images: Array, labels: Array, *, batch_size: int) -> tuple[dict, Array]:
    """Loss and accuracy over a whole split, in padded batches; also every prediction (N,)."""
    n = len(labels)
    batches = batched(jnp.arange(n), batch_size)
    totals, predictions = [], []
    for i in range(batches.index.shape[0]):
        sums, pred = eval_step(params, rest, _take(images, labels, batches, jnp.int32(i)))
        totals.append(sums)
        predictions.append(pred)
    return _means(jax.tree.map(lambda *xs: sum(xs), *totals)), jnp.concatenate(predictions)[:n]


def _means(totals: dict[str, Array]) -> dict[str, float]:
    """Mean loss and accuracy from summed ``loss``, ``correct`` and ``count`` (reads the device)."""
    t = jax.device_get(totals)
    return {"loss": float(t["loss"] / t["count"]), "accuracy": float(t["correct"] / t["count"])}


# ----------------------------------------------------------------------------------- what gets logged

class _Progress:
    """A tqdm bar per epoch on a terminal, one line per epoch elsewhere, nothing under pytest."""

    def __init__(self, mode: bool | None):
        under_test = "PYTEST_CURRENT_TEST" in os.environ
        self.bar = bool(mode) if mode is not None else (sys.stderr.isatty() and not under_test)
        self.lines = mode is None and not self.bar and not under_test

    def epoch(self, epoch: int, epochs: int, steps: int):
        if not self.bar:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", unit="step", leave=True, dynamic_ncols=True)

    def done(self, bar, epoch: int, epochs: int, row: dict[str, float]) -> None:
        short = {"accuracy": "acc", "val_accuracy": "val_acc"}
        text = " ".join(f"{short.get(k, k)}={v:.4f}" for k, v in row.items() if k not in ("epoch", "seconds"))
        if bar is not None:
            bar.set_postfix_str(text, refresh=False)
            bar.close()
        elif self.lines:
            print(f"epoch {epoch}/{epochs}  {text}  ({row['seconds']:.1f} s)", flush=True)


def _wandb_run(project: str | None, workdir: Path | None, config: dict):
    if project is None:
        return None
    try:
        import wandb
    except ImportError:
        raise CourseError("wandb_project was given but wandb is not installed: "
                          "pip install 'make-you-dangerous[wandb]' (or drop wandb_project)") from None
    # mode=None lets WANDB_MODE decide: "offline" logs to disk only, for machines with no network.
    return wandb.init(project=project, dir=str(workdir) if workdir else None, config=config)


def _log_images(run, workdir: Path | None, epoch: int, images: np.ndarray, predicted: np.ndarray,
                labels: np.ndarray, class_names) -> Path | None:
    """The lecture's ``WandbCallback(data_type="image", labels=labels)``: validation images captioned
    with the predicted and true label, as a PNG per epoch and, when a run is open, to W&B."""
    names = list(class_names) if class_names is not None else [str(i) for i in range(int(labels.max()) + 1)]
    captions = [f"pred: {names[p]} / true: {names[t]}" for p, t in zip(predicted, labels)]
    path = None
    if workdir is not None:
        from course import plotting

        fig = plotting.image_grid(images, captions, wrong=predicted != labels,
                                  title=f"validation predictions after epoch {epoch}")
        path = plotting.save(fig, workdir / "predictions", f"epoch_{epoch:03d}", show=False)
    if run is not None:
        import wandb

        run.log({"examples": [wandb.Image(img, caption=c) for img, c in zip(images, captions)]}, step=epoch)
    return path


# --------------------------------------------------------------------------------------- checkpoints

class _Checkpoints:
    """Orbax checkpoints of the train state and history, one per epoch, under ``workdir/checkpoints``."""

    def __init__(self, folder: Path, run: dict, *, resume: bool):
        import orbax.checkpoint as ocp

        self.ocp = ocp
        if not resume and folder.exists():
            shutil.rmtree(folder)
        self.folder = folder
        self.run = run
        # Saving synchronously: the next step donates the state's buffers, which an asynchronous
        # save could still be reading.
        self.manager = ocp.CheckpointManager(
            folder.absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False))

    def restore(self, state: TrainState) -> tuple[int, TrainState, History] | None:
        epoch = self.manager.latest_step()
        if epoch is None:
            return None
        saved = self.manager.restore(epoch, args=self.ocp.args.Composite(run=self.ocp.args.JsonRestore()))["run"]
        if saved != self.run:
            diff = {k: (saved.get(k), v) for k, v in self.run.items() if saved.get(k) != v}
            raise CourseError(
                f"{self.folder} holds checkpoints of a different run ({', '.join(f'{k}: saved {a}, now {b}' for k, (a, b) in diff.items())}); "
                "use another workdir, or pass resume=False to start over")
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
        restored = self.manager.restore(epoch, args=self.ocp.args.Composite(
            state=self.ocp.args.StandardRestore(abstract), history=self.ocp.args.JsonRestore()))
        return epoch, restored["state"], restored["history"]

    def save(self, epoch: int, state: TrainState, history: History) -> None:
        self.manager.save(epoch, args=self.ocp.args.Composite(
            state=self.ocp.args.StandardSave(state), history=self.ocp.args.JsonSave(history),
            run=self.ocp.args.JsonSave(self.run)))

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


# ------------------------------------------------------------------------------------------------ fit

def fit(model: nnx.Module, train, val=None, *, loss: Metric, accuracy: Metric,
        optimizer: optax.GradientTransformation, epochs: int, batch_size: int, key: Array,
        preprocess: Callable[[Array], Array] = lambda x: x, workdir: str | os.PathLike | None = None,
        resume: bool = True, class_names=None, log_images: int = 16, eval_batch_size: int = 1000,
        progress: bool | None = None, wandb_project: str | None = None) -> tuple[nnx.Module, History]:
    """Train ``model`` for ``epochs`` epochs; returns the trained model and the history.

    Args:
      model: a Flax ``nnx`` module mapping images (B, ...) to logits (B, K). If its ``__call__`` takes
        ``train`` and/or ``key`` keyword arguments, it gets them (for dropout).
      train, val: ``(images (N, ...), labels (N,) int)`` pairs, e.g. ``course.mnist.Split``.
      loss, accuracy: ``f(logits (B, K), labels (B,)) -> ()``, each the mean over the batch.
      optimizer: an Optax optimizer.
      key: the run's PRNG key: batch order and dropout masks derive from it, nothing else is random.
      preprocess: applied to each batch of images inside the compiled step (e.g. uint8 -> float / 255).
      workdir: where checkpoints and prediction grids go; ``None`` keeps nothing.
      resume: continue from the last checkpoint in ``workdir`` (False: start over, deleting them).
      progress: True a bar, False silent, None a bar on a terminal, lines elsewhere, silent under pytest.
      wandb_project: also log metrics and images to Weights & Biases (``WANDB_MODE=offline`` works offline).

    Returns:
      ``(model, history)``; ``history`` maps ``epoch``, ``loss``, ``accuracy``, ``seconds`` (and
      ``val_loss``, ``val_accuracy`` with ``val``) to one value per epoch.
    """
    if epochs < 0 or batch_size < 1:
        raise CourseError(f"need epochs >= 0 and batch_size >= 1, got epochs={epochs}, batch_size={batch_size}")
    train_x, train_y = _check_split("train", train)
    val_x, val_y = _check_split("val", val) if val is not None else (None, None)
    optimizer = strict_safe(optimizer)
    options = _call_options(model)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    state = TrainState(jnp.zeros((), jnp.int32), params, rest, optimizer.init(params))
    train_step = make_train_step(graphdef, loss=loss, accuracy=accuracy, optimizer=optimizer,
                                 preprocess=preprocess, options=options)
    step_at = _indexed(train_step)
    eval_step = make_eval_step(graphdef, loss=loss, accuracy=accuracy, preprocess=preprocess, options=options)
    k_data, k_dropout = jax.random.split(key)

    workdir = Path(workdir) if workdir is not None else None
    history: History = {}
    first_epoch = 1
    checkpoints = None
    if workdir is not None:
        run_info = {"batch_size": batch_size, "train_examples": int(len(train_y)),
                    "key": np.asarray(jax.random.key_data(key)).tolist(),
                    "params": [list(map(int, x.shape)) for x in jax.tree.leaves(params)]}
        checkpoints = _Checkpoints(workdir / "checkpoints", run_info, resume=resume)
        if (restored := checkpoints.restore(state)) is not None:
            last, state, history = restored
            first_epoch = last + 1
    wandb_run = _wandb_run(wandb_project, workdir, {"epochs": epochs, "batch_size": batch_size})
    show = _Progress(progress)
    steps = math.ceil(len(train_y) / batch_size)
    # Only image data (N, H, W, C) make a picture grid.
    pictures = val_x is not None and val_x.ndim == 4 and val_x.shape[-1] in (1, 3, 4)
    shown = slice(0, min(log_images, len(val_y)) if pictures else 0)

    try:
        for epoch in range(first_epoch, epochs + 1):
            start = time.perf_counter()
            batches = epoch_batches(len(train_y), batch_size, key=jax.random.fold_in(k_data, epoch))
            bar = show.epoch(epoch, epochs, steps)
            totals = {name: jnp.zeros((), jnp.float32) for name in ("loss", "correct", "count")}
            for i in range(steps):
                state, totals = step_at(state, totals, train_x, train_y, batches, np.int32(i), k_dropout)
                if bar is not None:
                    bar.update(1)
                    if i % 50 == 49:  # reading the totals waits for the device: not every step
                        now = _means(totals)
                        bar.set_postfix(loss=f"{now['loss']:.4f}", acc=f"{now['accuracy']:.4f}")
            row = {"epoch": epoch, **_means(totals)}
            if val_x is not None:
                metrics, predicted = evaluate(eval_step, state.params, state.rest, val_x, val_y,
                                              batch_size=eval_batch_size)
                row |= {"val_loss": metrics["loss"], "val_accuracy": metrics["accuracy"]}
            row["seconds"] = time.perf_counter() - start
            for name, value in row.items():
                history.setdefault(name, []).append(value)
            show.done(bar, epoch, epochs, row)
            if wandb_run is not None:
                wandb_run.log({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
            if shown.stop and (workdir is not None or wandb_run is not None):
                _log_images(wandb_run, workdir, epoch, np.asarray(val_x[shown]), np.asarray(predicted[shown]),
                            np.asarray(val_y[shown]), class_names)
            if checkpoints is not None:
                checkpoints.save(epoch, state, history)
    finally:
        if checkpoints is not None:
            checkpoints.close()
        if wandb_run is not None:
            wandb_run.finish()
    return nnx.merge(graphdef, state.params, state.rest), history


__all__ = ["Batches", "History", "TrainState", "batched", "epoch_batches", "evaluate", "fit", "make_eval_step",
           "make_train_step", "per_example"]
