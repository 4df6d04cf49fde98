"""The shared training loop: batching, masking, compiling once, resuming, logging."""

import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from course import layers, train_core, training
from course.errors import CourseError
from course.grader.testing import draw


def xent(logits, labels):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=-1))


def acc(logits, labels):
    return jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))


class Tiny(nnx.Module):
    """A 3-class model of 2×2 images with dropout, so keys matter."""

    traces = 0

    def __init__(self, *, rngs):
        self.dense = nnx.Linear(4, 8, rngs=rngs)
        self.head = nnx.Linear(8, 3, rngs=rngs)
        self.drop = nnx.Dropout(0.3)

    def __call__(self, x, *, train=False, key=None):
        if train:
            Tiny.traces += 1  # Python runs only while tracing: counts compilations of the train step
        x = x.reshape(x.shape[0], -1)  # (B, 2, 2, 1) -> (B, 4)
        h = self.drop(jax.nn.relu(self.dense(x)), deterministic=not train, rngs=key)
        return self.head(h)


class NoDrop(Tiny):
    def __call__(self, x, *, train=False, key=None):
        return self.head(jax.nn.relu(self.dense(x.reshape(x.shape[0], -1))))


class TinyConv(nnx.Module):
    """Two course.layers.Conv2D on the 2×2 images, padded to 6×6: in the epoch loop both gradients (the
    input's, through conv2, and the kernels') are the ones written out for Eigen."""

    def __init__(self, *, rngs):
        self.conv = layers.Conv2D(1, 4, (3, 3), rngs=rngs)  # (B, 6, 6, 1) -> (B, 4, 4, 4)
        self.conv2 = layers.Conv2D(4, 6, (2, 3), rngs=rngs)  # -> (B, 3, 2, 6)
        self.head = nnx.Linear(36, 3, rngs=rngs)

    def __call__(self, x, *, train=False, key=None):
        x = jnp.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
        x = jax.nn.relu(self.conv2(jax.nn.relu(self.conv(x))))
        return self.head(x.reshape(x.shape[0], -1))


class TinyNnxConv(nnx.Module):
    """nnx.Conv: XLA's own convolution, whose gradients a CPU runs slowly inside a loop."""

    def __init__(self, *, rngs):
        self.conv = nnx.Conv(1, 6, (2, 2), padding="VALID", rngs=rngs)  # (B, 2, 2, 1) -> (B, 1, 1, 6)
        self.head = nnx.Linear(6, 3, rngs=rngs)

    def __call__(self, x, *, train=False, key=None):
        return self.head(jax.nn.relu(self.conv(x)).reshape(x.shape[0], -1))


def data(n, key):
    x = draw(jax.random.normal, key, (n, 4))
    y = (jnp.argmax(x[:, :3], axis=1)).astype(jnp.int32)  # learnable: the largest of 3 features
    return np.asarray(x).reshape(n, 2, 2, 1), np.asarray(y)  # tiny 2×2 grey "images"


def run(tmp=None, *, epochs=3, key=0, n=100, batch_size=32, model_class=None, **kw):
    model = (model_class or Tiny)(rngs=nnx.Rngs(key))
    train, val = data(n, jax.random.key(1)), data(40, jax.random.key(2))
    kw.setdefault("optimizer", optax.adam(0.01))
    return training.fit(
        model,
        train,
        val,
        loss=xent,
        accuracy=acc,
        epochs=epochs,
        batch_size=batch_size,
        key=jax.random.key(key),
        workdir=tmp,
        **kw,
    )


def fit_once(model, train, *, loss=xent, optimizer=None, batch_size=4):
    """One epoch of ``training.fit`` on ``train``, no validation, key 0: what the error tests vary is the rest."""
    return training.fit(
        model,
        train,
        None,
        loss=loss,
        accuracy=acc,
        optimizer=optimizer or optax.sgd(0.1),
        epochs=1,
        batch_size=batch_size,
        key=jax.random.key(0),
    )


def assert_same_weights(a: nnx.Module, b: nnx.Module, **tolerance):
    for x, y in zip(jax.tree.leaves(nnx.state(a)), jax.tree.leaves(nnx.state(b))):
        np.testing.assert_allclose(x, y, **tolerance)


@pytest.mark.parametrize("n,batch_size", [(10, 4), (12, 4), (1, 8), (100, 32)])
def test_epoch_batches_cover_every_example_once(n, batch_size):
    b = train_core.epoch_batches(n, batch_size, key=jax.random.key(0))
    steps = -(-n // batch_size)
    assert b.index.shape == b.mask.shape == (steps, batch_size)
    real = np.asarray(b.index)[np.asarray(b.mask)]
    assert sorted(real.tolist()) == list(range(n)), "each example exactly once per epoch"
    assert int(b.mask.sum()) == n


def test_epoch_batches_are_shuffled_by_the_key():
    a = train_core.epoch_batches(50, 10, key=jax.random.key(0)).index
    b = train_core.epoch_batches(50, 10, key=jax.random.key(1)).index
    assert not np.array_equal(a, b)
    assert np.array_equal(a, train_core.epoch_batches(50, 10, key=jax.random.key(0)).index)


def test_padding_does_not_change_the_gradient():
    """One step on 3 real + 5 padded examples equals one plain SGD step on the 3."""
    model = NoDrop(rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    sgd = optax.sgd(1.0)
    step = train_core.make_train_step(
        graphdef, loss=xent, accuracy=acc, optimizer=sgd, preprocess=lambda x: x, options=frozenset({"train", "key"})
    )
    x, y = data(8, jax.random.key(3))
    mask = np.arange(8) < 3
    state = train_core.TrainState(jnp.zeros((), jnp.int32), params, rest, sgd.init(params))
    new, sums = step(
        state, {"image": jnp.asarray(x), "label": jnp.asarray(y), "mask": jnp.asarray(mask)}, key=jax.random.key(0)
    )

    def plain(p):
        return xent(nnx.merge(graphdef, p, rest)(jnp.asarray(x[:3])), jnp.asarray(y[:3]))

    _, params, _ = nnx.split(NoDrop(rngs=nnx.Rngs(0)), nnx.Param, ...)
    # Compiled: one program, where eagerly each operation of the gradient would compile on its own.
    want = jax.jit(lambda params: jax.tree.map(lambda p, g: p - g, params, jax.grad(plain)(params)))(params)
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert float(sums["count"]) == 3


def test_last_partial_batch_counts_and_compiles_once():
    Tiny.traces = 0
    # lr 0: parameters never move, so the epoch's training loss must equal the loss over all 100
    # examples (with dropout off); a dropped or double-counted last batch of 4 would change it.
    model, history = run(epochs=2, n=100, batch_size=32, optimizer=optax.sgd(0.0))
    assert Tiny.traces == 1, (
        f"train step traced {Tiny.traces} times; 4 batches of 32 (the last 4 real) should compile once"
    )
    x, y = data(100, jax.random.key(1))
    # Training loss is with dropout; compare the accuracy-free quantity that dropout cannot touch:
    # evaluating the unchanged model on the training data gives the same loss as before training.
    unchanged = Tiny(rngs=nnx.Rngs(0))
    np.testing.assert_allclose(
        xent(model(jnp.asarray(x)), jnp.asarray(y)), xent(unchanged(jnp.asarray(x)), jnp.asarray(y)), atol=1e-6
    )


def test_training_metrics_cover_the_partial_batch():
    """Without dropout and with lr 0, history's epoch loss is exactly the mean over all examples."""
    x, y = data(100, jax.random.key(1))
    model = NoDrop(rngs=nnx.Rngs(0))
    want = float(xent(model(jnp.asarray(x)), jnp.asarray(y)))
    _, history = fit_once(model, (x, y), optimizer=optax.sgd(0.0), batch_size=32)
    np.testing.assert_allclose(history["loss"][0], want, rtol=1e-5)


def test_fit_learns_and_reports_history():
    _, history = run(epochs=5)
    assert set(history) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "compile_seconds"}
    assert history["compile_seconds"][0] > 0 and history["compile_seconds"][1:] == [0.0] * 4
    assert history["epoch"] == [1, 2, 3, 4, 5]
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] > 0.6


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    straight, h_straight = run(tmp_path / "straight", epochs=4)
    run(tmp_path / "resumed", epochs=2)  # "interrupted" after epoch 2
    resumed, h_resumed = run(tmp_path / "resumed", epochs=4)
    assert h_resumed["epoch"] == [1, 2, 3, 4]
    assert_same_weights(straight, resumed, rtol=0, atol=0)  # bit for bit
    for k in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert h_straight[k] == h_resumed[k], k
    # A different key in the same workdir is a different run: refuse, do not mix them.
    with pytest.raises(CourseError, match="different run"):
        run(tmp_path / "resumed", epochs=5, key=7)
    # resume=False starts over.
    _, fresh = run(tmp_path / "resumed", epochs=1, resume=False)
    assert fresh["epoch"] == [1]


def test_interrupted_epoch_resumes_from_the_last_checkpoint(tmp_path, monkeypatch):
    straight, _ = run(tmp_path / "a", epochs=3)
    real_save = training._Checkpoints.save

    def save(self, epoch, state, history):
        if epoch == 3:  # killed after training epoch 3, before saving it: epoch 3 is lost
            raise KeyboardInterrupt
        real_save(self, epoch, state, history)

    monkeypatch.setattr(training._Checkpoints, "save", save)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", epochs=3)
    monkeypatch.setattr(training._Checkpoints, "save", real_save)
    resumed, history = run(tmp_path / "b", epochs=3)
    assert history["epoch"] == [1, 2, 3]
    assert_same_weights(straight, resumed, rtol=0, atol=0)  # bit for bit


def test_prediction_grids_are_written_each_epoch(tmp_path):
    run(tmp_path, epochs=2, class_names=("a", "b", "c"), log_images=8)
    pngs = sorted((tmp_path / "predictions").glob("*.png"))
    assert [p.name for p in pngs] == ["epoch_001.png", "epoch_002.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_silent_under_tests(capsys):
    run(epochs=1)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_a_model_with_wrong_output_shape_gets_a_clear_error():
    class Flat(nnx.Module):
        def __init__(self):
            self.dense = nnx.Linear(4, 3, rngs=nnx.Rngs(0))

        def __call__(self, x):
            return self.dense(x.reshape(x.shape[0], -1)).ravel()

    x, y = data(10, jax.random.key(0))
    with pytest.raises(CourseError, match=r"returned \(12,\) for a batch of 4 images.*\(batch, classes\)"):
        fit_once(Flat(), (x, y))


def test_mismatched_data_gets_a_clear_error():
    x, y = data(10, jax.random.key(0))
    with pytest.raises(CourseError, match="train has 10 images but 9 labels"):
        fit_once(Tiny(rngs=nnx.Rngs(0)), (x, y[:9]))
    with pytest.raises(CourseError, match="integer dtype"):
        fit_once(Tiny(rngs=nnx.Rngs(0)), (x, y.astype(np.float32)))


def test_wandb_offline_logs_metrics_and_images(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb", reason="the wandb extra is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run(tmp_path, epochs=2, log_images=4, wandb_project="course-test")
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, f"one offline run expected in {tmp_path / 'wandb'}"
    images = list((runs[0] / "files" / "media" / "images").rglob("*.png"))
    assert len(images) == 2 * 4, f"4 images per epoch for 2 epochs, found {len(images)}"
    assert list(runs[0].glob("*.wandb")), "the run's log file"
    del wandb


def test_wandb_asked_for_but_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(CourseError, match=r"pip install 'make-you-dangerous\[wandb\]'"):
        run(epochs=1, wandb_project="x")


@pytest.mark.parametrize(
    "shape,dtype", [((5, 28, 28, 1), np.uint8), ((3, 8, 10, 3), np.float32)], ids=["grey-bytes", "rgb-floats"]
)
def test_image_grid_draws_any_image_batch(tmp_path, shape, dtype):
    from course import plotting

    images = (np.random.default_rng(0).random(shape) * (255 if dtype == np.uint8 else 1)).astype(dtype)
    fig = plotting.image_grid(images, [f"#{i}" for i in range(shape[0])], wrong=np.arange(shape[0]) == 1, title="t")
    path = plotting.save(fig, tmp_path, "grid")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert [t.get_text() for t in fig.axes[0].texts] == [f"#{i}" for i in range(shape[0])]


def test_a_loss_that_is_not_a_batch_mean_gets_a_clear_error():
    def per_row_loss(logits, labels):
        return xent(logits, labels) * jnp.ones((logits.shape[0],))  # (B,), not ()

    x, y = data(10, jax.random.key(0))
    with pytest.raises(CourseError, match=r"per_row_loss returned shape \(1,\) for a batch of 1.*scalar"):
        fit_once(Tiny(rngs=nnx.Rngs(0)), (x, y), loss=per_row_loss)


TWO_DEVICES = r"""
import sys
import jax, numpy as np
sys.path.insert(0, sys.argv[1])
import test_training as t
from course import train_core
assert jax.device_count() == 2, jax.devices()
assert train_core.Devices.every(32, 1000).count == 2
model, history = t.run(epochs=2, n=100, batch_size=32)
leaves = [np.asarray(x) for x in jax.tree.leaves(t.nnx.state(model))]
np.savez(sys.argv[2], *leaves, val_accuracy=np.array(history["val_accuracy"]), loss=np.array(history["loss"]))
"""


def test_two_devices_train_like_one(tmp_path):
    """fit splits each batch over every device: with 2 (forced host) devices it trains as with 1, and ends."""
    import subprocess
    import sys
    from pathlib import Path

    env = {
        **os.environ,
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    out = tmp_path / "two.npz"
    done = subprocess.run(
        [sys.executable, "-c", TWO_DEVICES, str(Path(__file__).parent), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    two = np.load(out)
    model, history = run(epochs=2, n=100, batch_size=32)  # this process: one device
    assert jax.device_count() == 1
    one = [np.asarray(x) for x in jax.tree.leaves(nnx.state(model))]
    assert len(one) == len(two.files) - 2
    for i, leaf in enumerate(one):
        np.testing.assert_allclose(two[f"arr_{i}"], leaf, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(two["loss"], history["loss"], rtol=1e-5)
    np.testing.assert_allclose(two["val_accuracy"], history["val_accuracy"], atol=1e-6)


def test_an_epoch_as_one_program_trains_like_a_loop_of_steps():
    by_step, h_step = run(epochs=2, n=100, batch_size=32)
    by_epoch, h_epoch = run(epochs=2, n=100, batch_size=32, loop="epoch")
    assert_same_weights(by_step, by_epoch, atol=1e-6)
    np.testing.assert_allclose(h_step["loss"], h_epoch["loss"], rtol=1e-6)
    with pytest.raises(CourseError, match="loop must be"):
        run(epochs=1, loop="scan")


def test_an_epoch_as_one_program_trains_a_cnn_like_a_loop_of_steps():
    sgd = optax.sgd(0.1)  # not Adam, which would hide a gradient off by a constant factor
    by_step, h_step = run(epochs=2, n=100, batch_size=32, model_class=TinyConv, optimizer=sgd)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r"fit\(loop='epoch'\)")  # course.layers.conv2d: no fallback
        by_epoch, h_epoch = run(epochs=2, n=100, batch_size=32, model_class=TinyConv, optimizer=sgd, loop="epoch")
    assert_same_weights(by_step, by_epoch, atol=1e-5)
    np.testing.assert_allclose(h_step["loss"], h_epoch["loss"], rtol=1e-5)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the fallback is for XLA:CPU")
def test_an_epoch_loop_with_other_convolutions_falls_back_to_steps_on_a_cpu():
    """nnx.Conv's gradients in a scan would run XLA:CPU's generic convolution: fit says so and trains by steps."""
    by_step, h_step = run(epochs=2, n=100, batch_size=32, model_class=TinyNnxConv)
    with pytest.warns(UserWarning, match=r"loop='epoch'.*not course\.layers\.conv2d.*loop='steps'"):
        by_epoch, h_epoch = run(epochs=2, n=100, batch_size=32, model_class=TinyNnxConv, loop="epoch")
    assert_same_weights(by_step, by_epoch, rtol=0, atol=0)  # bit for bit
    assert h_step["loss"] == h_epoch["loss"]


def test_generic_convolutions_names_those_not_in_eigens_layout():
    def grad_in_scan(w, x):
        def body(w, xi):
            g = jax.grad(lambda w: jnp.sum(jax.lax.conv_general_dilated(xi, w, (1, 1), "VALID", dimension_numbers=dn)))
            return w - g(w), None

        return jax.lax.scan(body, w, x)[0]

    dn = ("NHWC", "HWIO", "NHWC")
    w, x = jnp.ones((2, 2, 1, 3)), jnp.ones((2, 4, 5, 5, 1))
    found = train_core.generic_convolutions(jax.jit(grad_in_scan).lower(w, x).as_text())
    assert found and all(numbers != train_core.EIGEN_CONVOLUTION for numbers in found)
    assert (
        train_core.generic_convolutions(jax.jit(lambda x, w: layers.conv2d(x, w, 0.0)).lower(x[0], w).as_text()) == []
    )
