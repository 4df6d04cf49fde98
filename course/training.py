"""The training loop every lab from 06 on shares: ``fit``, and what it logs around the pure core.

::

    model, history = fit(model, data.train, data.test, loss=loss, accuracy=accuracy,
                         preprocess=normalize, optimizer=optax.adam(1e-3), epochs=5,
                         batch_size=128, key=jax.random.key(0), workdir="runs/mlp")

The pure part (train state, the step, batching, evaluation, devices) is ``course.train_core``, short
enough to read in one sitting; this module drives it and does the I/O:

* The model crosses into pure JAX once (``nnx.split``); the data go to the devices once, as they are
  (uint8 images stay uint8: 4× less memory); ``preprocess`` (e.g. ``/ 255``) runs on each batch inside
  the compiled step.
* The step is the built-in one (``train_core.make_train_step``, from ``loss``), or one the caller wrote:
  ``make_step(graphdef, optimizer) -> train_step(state, batch, *, key)`` (lab 10's students write it).
  One compiled call per step, the state's buffers donated; on the CPU compiled with
  ``course.layers.cpu_compiler_options`` (fast convolutions).
* Each batch is split over every device along a ``data`` axis, parameters replicated: one CPU, one
  GPU or the 8 cores of a TPU, with nothing changed in lab code.
* After each epoch: validation loss/accuracy, a progress line or bar, a PNG grid of validation images with
  predicted and true labels (``workdir/predictions/``), the same images to Weights & Biases when asked,
  and an Orbax checkpoint (``workdir/checkpoints/``). Calling ``fit`` again with the same ``workdir``
  resumes after the last saved epoch.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import Array

from course.errors import CourseError
from course.train_core import (
    Devices,
    Metric,
    TrainState,
    batched,
    call_options,
    check_split,
    epoch_at_once,
    epoch_batches,
    evaluate,
    generic_convolutions,
    make_eval_step,
    make_train_step,
    means,
    step_at_index,
    take,
)

History = dict[str, list[float]]
StepMaker = Callable[[nnx.GraphDef, optax.GradientTransformation], Callable]


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
        text = " ".join(
            f"{short.get(k, k)}={v:.4f}" for k, v in row.items() if k not in ("epoch", "seconds", "compile_seconds")
        )
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
        raise CourseError(
            "wandb_project was given but wandb is not installed: "
            "pip install 'make-you-dangerous[wandb]' (or drop wandb_project)"
        ) from None
    # mode=None lets WANDB_MODE decide: "offline" logs to disk only, for machines with no network.
    return wandb.init(project=project, dir=str(workdir) if workdir else None, config=config)


def _log_images(
    run, workdir: Path | None, epoch: int, images: np.ndarray, predicted: np.ndarray, labels: np.ndarray, class_names
) -> Path | None:
    """The lecture's ``WandbCallback(data_type="image", labels=labels)``: validation images captioned
    with the predicted and true label, as a PNG per epoch and, when a run is open, to W&B."""
    names = list(class_names) if class_names is not None else [str(i) for i in range(int(labels.max()) + 1)]
    captions = [f"pred: {names[p]} / true: {names[t]}" for p, t in zip(predicted, labels)]
    path = None
    if workdir is not None:
        from course import plotting

        fig = plotting.image_grid(
            images, captions, wrong=predicted != labels, title=f"validation predictions after epoch {epoch}"
        )
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
            folder.absolute(), options=ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
        )

    def restore(self, state: TrainState) -> tuple[int, TrainState, History] | None:
        epoch = self.manager.latest_step()
        if epoch is None:
            return None
        saved = self.manager.restore(epoch, args=self.ocp.args.Composite(run=self.ocp.args.JsonRestore()))["run"]
        if saved != self.run:
            diff = {k: (saved.get(k), v) for k, v in self.run.items() if saved.get(k) != v}
            raise CourseError(
                f"{self.folder} holds checkpoints of a different run ({', '.join(f'{k}: saved {a}, now {b}' for k, (a, b) in diff.items())}); "
                "use another workdir, or pass resume=False to start over"
            )
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
        restored = self.manager.restore(
            epoch,
            args=self.ocp.args.Composite(
                state=self.ocp.args.StandardRestore(abstract), history=self.ocp.args.JsonRestore()
            ),
        )
        return epoch, restored["state"], restored["history"]

    def save(self, epoch: int, state: TrainState, history: History) -> None:
        self.manager.save(
            epoch,
            args=self.ocp.args.Composite(
                state=self.ocp.args.StandardSave(state),
                history=self.ocp.args.JsonSave(history),
                run=self.ocp.args.JsonSave(self.run),
            ),
        )

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


# ------------------------------------------------------------------------------------------------ fit


def fit(
    model: nnx.Module,
    train,
    val=None,
    *,
    loss: Metric,
    accuracy: Metric,
    optimizer: optax.GradientTransformation,
    epochs: int,
    batch_size: int,
    key: Array,
    preprocess: Callable[[Array], Array] = lambda x: x,
    make_step: StepMaker | None = None,
    workdir: str | os.PathLike | None = None,
    resume: bool = True,
    class_names=None,
    log_images: int = 16,
    eval_batch_size: int = 1000,
    progress: bool | None = None,
    loop: str = "steps",
    wandb_project: str | None = None,
) -> tuple[nnx.Module, History]:
    """Train ``model`` for ``epochs`` epochs; returns the trained model and the history.

    Args:
      model: a Flax ``nnx`` module mapping images (B, ...) to logits (B, K). If its ``__call__`` takes
        ``train`` and/or ``key`` keyword arguments, it gets them (for dropout).
      train, val: ``(images (N, ...), labels (N,) int)`` pairs, e.g. ``course.mnist.Split``.
      loss, accuracy: ``f(logits (B, K), labels (B,)) -> ()``, each the mean over the batch.
      optimizer: an Optax optimizer.
      key: the run's PRNG key: batch order and dropout masks derive from it, nothing else is random.
      preprocess: applied to each batch of images inside the compiled step (e.g. uint8 -> float / 255).
      make_step: your own step instead of the built-in one: ``make_step(graphdef, optimizer)`` returns
        ``train_step(state, batch, *, key) -> (state, sums)`` (see ``course.train_core``; the batch's images
        have been through ``preprocess``). ``loss`` and ``accuracy`` are still used for validation.
      workdir: where checkpoints and prediction grids go; ``None`` keeps nothing.
      resume: continue from the last checkpoint in ``workdir`` (False: start over, deleting them).
      progress: True a bar, False silent, None a bar on a terminal, lines elsewhere, silent under pytest.
      loop: ``"steps"``, one compiled call per step from Python (the bar moves each step), or ``"epoch"``,
        each epoch one compiled ``lax.scan`` over its steps (the bar moves once per epoch; no Python
        between steps: lab 10 on a 2-core CPU 6 % faster, and on accelerators, where dispatching a step
        can cost more than computing it, the usual choice). Both train alike. On a CPU, a step whose
        convolutions are not ``course.layers.conv2d`` falls back to ``"steps"`` with a warning (in a
        loop their gradients would run XLA's generic convolution, tens of times slower).
      wandb_project: also log metrics and images to Weights & Biases (``WANDB_MODE=offline`` works offline).

    Returns:
      ``(model, history)``; ``history`` maps ``epoch``, ``loss``, ``accuracy``, ``seconds`` (wall time of
      the epoch), ``compile_seconds`` (of that, compiling: only in a run's first epoch) and, with ``val``,
      ``val_loss`` and ``val_accuracy`` to one value per epoch.
    """
    if epochs < 0 or batch_size < 1:
        raise CourseError(f"need epochs >= 0 and batch_size >= 1, got epochs={epochs}, batch_size={batch_size}")
    if loop not in ("steps", "epoch"):
        raise CourseError(f"loop must be 'steps' or 'epoch', got {loop!r}")
    devices = Devices.every(batch_size, eval_batch_size)
    train_x, train_y = devices.replicate(check_split("train", train))
    val_x, val_y = devices.replicate(check_split("val", val)) if val is not None else (None, None)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    state = TrainState(jnp.zeros((), jnp.int32), params, rest, optimizer.init(params))
    steps = _Steps.make(graphdef, model, loss, accuracy, optimizer, preprocess, make_step, loop, devices)
    k_data, k_dropout = jax.random.split(key)
    workdir = Path(workdir) if workdir is not None else None
    checkpoints, first_epoch, state, history = _resume(
        workdir, resume, state, key=key, batch_size=batch_size, n=len(train_y)
    )
    state = devices.replicate(state)
    wandb_run = _wandb_run(wandb_project, workdir, {"epochs": epochs, "batch_size": batch_size})
    show, n_steps = _Progress(progress), math.ceil(len(train_y) / batch_size)
    record = _Record(history, checkpoints, wandb_run, workdir, class_names, val_y, shown=log_images)
    zeros = {name: jnp.zeros((), jnp.float32) for name in ("loss", "correct", "count")}
    try:
        for epoch in range(first_epoch, epochs + 1):
            start = time.perf_counter()
            batches = epoch_batches(len(train_y), batch_size, key=jax.random.fold_in(k_data, epoch))
            data = (train_x, train_y, batches)
            if epoch == first_epoch:  # compile ahead of time, to report how long compiling takes
                steps.compile(state, zeros, data, k_dropout, val_x, val_y, eval_batch_size)
            compile_seconds = time.perf_counter() - start if epoch == first_epoch else 0.0
            bar = show.epoch(epoch, epochs, n_steps)
            state, totals = _train_epoch(steps.loop, steps.step_at, state, zeros, data, k_dropout, n_steps, bar)
            row, predicted = _evaluate_epoch(epoch, totals, steps.eval_step, state, val_x, val_y, eval_batch_size)
            row |= {"seconds": time.perf_counter() - start, "compile_seconds": compile_seconds}
            show.done(bar, epoch, epochs, row)
            record.epoch(row, state, val_x, predicted, val_y)
    finally:
        record.close()
    return nnx.merge(graphdef, state.params, state.rest), history


class _Record:
    """Where each epoch's results go: the history, W&B, the grid of validation predictions, a checkpoint."""

    def __init__(self, history: History, checkpoints, wandb_run, workdir: Path | None, class_names, val_y, *, shown):
        self.history, self.checkpoints, self.wandb_run = history, checkpoints, wandb_run
        self.workdir, self.class_names = workdir, class_names
        self.shown = slice(0, min(shown, len(val_y)) if val_y is not None else 0)  # validation images logged

    def epoch(self, row: dict[str, float], state, val_x, predicted, val_y) -> None:
        epoch = row["epoch"]
        for name, value in row.items():
            self.history.setdefault(name, []).append(value)
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
        pictures = val_x is not None and val_x.ndim == 4 and val_x.shape[-1] in (1, 3, 4)  # (N, H, W, C) only
        if pictures and self.shown.stop and (self.workdir is not None or self.wandb_run is not None):
            images = [np.asarray(a[self.shown]) for a in (val_x, predicted, val_y)]
            _log_images(self.wandb_run, self.workdir, epoch, *images, self.class_names)
        if self.checkpoints is not None:
            self.checkpoints.save(epoch, state, self.history)

    def close(self) -> None:
        if self.checkpoints is not None:
            self.checkpoints.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


class _Steps:
    """A run's step functions: training (a call per step, or an epoch in one call) and evaluation,
    compiled ahead of the first epoch (:meth:`compile`), when ``loop`` may fall back to ``"steps"``."""

    def __init__(self, loop: str, train_step, step_at, eval_step, preprocess, devices: Devices) -> None:
        self.loop, self.train_step, self.step_at, self.eval_step = loop, train_step, step_at, eval_step
        self.preprocess, self.devices = preprocess, devices

    @classmethod
    def make(cls, graphdef, model, loss, accuracy, optimizer, preprocess, make_step, loop, devices) -> "_Steps":
        """The built-in step (from ``loss``) or the caller's ``make_step``, looped as ``loop`` asks."""
        options = call_options(model)
        if make_step is None:
            train_step = make_train_step(
                graphdef, loss=loss, accuracy=accuracy, optimizer=optimizer, preprocess=lambda x: x, options=options
            )
        else:
            train_step = make_step(graphdef, optimizer)
        make_loop = step_at_index if loop == "steps" else epoch_at_once
        step_at = make_loop(train_step, preprocess=preprocess, devices=devices)
        eval_step = make_eval_step(
            graphdef, loss=loss, accuracy=accuracy, preprocess=preprocess, options=options, devices=devices
        )
        return cls(loop, train_step, step_at, eval_step, preprocess, devices)

    def compile(self, state, zeros, data: tuple, k_dropout: Array, val_x, val_y, eval_batch_size: int) -> None:
        """Compile the training step for ``data`` (:func:`_compile_steps`) and evaluation for ``val``."""
        self.loop, self.step_at = _compile_steps(
            self.loop, self.step_at, (state, zeros, *data), k_dropout, self.train_step, self.preprocess, self.devices
        )
        if val_x is not None:
            first = take(val_x, val_y, batched(jnp.arange(len(val_y)), eval_batch_size), jnp.int32(0))
            self.eval_step = self.eval_step.lower(state.params, state.rest, first).compile()


def _evaluate_epoch(epoch: int, totals, eval_step, state, val_x, val_y, eval_batch_size: int):
    """The epoch's row of the history (its training means, and validation's with ``val``) and the
    validation predictions (None without ``val``)."""
    row, predicted = {"epoch": epoch, **means(totals)}, None
    if val_x is not None:
        metrics, predicted = evaluate(eval_step, state.params, state.rest, val_x, val_y, batch_size=eval_batch_size)
        row |= {"val_loss": metrics["loss"], "val_accuracy": metrics["accuracy"]}
    return row, predicted


def _resume(workdir: Path | None, resume: bool, state: TrainState, *, key: Array, batch_size: int, n: int):
    """``(checkpoints, first epoch, state, history)``: from ``workdir``'s last checkpoint of this same
    run, else a fresh start (no checkpoints at all without a ``workdir``)."""
    if workdir is None:
        return None, 1, state, {}
    run_info = {
        "batch_size": batch_size,
        "train_examples": int(n),
        "key": np.asarray(jax.random.key_data(key)).tolist(),
        "params": [list(map(int, x.shape)) for x in jax.tree.leaves(state.params)],
    }
    checkpoints = _Checkpoints(workdir / "checkpoints", run_info, resume=resume)
    if (restored := checkpoints.restore(state)) is not None:
        last, state, history = restored
        return checkpoints, last + 1, state, history
    return checkpoints, 1, state, {}


def _compile_steps(loop: str, step_at, arguments: tuple, k_dropout: Array, train_step, preprocess, devices):
    """The epoch's step function compiled ahead; ``(loop, compiled)``. On a CPU, an epoch loop whose
    convolutions XLA would run with its generic code falls back to a call per step, with a warning."""
    index = (np.int32(0),) if loop == "steps" else ()  # a call per step takes the step's index
    lowered = step_at.lower(*arguments, *index, k_dropout)
    if loop == "epoch" and jax.default_backend() == "cpu" and generic_convolutions(lowered.as_text()):
        warnings.warn(  # e.g. nnx.Conv or lax.conv in the model: tens of times slower in a loop
            "fit(loop='epoch') on a CPU: this step has convolutions (not course.layers.conv2d, or a "
            "function jitted before) whose gradients XLA:CPU would run with its slow generic code "
            "inside the epoch's loop; training with a compiled call per step instead (loop='steps')",
            stacklevel=3,
        )
        loop, step_at = "steps", step_at_index(train_step, preprocess=preprocess, devices=devices)
        lowered = step_at.lower(*arguments, np.int32(0), k_dropout)
    return loop, lowered.compile()


def _train_epoch(loop: str, step_at, state, zeros, data: tuple, k_dropout: Array, steps: int, bar):
    """One epoch's training: ``(state, totals)``; the bar moves each step, or once for an epoch loop."""
    totals = jax.tree.map(jnp.copy, zeros)
    if loop == "epoch":
        state, totals = step_at(state, totals, *data, k_dropout)
        if bar is not None:
            bar.update(steps)
        return state, totals
    for i in range(steps):
        state, totals = step_at(state, totals, *data, np.int32(i), k_dropout)
        if bar is not None:
            bar.update(1)
            if i % 50 == 49:  # reading the totals waits for the device: not every step
                now = means(totals)
                bar.set_postfix(loss=f"{now['loss']:.4f}", acc=f"{now['accuracy']:.4f}")
    return state, totals


__all__ = ["History", "fit"]
