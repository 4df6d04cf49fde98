"""Lab 10's CNN: our training against PyTorch's on the same machine, side by side, as ratios.

    python -m nox -s bench            # or: python benchmarks/bench_cnn.py [--train 60000] [--epochs 3]

PyTorch is an optional peer (``pip install torch``, the CPU build is enough); without it its rows
say "not installed". Both train the lecture's model (Conv 32, Conv 64, max-pool, dropout .25, Dense 128,
dropout .5, Dense 10) with Keras 2's Adadelta (1.0, .95, 1e-7), batch 128, on MNIST, using every CPU core.

1. Seconds per epoch, steady state: ``course.training.fit`` driving lab 10's step (data on the device,
   validation on the test split each epoch, compiling excluded and reported apart), once with a
   compiled call per step (``loop="steps"``, the default) and once with each epoch one compiled
   ``lax.scan`` (``loop="epoch"``), against a plain PyTorch loop doing the same (shuffled batches of 128,
   the last partial one kept, evaluation in batches of 1000). Epochs alternate between the three,
   ``--rounds`` times, and medians are compared, so that a busy machine slows all alike.
2. Milliseconds per training step on random data, for the choices that make ours fast: the
   straightforward ``nnx`` model (``nnx.Conv``, ``nnx.max_pool`` after the ReLU), the same compiled with
   ``course.layers.cpu_compiler_options`` (convolutions to Eigen), and the course's model (also pooling by
   strided slices, before the ReLU).

``--accuracy [--seeds 0 1 2]``: instead, the lecture's whole recipe (12 epochs, all of MNIST) for each
seed in both frameworks, and the mean and spread of the test accuracy: the recipe's figure, not one run's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if __name__ == "__main__":  # as `course run` does: start over with huge pages for malloc, where that helps
    from course.staff.hugepages import restart_with_hugepages

    restart_with_hugepages()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from course import labs, layers, mnist, training  # noqa: E402
from course.staff import hugepages
from course.train_core import TrainState  # noqa: E402

lab = labs.load_lab("lab10", "solutions")


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    return torch


def torch_model(torch):
    """The lecture's model in PyTorch, initialised as Keras does (Glorot-uniform kernels, zero biases)."""
    nn = torch.nn
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(9216, 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, 10),
    )
    for layer in net:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):  # PyTorch's own default is Kaiming-uniform, biases too
            nn.init.xavier_uniform_(layer.weight)  # fans include the receptive field, as Keras' glorot_uniform
            nn.init.zeros_(layer.bias)
    return net


class TorchRun:
    """The same recipe in plain PyTorch: NCHW float tensors in memory, one epoch per call."""

    def __init__(self, torch, data: mnist.Dataset, seed: int = 0):
        self.torch = torch
        torch.manual_seed(seed)
        to = lambda images: torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)  # noqa: E731
        self.x, self.y = to(data.train.images), torch.from_numpy(data.train.labels.astype(np.int64))
        self.xt, self.yt = to(data.test.images), torch.from_numpy(data.test.labels.astype(np.int64))
        self.net = torch_model(torch)
        self.opt = torch.optim.Adadelta(self.net.parameters(), lr=1.0, rho=0.95, eps=1e-7)

    def epoch(self) -> tuple[float, float]:
        torch, net = self.torch, self.net
        start = time.perf_counter()
        net.train()
        order = torch.randperm(len(self.y))
        for i in range(0, len(order), 128):
            idx = order[i : i + 128]
            self.opt.zero_grad()
            torch.nn.functional.cross_entropy(net(self.x[idx]), self.y[idx]).backward()
            self.opt.step()
        net.eval()
        with torch.no_grad():
            correct = sum(
                int((net(self.xt[i : i + 1000]).argmax(1) == self.yt[i : i + 1000]).sum())
                for i in range(0, len(self.yt), 1000)
            )
        return time.perf_counter() - start, correct / len(self.yt)


class OurRun:
    """``course.training.fit`` with lab 10's model, step and optimizer, resumed one epoch per call."""

    def __init__(self, data: mnist.Dataset, workdir: Path, seed: int = 0, loop: str = "steps"):
        self.data, self.workdir, self.seed, self.epochs, self.loop = data, workdir, seed, 0, loop
        self.compile_seconds = None

    def epoch(self) -> tuple[float, float]:
        self.epochs += 1
        model = lab.CNN(rngs=nnx.Rngs(self.seed))
        _, history = training.fit(
            model,
            self.data.train,
            self.data.test,
            loss=lab.loss,
            accuracy=lab.accuracy,
            preprocess=lab.normalize,
            optimizer=lab.adadelta(),
            make_step=lab.make_train_step,
            epochs=self.epochs,
            batch_size=128,
            key=jax.random.key(self.seed),
            workdir=self.workdir,
            log_images=0,
            progress=False,
            loop=self.loop,
        )
        # Each call resumes from the last checkpoint and compiles again: count only the epoch itself.
        self.compile_seconds = history["compile_seconds"][-1]
        return history["seconds"][-1] - history["compile_seconds"][-1], history["val_accuracy"][-1]


def mnist_subset(args) -> mnist.Dataset:
    """MNIST's first ``--train`` training and ``--test`` test examples (by default all of them)."""
    data = mnist.load("mnist")
    return data._replace(train=data.train.head(args.train), test=data.test.head(args.test))


def bench_epochs(args, torch) -> None:
    import tempfile

    data = mnist_subset(args)
    with tempfile.TemporaryDirectory() as workdir:
        runs = {loop: OurRun(data, Path(workdir) / loop, loop=loop) for loop in ("steps", "epoch")}
        theirs = TorchRun(torch, data) if torch else None
        times: dict[str, list[float]] = {"steps": [], "epoch": [], "torch": []}
        accs: dict[str, float] = {}
        compile_seconds: dict[str, list[float]] = {"steps": [], "epoch": []}
        for r in range(args.rounds):
            for _ in range(args.epochs):
                for loop, ours in runs.items():
                    seconds, accs[loop] = ours.epoch()
                    times[loop].append(seconds)
                    compile_seconds[loop].append(ours.compile_seconds)
                if theirs is not None:
                    seconds, accs["torch"] = theirs.epoch()
                    times["torch"].append(seconds)
                print(
                    f"  round {r + 1} epoch {runs['steps'].epochs}: ours {times['steps'][-1]:.2f} s, "
                    f"ours as one program per epoch {times['epoch'][-1]:.2f} s"
                    + (f", torch {times['torch'][-1]:.2f} s" if theirs else ""),
                    flush=True,
                )
    print(
        f"\nLab 10 CNN, batch 128, Adadelta 1.0: seconds per epoch (steady state, median of {len(times['steps'])}), "
        f"train {len(data.train.labels)}, validation {len(data.test.labels)}; {jax.devices()[0].platform}, "
        f"{os.cpu_count()} CPUs; CPU options {layers.cpu_compiler_options()}"
    )
    print(f"{'':<44} {'s/epoch':>9} {'ratio':>8} {'compile s':>10} {'val acc':>8}")
    torch_s = statistics.median(times["torch"]) if theirs is not None else None
    rows = [("steps", "course.training.fit + lab 10 step (JAX)"), ("epoch", "  the same, loop='epoch' (lax.scan)")]
    for loop, name in rows:
        ours_s = statistics.median(times[loop])
        ratio = f"{ours_s / torch_s:.2f}x" if torch_s else ""
        print(
            f"{name:<44} {ours_s:>9.2f} {ratio:>8} {statistics.median(compile_seconds[loop]):>10.2f} {accs[loop]:>8.4f}"
        )
    if theirs is None:
        print(f"{'peer: PyTorch':<44} {'not installed':>9}")
    else:
        print(
            f"{f'peer: PyTorch {torch.__version__}, {torch.get_num_threads()} threads':<44} {torch_s:>9.2f} "
            f"{'1.00x':>8} {'n/a':>10} {accs['torch']:>8.4f}"
        )
    print("(ratio: against PyTorch; below 1, ours is faster)")


# ------------------------------------------------------------------------------------- the whole recipe


def bench_accuracy(args, torch) -> None:
    """The lecture's whole recipe (12 epochs, all of MNIST) per seed in both frameworks: is 99.25 % the
    recipe's, or one run's? Ours is lab 10's ``train``, as ``course run lab10 --full --seed S`` runs it."""
    data = mnist_subset(args)
    ours, theirs = [], []
    for seed in args.seeds:
        start = time.perf_counter()
        _, history = lab.train(data, epochs=args.recipe_epochs, key=jax.random.key(seed), progress=False)
        ours.append(history["val_accuracy"][-1])
        line = f"  seed {seed}: ours {ours[-1]:.4f} ({time.perf_counter() - start:.0f} s)"
        if torch is not None:
            start, run = time.perf_counter(), TorchRun(torch, data, seed=seed)
            for _ in range(args.recipe_epochs):
                _, accuracy = run.epoch()
            theirs.append(accuracy)
            line += f", PyTorch {accuracy:.4f} ({time.perf_counter() - start:.0f} s)"
        print(line, flush=True)

    def spread(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        return (
            f"{statistics.mean(values):.4f} ± {sd:.4f}, {sum(v >= 0.9925 for v in values)} of {len(values)} >= 0.9925"
        )

    print(
        f"\nLab 10's recipe, {args.recipe_epochs} epoch{'s' * (args.recipe_epochs != 1)}, batch 128, Adadelta 1.0: test accuracy "
        f"(train {len(data.train.labels)}, test {len(data.test.labels)}; seeds {' '.join(map(str, args.seeds))})"
    )
    print(f"{'':<44} {'mean ± sd':>38}")
    print(f"{'course: lab 10 train() (JAX)':<44} {spread(ours):>38}")
    if torch is None:
        print(f"{'peer: PyTorch':<44} {'not installed':>38}")
    else:
        print(f"{f'peer: PyTorch {torch.__version__} (Keras init)':<44} {spread(theirs):>38}")
    print("(the seeds set different initial weights, batch orders and dropout masks in each framework)")


# ------------------------------------------------------------------------------------------ per step


class PlainCNN(nnx.Module):
    """The straightforward Flax version: nnx.Conv, ReLU, then nnx.max_pool (reduce_window)."""

    def __init__(self, *, rngs):
        glorot = nnx.initializers.glorot_uniform()
        self.conv1 = nnx.Conv(1, 32, (3, 3), padding="VALID", kernel_init=glorot, rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, (3, 3), padding="VALID", kernel_init=glorot, rngs=rngs)
        self.dense1 = nnx.Linear(9216, 128, kernel_init=glorot, rngs=rngs)
        self.dense2 = nnx.Linear(128, 10, kernel_init=glorot, rngs=rngs)

    def __call__(self, x, *, train=False, key=None):
        k1, k2 = jax.random.split(key)
        x = jax.nn.relu(self.conv2(jax.nn.relu(self.conv1(x))))
        x = nnx.max_pool(x, (2, 2), (2, 2))
        x = lab.dropout(x, rate=0.25, key=k1, train=train).reshape(x.shape[0], -1)
        x = lab.dropout(jax.nn.relu(self.dense1(x)), rate=0.5, key=k2, train=train)
        return self.dense2(x)


def step_time(model, options, steps: int, rounds: int) -> float:
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = lab.adadelta()
    step = lab.make_train_step(graphdef, tx)
    fn = jax.jit(lambda s, b, k: step(s, b, key=k), donate_argnums=0, compiler_options=options)
    kx, ky = jax.random.split(jax.random.key(0))
    batch = {
        "image": jax.random.uniform(kx, (128, 28, 28, 1)),
        "label": jax.random.randint(ky, (128,), 0, 10),
        "mask": jnp.ones((128,), bool),
    }
    state = TrainState(jnp.zeros((), jnp.int32), params, rest, tx.init(params))
    state, sums = fn(state, batch, jax.random.key(1))
    jax.block_until_ready(sums)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            state, sums = fn(state, batch, jax.random.key(1))
        jax.block_until_ready(sums)
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def torch_step_time(torch, steps: int, rounds: int) -> float:
    net = torch_model(torch)
    opt = torch.optim.Adadelta(net.parameters(), lr=1.0, rho=0.95, eps=1e-7)
    x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))
    times = []
    for r in range(rounds + 1):
        start = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        if r:  # the first round warms up
            times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def bench_steps(args, torch) -> None:
    options = layers.cpu_compiler_options()
    rows = [
        (
            "straightforward nnx (nnx.Conv, ReLU, nnx.max_pool)",
            lambda: step_time(PlainCNN(rngs=nnx.Rngs(0)), None, args.steps, args.step_rounds),
        ),
        (
            "  + convolutions to Eigen (course.layers option)",
            lambda: step_time(PlainCNN(rngs=nnx.Rngs(0)), options, args.steps, args.step_rounds),
        ),
        (
            "  + slice max-pool before ReLU (lab 10's CNN)",
            lambda: step_time(lab.CNN(rngs=nnx.Rngs(0)), options, args.steps, args.step_rounds),
        ),
    ]
    if torch is not None:
        rows.append(
            (f"peer: PyTorch {torch.__version__}", lambda: torch_step_time(torch, args.steps, args.step_rounds))
        )
    results = [(name, 1e3 * run()) for name, run in rows]
    base = results[-1][1] if torch is not None else None
    print(f"\nOne training step, batch 128, random data: milliseconds (median of {args.step_rounds} x {args.steps})")
    print(f"{'':<54} {'ms/step':>9} {'vs PyTorch':>11}")
    for name, ms in results:
        print(f"{name:<54} {ms:>9.1f} {f'{ms / base:.2f}x' if base else '':>11}")
    if torch is None:
        print(f"{'peer: PyTorch':<54} {'not installed':>9}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=60000, help="training examples (default: all 60000)")
    parser.add_argument("--test", type=int, default=10000, help="validation examples (default: all 10000)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per round and framework")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of alternating epochs")
    parser.add_argument("--steps", type=int, default=10, help="steps per timing in the per-step table")
    parser.add_argument("--step-rounds", type=int, default=5)
    parser.add_argument("--skip-steps", action="store_true", help="only the seconds-per-epoch table")
    parser.add_argument(
        "--accuracy", action="store_true", help="instead: the whole recipe per seed in both frameworks (slow)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds for --accuracy")
    parser.add_argument("--recipe-epochs", type=int, default=12, help="epochs for --accuracy (the lecture's 12)")
    args = parser.parse_args(argv)
    torch = torch_or_none()
    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind}; {os.cpu_count()} CPUs; "
        f"PyTorch {torch.__version__ if torch else 'not installed'}; {hugepages.describe()} (both frameworks)"
    )
    if args.accuracy:
        bench_accuracy(args, torch)
        return
    if not args.skip_steps:
        bench_steps(args, torch)
    bench_epochs(args, torch)


if __name__ == "__main__":
    main()
