"""Benchmarks for real data and the shared training loop, each beside a plain peer, as ratios.

    python -m nox -s bench            # or: python benchmarks/bench_mnist.py [--epochs 5] [--repeat 5]

Loading 70k MNIST images as uint8 arrays:
  * course.mnist.load, cache warm (what every run after the first does);
  * peer: parsing the four IDX .gz files with gzip + numpy (a hand-rolled loader, every time);
  * peer: tfds.data_source over the prepared array_record files, reading every record.
  and once, the cold first load (verify, prepare with TFDS, cache), into a fresh temporary cache.

Seconds per epoch of the lecture's MLP (784-128-10, Adam 1e-3, batch 128), compiling excluded:
  * course.training.fit (data on the device, key-drawn permutations, masked last batch, metrics);
  * the same with a workdir (an Orbax checkpoint and a PNG prediction grid per epoch);
  * peer: a minimal hand-written loop (numpy batches from the host, last partial batch dropped).
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if __name__ == "__main__":  # as `course run` does: start over with huge pages for malloc, where that helps
    from course.staff.hugepages import restart_with_hugepages

    restart_with_hugepages()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from course import mnist, training  # noqa: E402
from course.idx import SOURCES  # noqa: E402
from course.staff import hugepages


def timed(fn, repeat: int) -> float:
    """Median wall time of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def table(title: str, rows: list[tuple[str, float]], unit: str, base: str) -> None:
    ref = dict(rows)[base]
    print(f"\n{title}")
    print(f"{'':<58} {unit:>10} {'ratio':>8}")
    for name, value in rows:
        print(f"{name:<58} {value:>10.3f} {value / ref:>7.2f}x")
    print(f"(ratio: against {base!r})")


def idx(path: Path) -> np.ndarray:
    data = gzip.open(path).read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def bench_loading(repeat: int) -> None:
    folder, _ = mnist.read_raw("mnist")
    mnist.load("mnist")  # make sure the default cache is warm
    names = [f.name for f in SOURCES["mnist"].files.values()]

    def tfds_read():
        import tensorflow_datasets as tfds

        from course import _tfds_builders

        for split in ("train", "test"):
            source = tfds.data_source(
                _tfds_builders.BUILDERS["mnist"], split=split, data_dir=str(mnist.cache_dir() / "tfds"), download=False
            )
            records = source.__getitems__(range(len(source)))
            np.stack([r["image"] for r in records])

    rows = [
        ("course.mnist.load, cache warm", timed(lambda: mnist.load("mnist"), repeat)),
        ("peer: gzip + numpy parse of the 4 IDX files", timed(lambda: [idx(folder / n) for n in names], repeat)),
        ("peer: tfds.data_source, read every record", timed(tfds_read, max(1, repeat // 3))),
    ]
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        mnist.load("mnist", cache=cache)
        rows.append(("course.mnist.load, first time (verify, TFDS prepare, cache)", time.perf_counter() - start))
    table("Loading MNIST (70k images, uint8)", rows, "seconds", "course.mnist.load, cache warm")


class MLP(nnx.Module):
    def __init__(self, *, rngs):
        self.hidden = nnx.Linear(784, 128, rngs=rngs)
        self.output = nnx.Linear(128, 10, rngs=rngs)

    def __call__(self, x):
        return self.output(jax.nn.relu(self.hidden(x.reshape(x.shape[0], -1))))


def xent(logits, labels):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=-1))


def acc(logits, labels):
    return jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))


def normalize(x):
    return x.astype(jnp.float32) / 255.0


def hand_loop(data: mnist.Dataset, epochs: int) -> None:
    """The loop of a typical tutorial: host-side numpy batches, last partial batch dropped."""
    graphdef, params = nnx.split(MLP(rngs=nnx.Rngs(0)))
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        def objective(p):
            return xent(nnx.merge(graphdef, p)(normalize(x)), y)

        value, grads = jax.value_and_grad(objective)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    x, y = data.train.images, data.train.labels
    rng = np.random.default_rng(0)
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for i in range(len(y) // 128):
            idx = order[i * 128 : (i + 1) * 128]
            params, opt_state, value = step(params, opt_state, x[idx], y[idx])
    value.block_until_ready()


def per_epoch(run, epochs: int) -> float:
    """Steady-state seconds per epoch: (wall(epochs) - wall(1)) / (epochs - 1), so compiling and
    setting up, which both runs pay once, cancel out; everything done per epoch is counted. A first,
    untimed run pays the one-time imports (matplotlib, Orbax)."""

    def wall(n):
        start = time.perf_counter()
        run(n)
        return time.perf_counter() - start

    run(1)
    return (wall(epochs) - wall(1)) / (epochs - 1)


def bench_training(epochs: int) -> None:
    data = mnist.load("mnist")
    kwargs = dict(
        loss=xent,
        accuracy=acc,
        preprocess=normalize,
        optimizer=optax.adam(1e-3),
        batch_size=128,
        key=jax.random.key(0),
        progress=False,
    )

    def fit(n, **extra):
        training.fit(MLP(rngs=nnx.Rngs(0)), data.train, data.test, epochs=n, **kwargs, **extra)

    def fit_logged(n):
        with tempfile.TemporaryDirectory() as workdir:
            fit(n, workdir=workdir, class_names=data.class_names)

    hand = per_epoch(lambda n: hand_loop(data, n), epochs)
    table(
        f"MNIST MLP 784-128-10, batch 128: seconds per epoch, steady state ({epochs} epochs vs 1), "
        f"{jax.devices()[0].platform}",
        [
            ("course.training.fit (incl. validation on 10k)", per_epoch(fit, epochs)),
            ("course.training.fit + checkpoint + PNG grid per epoch", per_epoch(fit_logged, epochs)),
            ("peer: hand-written loop (host batches, no validation)", hand),
        ],
        "s/epoch",
        "peer: hand-written loop (host batches, no validation)",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; {os.cpu_count()} CPUs; {hugepages.describe()}")
    bench_loading(args.repeat)
    bench_training(args.epochs)


if __name__ == "__main__":
    main()
