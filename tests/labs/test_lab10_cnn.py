"""Graded tests for lab 10, the lecture's CNN. References: layer arithmetic, Glorot's bound, a numpy forward
pass, Keras 2's Adadelta in numpy, and one training step recomputed here with ``jax.grad`` of a forward pass
written in this file.

The student's code runs through ``lab.f(...)`` (returns data) or ``lab.run(helper, ...)``, where a helper
of this file builds objects next to the student's code and sends back only arrays; every verdict is
computed here from those arrays. Images are tiny (10×10) except where the MNIST shape itself is the point.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from course.grader.testing import draw, expect, expect_close, expect_equal, expect_shape

LAYERS = ("conv1", "conv2", "dense1", "dense2")


# ------------------------------------------------------------------ helpers run beside the student's code


def _as_numpy(tree):
    return jax.tree.map(np.asarray, tree)


def _params(lab, in_shape, seed, rates=(0.25, 0.5)):
    """The parameters of a fresh CNN, as nested dicts of numpy arrays."""
    model = lab.CNN(rngs=nnx.Rngs(seed), in_shape=in_shape, rates=rates)
    return _as_numpy(nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def _shapes(lab, in_shape, classes):
    model = lab.CNN(rngs=nnx.Rngs(0), in_shape=in_shape, classes=classes)
    return {
        name: {k: list(v.shape) for k, v in layer.items()}
        for name, layer in nnx.to_pure_dict(nnx.state(model, nnx.Param)).items()
    }


def _forward(lab, in_shape, images, seed):
    """Parameters and test-mode logits of a fresh CNN."""
    model = lab.CNN(rngs=nnx.Rngs(seed), in_shape=in_shape)
    return _as_numpy(nnx.to_pure_dict(nnx.state(model, nnx.Param))), np.asarray(model(images))


def _forward_modes(lab, images, rates, keys):
    """Logits with train=False, then with train=True for each key."""
    model = lab.CNN(rngs=nnx.Rngs(0), in_shape=images.shape[1:], rates=rates)
    return [np.asarray(model(images))] + [np.asarray(model(images, train=True, key=k)) for k in keys]


def _optimizer_trajectory(lab, params, grads):
    """Parameters after each of a sequence of updates by the student's optimizer."""
    tx = lab.adadelta()
    state = tx.init(params)
    out = []
    for g in grads:
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
        out.append(np.asarray(params))
    return out


def _one_step(lab, batch, *, seed, rate, lr, steps_done, key):
    """One jitted call of the student's train step on a small model of this file (dense, ReLU, dropout,
    dense), so that the step is graded on its own; SGD at ``lr``: (params before, params after, step, sums)."""
    from course.train_core import TrainState

    optimizer = optax.sgd(lr)

    class Probe(nnx.Module):
        def __init__(self, n_in, *, rngs):
            self.hidden = nnx.Linear(n_in, 16, rngs=rngs)
            self.out = nnx.Linear(16, 10, rngs=rngs)

        def __call__(self, x, *, train=False, key=None):
            h = jax.nn.relu(self.hidden(x.reshape(x.shape[0], -1)))  # (B, 16)
            if train and rate > 0:
                h = jnp.where(jax.random.bernoulli(key, 1 - rate, h.shape), h / (1 - rate), 0.0)
            return self.out(h)  # (B, 10)

    model = Probe(int(np.prod(batch["image"].shape[1:])), rngs=nnx.Rngs(seed))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    state = TrainState(jnp.asarray(steps_done, jnp.int32), params, rest, optimizer.init(params))
    step = jax.jit(lambda s, b, k: lab.make_train_step(graphdef, optimizer)(s, b, key=k))
    new, sums = step(state, batch, key)
    return {
        "before": _as_numpy(nnx.to_pure_dict(params)),
        "after": _as_numpy(nnx.to_pure_dict(new.params)),
        "step": np.asarray(new.step),
        "sums": _as_numpy(dict(sums)),
    }


def _probe_logits(p, images, xp=np):
    """The probe model of ``_one_step`` without dropout."""
    x = images.reshape(images.shape[0], -1)
    h = xp.maximum(x @ p["hidden"]["kernel"] + p["hidden"]["bias"], 0.0)
    return h @ p["out"]["kernel"] + p["out"]["bias"]


def _cnn_steps(lab, batch, *, steps, lr):
    """The student's CNN trained by the student's step (Adam at ``lr``) on one batch: parameters before, after."""
    from course.train_core import TrainState

    optimizer = optax.adam(lr)
    model = lab.CNN(rngs=nnx.Rngs(0), in_shape=batch["image"].shape[1:])
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    state = TrainState(jnp.zeros((), jnp.int32), params, rest, optimizer.init(params))
    step = jax.jit(lambda s, b, k: lab.make_train_step(graphdef, optimizer)(s, b, key=k))
    for _ in range(steps):
        state, _ = step(state, batch, jax.random.key(0))
    return {"before": _as_numpy(nnx.to_pure_dict(params)), "after": _as_numpy(nnx.to_pure_dict(state.params))}


# ----------------------------------------------------------------------------- independent references


def _conv_valid(x, w, b, xp=np):
    """'valid' 3×3 cross-correlation by summing shifted products: (N, H, W, C), (KH, KW, C, F), (F,)."""
    kh, kw = w.shape[:2]
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = sum(xp.einsum("nhwc,cf->nhwf", x[:, u : u + oh, v : v + ow], w[u, v]) for u in range(kh) for v in range(kw))
    return out + b


def _pool2(x, xp=np):
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _reference_logits(p, images, xp=np):
    """The lecture's CNN (no dropout) from a parameter dict, in numpy (or jax.numpy for the gradient)."""

    def relu(z):
        return xp.maximum(z, 0.0)

    x = relu(_conv_valid(images, p["conv1"]["kernel"], p["conv1"]["bias"], xp))
    x = relu(_conv_valid(x, p["conv2"]["kernel"], p["conv2"]["bias"], xp))
    x = _pool2(x, xp).reshape(images.shape[0], -1)  # (B, H'·W'·64), row-major as Keras' Flatten
    x = relu(x @ p["dense1"]["kernel"] + p["dense1"]["bias"])
    return x @ p["dense2"]["kernel"] + p["dense2"]["bias"]


def _xent(logits, labels, xp=np):
    m = logits.max(axis=-1, keepdims=True)
    log_p = logits - m - xp.log(xp.exp(logits - m).sum(axis=-1, keepdims=True))
    return -xp.take_along_axis(log_p, labels[:, None], axis=-1)[:, 0]


def _conv_count(kh, kw, c_in, filters):
    return kh * kw * c_in * filters + filters  # weights, then one bias per filter


def _valid(n, k):
    return n - k + 1


# ------------------------------------------------------------------------------------------------ tests


def test_dropout_is_identity_when_not_training(lab, key):
    x = draw(jax.random.normal, key, (4, 6, 6, 3))
    expect_close(lab.dropout(x, rate=0.5, key=key, train=False), x, "dropout with train=False", atol=0.0)
    expect_close(lab.dropout(x, rate=0.0, key=key, train=True), x, "dropout with rate 0", atol=0.0)
    # ... and only then: training at rate 0.5, it is not the identity (some of the 432 units are dropped).
    dropped = np.asarray(lab.dropout(x, rate=0.5, key=key, train=True)) == 0
    expect(dropped.any(), "dropout with train=True and rate 0.5 returned every unit: it should drop about half")


@pytest.mark.points(2)
@pytest.mark.parametrize("rate", [0.25, 0.5])
def test_dropout_zeroes_a_fraction_and_rescales(lab, key, rate):
    x = jnp.full((200, 500), 3.0)
    got = np.asarray(lab.dropout(x, rate=rate, key=key, train=True))
    expect_shape(got, x.shape, "dropout output")
    kept = got != 0
    expect(
        np.allclose(got[kept], 3.0 / (1 - rate), rtol=1e-6),
        f"kept values should be x / (1 - rate) = {3.0 / (1 - rate):g}; got values {np.unique(got)[:5]}",
    )
    # 100 000 independent draws: the dropped fraction is within 0.01 of `rate` (7 standard deviations).
    expect_close(1 - kept.mean(), rate, f"fraction of zeros with rate={rate}", atol=0.01)
    again = np.asarray(lab.dropout(x, rate=rate, key=key, train=True))
    expect(np.array_equal(got, again), "the same key should give the same mask")
    other = np.asarray(lab.dropout(x, rate=rate, key=jax.random.fold_in(key, 1), train=True))
    expect(not np.array_equal(got, other), "a different key should give a different mask")


@pytest.mark.parametrize("in_shape,classes", [((28, 28, 1), 10), ((12, 10, 3), 5)], ids=["mnist", "small-rgb"])
def test_cnn_has_the_lecture_layers_and_parameter_count(lab, in_shape, classes):
    shapes = lab.run(_shapes, in_shape, classes)
    expect(set(shapes) == set(LAYERS), f"the CNN's layers should be named {LAYERS}; got {sorted(shapes)}")
    h, w, c = in_shape
    flat = (_valid(_valid(h, 3), 3) // 2) * (_valid(_valid(w, 3), 3) // 2) * 64  # two 3×3 'valid', pool 2
    want = {
        "conv1": {"kernel": (3, 3, c, 32), "bias": (32,)},
        "conv2": {"kernel": (3, 3, 32, 64), "bias": (64,)},
        "dense1": {"kernel": (flat, 128), "bias": (128,)},
        "dense2": {"kernel": (128, classes), "bias": (classes,)},
    }
    for name, layer in want.items():
        for k, shape in layer.items():
            expect_shape(np.empty(shapes[name].get(k, ())), shape, f"{name}.{k} for input {in_shape}")
    count = sum(int(np.prod(s)) for layer in shapes.values() for s in layer.values())
    arithmetic = _conv_count(3, 3, c, 32) + _conv_count(3, 3, 32, 64) + (flat + 1) * 128 + (128 + 1) * classes
    expect_equal(count, arithmetic, f"number of parameters for input {in_shape}")


def test_cnn_starts_like_keras(lab):
    """Glorot-uniform kernels (uniform in ±sqrt(6 / (fan_in + fan_out))), zero biases."""
    p = lab.run(_params, (28, 28, 1), 3)
    for name in LAYERS:
        kernel, bias = p[name]["kernel"], p[name]["bias"]
        expect_close(bias, np.zeros_like(bias), f"{name}.bias starts at zero", atol=0.0)
        receptive = int(np.prod(kernel.shape[:-2]))
        limit = np.sqrt(6.0 / (receptive * (kernel.shape[-2] + kernel.shape[-1])))
        expect(
            np.abs(kernel).max() <= limit * (1 + 1e-6),
            f"{name}.kernel: Glorot-uniform values lie within ±{limit:.4f}; found {np.abs(kernel).max():.4f}",
        )
        # A uniform on ±limit has standard deviation limit/√3; 288 values (conv1) give it to about 5 %.
        expect_close(
            kernel.std(), limit / np.sqrt(3), f"{name}.kernel standard deviation (Glorot-uniform)", atol=0.0, rtol=0.15
        )


@pytest.mark.points(2)
@pytest.mark.parametrize("in_shape,batch", [((10, 10, 1), 3), ((28, 28, 1), 2)], ids=["10x10", "mnist"])
def test_cnn_forward_is_the_lecture_network(lab, key, in_shape, batch):
    images = draw(jax.random.uniform, key, (batch, *in_shape))
    params, logits = lab.run(_forward, in_shape, images, 5)
    expect_shape(logits, (batch, 10), f"logits for a batch of {batch}")
    want = _reference_logits(params, np.asarray(images, np.float64))
    expect_close(
        logits,
        want,
        "logits (train=False) against a numpy forward pass of conv-relu-conv-relu-pool-flatten-dense-relu-dense",
        atol=1e-4,
        rtol=1e-4,
    )


def test_cnn_dropout_only_when_training(lab, key):
    images = draw(jax.random.uniform, key, (4, 10, 10, 1))
    k1, k2 = jax.random.split(key)
    test_mode, a, a_again, b = lab.run(_forward_modes, images, (0.25, 0.5), [k1, k1, k2])
    expect(np.array_equal(a, a_again), "train=True with the same key should give the same logits")
    expect(not np.allclose(a, b), "train=True with different keys should drop different units")
    expect(not np.allclose(a, test_mode), "train=True should apply dropout (logits differ from train=False)")
    off, *on = lab.run(_forward_modes, images, (0.0, 0.0), [k1])
    expect_close(on[0], off, "with rates (0, 0), train=True should equal train=False", atol=1e-6)


def test_adadelta_is_keras_2s(lab, key):
    """Keras 2: a = ρa + (1-ρ)g²; u = g·√(d + ε)/√(a + ε); d = ρd + (1-ρ)u²; p -= lr·u, lr 1, ρ .95, ε 1e-7."""
    kp, kg = jax.random.split(key)
    params = np.asarray(draw(jax.random.normal, kp, (5,)), np.float64)
    grads = np.asarray(draw(jax.random.normal, kg, (6, 5)), np.float64)
    got = lab.run(_optimizer_trajectory, jnp.asarray(params, jnp.float32), jnp.asarray(grads, jnp.float32))
    lr, rho, eps = 1.0, 0.95, 1e-7
    a = d = np.zeros(5)
    p = params
    for t, g in enumerate(grads):
        a = rho * a + (1 - rho) * g**2
        u = g * np.sqrt(d + eps) / np.sqrt(a + eps)
        d = rho * d + (1 - rho) * u**2
        p = p - lr * u
        expect_close(got[t], p, f"parameters after {t + 1} Adadelta update(s)", atol=1e-6, rtol=1e-3)


def _batch(key, n, real, in_shape=(10, 10, 1)):
    ki, kl = jax.random.split(key)
    return {
        "image": draw(jax.random.uniform, ki, (n, *in_shape)),
        "label": draw(jax.random.randint, kl, (n,), minval=0, maxval=10),
        "mask": jnp.arange(n) < real,
    }


@pytest.mark.points(3)
def test_train_step_is_one_gradient_step_on_the_real_examples(lab, key):
    """Dropout off, SGD: the new parameters are p - lr ∇(mean loss over the unmasked examples)."""
    batch = _batch(key, 6, real=4)
    lr = 0.5
    got = lab.run(_one_step, batch, seed=2, rate=0.0, lr=lr, steps_done=0, key=jax.random.key(0))
    before = got["before"]
    images, labels = np.asarray(batch["image"])[:4], np.asarray(batch["label"])[:4]

    def mean_loss(p):
        return jnp.mean(_xent(_probe_logits(p, jnp.asarray(images), jnp), jnp.asarray(labels), jnp))

    grads = jax.grad(mean_loss)(jax.tree.map(jnp.asarray, before))
    for name in ("hidden", "out"):
        for k in ("kernel", "bias"):
            want = before[name][k] - lr * np.asarray(grads[name][k])
            expect_close(
                got["after"][name][k],
                want,
                f"{name}.{k} after one SGD step (lr {lr}) on the 4 real examples of a batch of 6 (2 of padding)",
                atol=1e-5,
                rtol=1e-4,
            )
    expect_equal(got["step"], 1, "state.step after one step")
    logits = _probe_logits(before, images.astype(np.float64))
    sums = got["sums"]
    expect_close(sums["count"], 4.0, "sums['count']: the real examples", atol=0.0)
    expect_close(
        sums["loss"],
        _xent(logits, labels).sum(),
        "sums['loss']: summed loss of the real examples",
        atol=1e-4,
        rtol=1e-4,
    )
    expect_close(sums["correct"], float((logits.argmax(-1) == labels).sum()), "sums['correct']", atol=0.0)


@pytest.mark.points(2)
def test_train_step_dropout_masks_come_from_the_key_and_step(lab, key):
    batch = _batch(key, 8, real=8)
    k1, k2 = jax.random.key(1), jax.random.key(2)
    common = dict(seed=4, rate=0.5, lr=0.5)
    a = lab.run(_one_step, batch, steps_done=0, key=k1, **common)
    same = lab.run(_one_step, batch, steps_done=0, key=k1, **common)
    later = lab.run(_one_step, batch, steps_done=7, key=k1, **common)
    other = lab.run(_one_step, batch, steps_done=0, key=k2, **common)
    kernel = lambda r: r["after"]["hidden"]["kernel"]  # noqa: E731
    expect(np.array_equal(kernel(a), kernel(same)), "the same key and step should give the same update")
    expect(
        not np.allclose(kernel(a), kernel(later)),
        "a different state.step should draw different dropout masks (fold the step into the key)",
    )
    expect(not np.allclose(kernel(a), kernel(other)), "a different key should draw different dropout masks")
    expect_equal(later["step"], 8, "state.step after one step from step 7")


@pytest.mark.points(2)
def test_train_step_trains_the_cnn(lab, key):
    """Your step and your CNN together: twenty Adam steps on one small batch of 10×10 images fit it better."""
    batch = _batch(key, 16, real=16)
    got = lab.run(_cnn_steps, batch, steps=20, lr=3e-3)
    images, labels = np.asarray(batch["image"], np.float64), np.asarray(batch["label"])
    first = _xent(_reference_logits(got["before"], images), labels).mean()
    last = _xent(_reference_logits(got["after"], images), labels).mean()
    expect(
        last < 0.9 * first,
        f"the loss on the batch (recomputed here, no dropout) should fall by 10 %: "
        f"{first:.4f} before, {last:.4f} after 20 steps",
    )
