"""The instructors' GPU report: lab 10 and lab 11 timed on this machine's backend, as Markdown and PNGs.

    python benchmarks/gpu.py --out gpu-report                  # everything (an H100/H200: under 8 minutes)
    python benchmarks/gpu.py --part mnist --out gpu-mnist      # lab 10 only: needs $COURSE_DATA_DIR/mnist
    python benchmarks/gpu.py --part vgg --out gpu-vgg          # lab 11 only: needs $COURSE_DATA_DIR/vgg16
    python benchmarks/gpu.py --smoke --out /tmp/gpu-smoke      # seconds on a CPU, tiny sizes (the test)

What it measures, into ``OUT/report.md`` (with ``OUT/*.png`` and ``OUT/results.json``):
  * lab 10: the lecture's CNN on all of MNIST through ``course.training.fit`` (Adadelta, batch 128, 12
    epochs, the data on the device), for each loop shape ``fit`` offers, in float32 and in bfloat16
    (parameters kept in float32), over as many seeds as ``--budget`` allows: seconds excluding
    compilation, compile seconds, test accuracy;
  * lab 11: every filter of block1_conv2, block3_conv1 and block4_conv1 at 128 px × 20 ascent steps,
    seconds per filter batched (``visualize_filters``) and one at a time (a jitted ``gradient_ascent``
    per filter);
  * the course's per-backend choices side by side (loop shape, pooling, convolution gradients in a
    loop, CPU compile options, unrolled ascent steps), and which one the course takes here.
The two parts can run in separate calls (``--part``): the device machine takes at most 64 MiB of
ignored files per command, and the VGG16 weights (56 MiB) and MNIST (11 MB) do not fit together.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the course from this working tree

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from course import labs, layers, mnist, plotting, train_core, training, vgg16  # noqa: E402

TARGET_LAB10_SECONDS = 1.0  # 12 epochs, compiling excluded
TARGET_LAB10_ACCURACY = 0.991
TARGET_LAB11_MS = 2.0  # per filter, 128 px × 20 steps, batched
LAB11_LAYERS = {"block1_conv2": 64, "block3_conv1": 256, "block4_conv1": 512}  # every filter of each
BF16_KEEPS = 0.001  # bfloat16 "keeps accuracy" when its mean test accuracy is within 0.1 pp of float32's

GPU_COMMANDS = """\
On the GPU machine (JAX with CUDA, no TFDS, no network), from the repository root of a copy of the
working tree. The data travel as git-ignored files (`.gpu-data/`), MNIST and VGG16 in separate calls
because one call carries at most 64 MiB:

```bash
# here, once: the data into the ignored folder the device tool carries
mkdir -p .gpu-data && cp -r "$COURSE_DATA_DIR/mnist" "$COURSE_DATA_DIR/vgg16" .gpu-data/
# the device tool, call 1: carry [".gpu-data/mnist"]
COURSE_DATA_DIR=.gpu-data COURSE_CACHE_DIR=/tmp/course-cache python benchmarks/gpu.py --part mnist --out "$OUT/gpu-mnist"
# the device tool, call 2: carry [".gpu-data/vgg16"]
COURSE_DATA_DIR=.gpu-data COURSE_CACHE_DIR=/tmp/course-cache python benchmarks/gpu.py --part vgg --out "$OUT/gpu-vgg"
```

With everything on one machine (no carry limit): `python benchmarks/gpu.py --out gpu-report`, or
`nox -s gpu -- --out gpu-report`."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Every size the report uses; ``smoke`` overrides them for a seconds-long CPU run."""

    train: int | None = None  # MNIST examples (None: all 60000 / 10000)
    test: int | None = None
    epochs: int = 12
    batch_size: int = 128
    max_seeds: int = 5
    budget_s: float = 240.0  # lab 10's seeds stop once this is spent
    size: int = 128  # lab 11's image side
    steps: int = 20  # lab 11's ascent steps
    filters: dict[str, int] = dataclasses.field(default_factory=lambda: dict(LAB11_LAYERS))
    one_at_a_time: int = 8  # filters timed one jitted call each (every filter costs the same)
    chunk: int | None = None  # filters in flight in visualize_filters (None: lab 11's CHUNK)
    micro_batch: int = 128  # the per-backend choices' batches
    micro_steps: int = 50
    smoke: bool = False


def get_config(*, smoke: bool, budget_s: float | None = None) -> Config:
    if smoke:
        return Config(
            train=256,
            test=128,
            epochs=1,
            max_seeds=1,
            budget_s=0.0,
            size=32,
            steps=2,
            filters={name: 2 for name in LAB11_LAYERS},
            one_at_a_time=1,
            chunk=2,
            micro_batch=16,
            micro_steps=2,
            smoke=True,
        )
    return Config() if budget_s is None else Config(budget_s=budget_s)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


# ------------------------------------------------------------------------------------------- lab 10


def bfloat16_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation):
    """Lab 10's step with the forward and backward pass in bfloat16: the parameters stay float32 (the
    optimizer updates those), cast to bfloat16 inside the loss; the loss itself is taken in float32."""

    def train_step(state: train_core.TrainState, batch: dict, *, key):
        weight = batch["mask"].astype(jnp.float32)  # (B,)
        step_key = jax.random.fold_in(key, state.step)

        def objective(params):
            half = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
            model = nnx.merge(graphdef, half, state.rest)
            logits = model(batch["image"].astype(jnp.bfloat16), train=True, key=step_key).astype(jnp.float32)
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])  # (B,)
            return jnp.sum(losses * weight) / jnp.maximum(jnp.sum(weight), 1.0), (logits, losses)

        (_, (logits, losses)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        correct = jnp.argmax(logits, axis=-1) == batch["label"]
        return train_core.TrainState(state.step + 1, params, state.rest, opt_state), train_core.batch_sums(
            losses, correct, weight
        )

    return train_step


def lab10_run(lab, data: mnist.Dataset, cfg: Config, *, loop: str, dtype: str, seed: int) -> dict:
    """Lab 10's recipe (``lab.train``'s, with the step in ``dtype``): one seed's seconds and accuracy."""
    k_init, k_fit = jax.random.split(jax.random.key(seed))
    model = lab.CNN(rngs=nnx.Rngs(k_init), in_shape=data.train.images.shape[1:])
    make_step = lab.make_train_step if dtype == "float32" else bfloat16_step
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, history = training.fit(
            model,
            data.train,
            data.test,
            loss=lab.loss,
            accuracy=lab.accuracy,
            preprocess=lab.normalize,
            optimizer=lab.adadelta(),
            make_step=make_step,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            key=k_fit,
            progress=False,
            loop=loop,
        )
    compile_s = sum(history["compile_seconds"])
    return {
        "loop": loop,
        "dtype": dtype,
        "seed": seed,
        "seconds": sum(history["seconds"]) - compile_s,
        "compile_seconds": compile_s,
        "accuracy": history["val_accuracy"][-1],
        "fell_back": any("loop='steps'" in str(w.message) for w in caught),  # fit's CPU fallback
    }


def lab10(cfg: Config) -> dict:
    """Every (loop, dtype) over seeds, round-robin, until ``cfg.budget_s`` is spent (one seed at least)."""
    lab = labs.load_lab("lab10", "solutions")
    data = mnist.load("mnist")
    if cfg.train is not None:
        data = data._replace(train=data.train.head(cfg.train), test=data.test.head(cfg.test))
    shapes = [(loop, dtype) for loop in ("steps", "epoch") for dtype in ("float32", "bfloat16")]
    runs, start, seed = [], time.perf_counter(), 0
    while seed < cfg.max_seeds:
        round_start = time.perf_counter()
        for loop, dtype in shapes:
            runs.append(lab10_run(lab, data, cfg, loop=loop, dtype=dtype, seed=seed))
            print(
                f"lab 10 {loop:>5} {dtype:<8} seed {seed}: {runs[-1]['seconds']:.2f} s, "
                f"compile {runs[-1]['compile_seconds']:.2f} s, accuracy {runs[-1]['accuracy']:.4f}",
                flush=True,
            )
        seed += 1
        spent, last = time.perf_counter() - start, time.perf_counter() - round_start
        if spent + last > cfg.budget_s:
            break
    rows = []
    for loop, dtype in shapes:
        mine = [r for r in runs if (r["loop"], r["dtype"]) == (loop, dtype)]
        rows.append(
            {
                "loop": loop,
                "dtype": dtype,
                "seeds": len(mine),
                "seconds": statistics.mean(r["seconds"] for r in mine),
                "seconds_sd": statistics.stdev([r["seconds"] for r in mine]) if len(mine) > 1 else 0.0,
                "compile_seconds": statistics.mean(r["compile_seconds"] for r in mine),
                "accuracy": statistics.mean(r["accuracy"] for r in mine),
                "accuracy_min": min(r["accuracy"] for r in mine),
                "fell_back": any(r["fell_back"] for r in mine),
            }
        )
    for row in rows:
        if row["dtype"] == "bfloat16":
            f32 = next(r for r in rows if (r["loop"], r["dtype"]) == (row["loop"], "float32"))
            row["keeps_accuracy"] = row["accuracy"] >= f32["accuracy"] - BF16_KEEPS
    return {
        "examples": (len(data.train.labels), len(data.test.labels)),
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "rows": rows,
        "runs": runs,
    }


# ------------------------------------------------------------------------------------------- lab 11


def lab11(cfg: Config) -> dict:
    """Seconds per filter of each layer: all its filters batched, and a sample one jitted call each."""
    lab = labs.load_lab("lab11", "solutions")
    chunk = cfg.chunk or lab.CHUNK
    rows = []
    for i, (layer, n) in enumerate(cfg.filters.items()):
        model = vgg16.pretrained("hed", until=layer)
        features, params = vgg16.as_function(model, layer=layer, before_activation=layer in lab.BEFORE_RELU)
        starts = lab.initial_images(n, cfg.size, key=jax.random.key(i))  # (n, size, size, 3)
        filters = jnp.arange(n)

        def batched():
            return lab.visualize_filters(features, params, filters, starts, steps=cfg.steps, step_size=1.0, chunk=chunk)

        first = _timed(batched)  # compiles, then runs
        seconds = _timed(batched)
        ascent = jax.jit(lambda p, x, f: lab.gradient_ascent(features, p, x, f, steps=cfg.steps, step_size=1.0))
        one_first = _timed(lambda: ascent(params, starts[0], 0))
        sample = min(cfg.one_at_a_time, n)
        start = time.perf_counter()
        for f in range(sample):
            np.asarray(ascent(params, starts[f], f))  # each image comes back before the next starts
        one = (time.perf_counter() - start) / sample
        rows.append(
            {
                "layer": layer,
                "filters": n,
                "batched_ms": seconds / n * 1e3,
                "batched_compile_s": max(first - seconds, 0.0),
                "one_ms": one * 1e3,
                "one_sample": sample,
                "one_compile_s": max(one_first - one, 0.0),
                "chunk": chunk,
            }
        )
        print(
            f"lab 11 {layer}: {rows[-1]['batched_ms']:.2f} ms/filter batched, {rows[-1]['one_ms']:.2f} one at a time",
            flush=True,
        )
    return {"size": cfg.size, "steps": cfg.steps, "rows": rows}


# --------------------------------------------------------------------------- the per-backend choices


def _pool_seconds(pool, cfg: Config) -> float:
    """Forward and backward of a 2×2 max-pool over lab 10's (B, 24, 24, 64) activations, seconds per call."""
    x = jax.random.normal(jax.random.key(0), (cfg.micro_batch, 24, 24, 64))  # (B, H, W, C)
    grad = layers.jit(jax.grad(lambda x: jnp.sum(pool(x) ** 2)))
    jax.block_until_ready(grad(x))
    return _timed(lambda: [grad(x) for _ in range(cfg.micro_steps)][-1]) / cfg.micro_steps


def _reduce_window_pool(x):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


@functools.cache
def _scan_step_seconds(lab, batch_size: int, steps: int, *, canonical: bool, options: tuple | None) -> float:
    """Lab 10's step ``steps`` times in one ``lax.scan`` (an epoch loop), seconds per step;
    ``options``: the compile options' items. Cached: two choices share the course's own setting."""
    data = mnist.load("mnist").train.head(batch_size * steps)
    model = lab.CNN(rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    optimizer = lab.adadelta()
    step = lab.make_train_step(graphdef, optimizer)
    state = train_core.TrainState(jnp.zeros((), jnp.int32), params, rest, optimizer.init(params))
    batches = train_core.batched(jnp.arange(len(data.labels)), batch_size)
    images, labels = jnp.asarray(data.images), jnp.asarray(data.labels.astype(np.int32))

    def run(state, images, labels, batches, key):
        def body(state, i):
            batch = train_core.take(images, labels, batches, i)
            state, _ = step(state, {**batch, "image": lab.normalize(batch["image"])}, key=key)
            return state, None

        with layers.canonical_backward(canonical):
            return jax.lax.scan(body, state, jnp.arange(steps))[0]

    data_args = (images, labels, batches)
    compiled = jax.jit(run, compiler_options=dict(options or ())).lower(state, *data_args, jax.random.key(0)).compile()
    if steps > 2:  # a warm-up call; not in a smoke run, where a step with XLA:CPU's generic convolution takes 1 s
        jax.block_until_ready(compiled(state, *data_args, jax.random.key(0)))
    return _timed(lambda: compiled(state, *data_args, jax.random.key(1))) / steps


def _items(options: dict | None) -> tuple | None:
    return tuple(sorted(options.items())) if options else None


def choices(cfg: Config, parts: set[str], lab10_result: dict | None) -> list[dict]:
    """Each per-backend choice the course makes, both sides timed here, and the side it takes here."""
    backend, cpu = jax.default_backend(), jax.default_backend() == "cpu"
    rows = []
    if lab10_result is not None:
        f32 = {r["loop"]: r["seconds"] for r in lab10_result["rows"] if r["dtype"] == "float32"}
        rows.append(
            {
                "choice": "fit's loop shape (lab 10's train, float32, whole run)",
                "short": ("loop shape", "steps", "epoch"),
                "a": "loop='steps'",
                "a_s": f32["steps"],
                "b": "loop='epoch'",
                "b_s": f32["epoch"],
                "course": "b (lab 10's train; fit's own default is 'steps')",
                "unit": "s",
            }
        )
    if "mnist" in parts:
        lab = labs.load_lab("lab10", "solutions")
        rows.append(
            {
                "choice": f"max-pool 2×2, forward + backward, ({cfg.micro_batch}, 24, 24, 64)",
                "short": ("max-pool", "strided slices", "reduce_window"),
                "a": "course.layers.max_pool (4 strided slices)",
                "a_s": _pool_seconds(layers.max_pool, cfg),
                "b": "lax.reduce_window",
                "b_s": _pool_seconds(_reduce_window_pool, cfg),
                "course": "a (every backend)",
                "unit": "s per call",
            }
        )
        rows.append(
            {
                "choice": f"lab 10 step in a lax.scan, batch {cfg.micro_batch}",
                "short": ("conv gradients in a scan", "as JAX writes", "canonical"),
                "a": "gradients as JAX writes them",
                "a_s": _scan_step_seconds(
                    lab,
                    cfg.micro_batch,
                    cfg.micro_steps,
                    canonical=False,
                    options=_items(layers.cpu_compiler_options()),
                ),
                "b": "canonical_backward (Eigen's layout)",
                "b_s": _scan_step_seconds(
                    lab, cfg.micro_batch, cfg.micro_steps, canonical=True, options=_items(layers.cpu_compiler_options())
                ),
                "course": "b on a CPU" if cpu else f"a on {backend}",
                "unit": "s per step",
            }
        )
        options = _items(layers.cpu_compiler_options())
        rows.append(
            {
                "choice": f"compile options, lab 10 step in a lax.scan, batch {cfg.micro_batch}",
                "short": ("compile options", "none", "YNN option"),
                "a": "none",
                "a_s": _scan_step_seconds(lab, cfg.micro_batch, cfg.micro_steps, canonical=cpu, options=None)
                if options
                else None,
                "b": f"{layers.YNN_OPTION} (CPU only)",
                "b_s": _scan_step_seconds(lab, cfg.micro_batch, cfg.micro_steps, canonical=cpu, options=options)
                if options
                else None,
                "course": "b on a CPU" if options else f"a on {backend} (the option is XLA:CPU's; not applicable)",
                "unit": "s per step",
            }
        )
    if "vgg" in parts:
        lab = labs.load_lab("lab11", "solutions")
        layer, n = "block1_conv2", min(cfg.filters["block1_conv2"], 64)
        features, params = vgg16.as_function(vgg16.pretrained("hed", until=layer), layer=layer)
        starts, filters = lab.initial_images(n, cfg.size, key=jax.random.key(0)), jnp.arange(n)
        grad = jax.grad(lambda p, x, f: lab.filter_activation(features, p, x, f), argnums=1)

        def ascent(unroll: bool):
            def one(x, f):
                def step(_, x):
                    g = grad(params, x, f)
                    return x + g / (jnp.sqrt(jnp.mean(g * g)) + 1e-5)

                return jax.lax.fori_loop(0, cfg.steps, step, x, unroll=unroll)

            run = jax.jit(jax.vmap(one))
            jax.block_until_ready(run(starts, filters))
            return _timed(lambda: run(starts, filters)) / n

        rows.append(
            {
                "choice": f"lab 11 ascent steps, {layer}, {n} filters batched, {cfg.size} px × {cfg.steps}",
                "short": ("lab 11 ascent steps", "fori_loop", "unrolled"),
                "a": "fori_loop (a while loop)",
                "a_s": ascent(False),
                "b": "unrolled",
                "b_s": ascent(True),
                "course": "b on a CPU" if cpu else f"a on {backend}",
                "unit": "s per filter",
            }
        )
    return rows


# ------------------------------------------------------------------------------------------- report


def _versions() -> dict[str, str]:
    out = {}
    for name in ("jax", "jaxlib", "flax", "optax"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def targets(cfg: Config, lab10_result: dict | None, lab11_result: dict | None) -> list[tuple[str, str, str]]:
    """(target, what was measured, met / not met / not measured (why))."""
    rows = []
    goal = f"lab 10: 12 epochs ≤ {TARGET_LAB10_SECONDS:g} s excluding compile at ≥ {TARGET_LAB10_ACCURACY:.1%} accuracy"
    if lab10_result is None:
        rows.append((goal, "—", "not measured (--part vgg)"))
    else:
        best = min(lab10_result["rows"], key=lambda r: r["seconds"])
        good = [r for r in lab10_result["rows"] if r["accuracy"] >= TARGET_LAB10_ACCURACY]
        fastest_good = min(good, key=lambda r: r["seconds"]) if good else None
        shown = fastest_good or best
        measured = (
            f"{shown['seconds']:.2f} s, {shown['accuracy']:.2%} ({shown['loop']}, {shown['dtype']}, "
            f"{shown['seeds']} seed{'s' * (shown['seeds'] > 1)})"
        )
        if cfg.smoke:
            verdict = "not measured (smoke)"
        else:
            met = fastest_good is not None and fastest_good["seconds"] <= TARGET_LAB10_SECONDS
            verdict = "met" if met else "not met"
        rows.append((goal, measured, verdict))
    goal = f"lab 11: ≤ {TARGET_LAB11_MS:g} ms per filter (128 px × 20 steps, batched)"
    if lab11_result is None:
        rows.append((goal, "—", "not measured (--part mnist)"))
    else:
        worst = max(lab11_result["rows"], key=lambda r: r["batched_ms"])
        measured = f"{worst['batched_ms']:.2f} ms (slowest layer, {worst['layer']})"
        verdict = (
            "not measured (smoke)"
            if cfg.smoke
            else ("met" if all(r["batched_ms"] <= TARGET_LAB11_MS for r in lab11_result["rows"]) else "not met")
        )
        rows.append((goal, measured, verdict))
    return rows


def _epochs(n: int) -> str:
    return f"{n} epoch{'s' * (n != 1)}"


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "not applicable"
    if unit.startswith("s per"):
        return f"{value * 1e3:.3f} ms"
    return f"{value:.2f} s"


def figures(out: Path, lab10_result: dict | None, lab11_result: dict | None, choice_rows: list[dict]) -> list[Path]:
    """Bar charts of seconds: lab 10 per configuration, lab 11 per layer, the choices side by side."""
    from matplotlib import ticker

    paths = []
    if lab10_result is not None:
        rows = lab10_result["rows"]
        fig, (ax,) = plotting.figure(1, size=6.0)
        names = [f"{r['loop']}\n{r['dtype']}" for r in rows]
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r["seconds"] for r in rows], 0.4, yerr=[r["seconds_sd"] for r in rows], label="training")
        ax.bar(x + 0.2, [r["compile_seconds"] for r in rows], 0.4, label="compiling")
        ax.set(xticks=x, xticklabels=names, ylabel="seconds", title=f"lab 10, {_epochs(lab10_result['epochs'])}")
        for xi, r in zip(x, rows):
            ax.annotate(f"{r['accuracy']:.2%}", (xi - 0.2, r["seconds"]), ha="center", va="bottom", fontsize=8)
        ax.legend()
        paths.append(plotting.save(fig, out, "lab10_seconds", show=False))
    if lab11_result is not None:
        rows = lab11_result["rows"]
        fig, (ax,) = plotting.figure(1, size=6.0)
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r["batched_ms"] for r in rows], 0.4, label="batched (visualize_filters)")
        ax.bar(x + 0.2, [r["one_ms"] for r in rows], 0.4, label="one at a time (jitted gradient_ascent)")
        ax.axhline(TARGET_LAB11_MS, color="k", linestyle="--", linewidth=1, label=f"target {TARGET_LAB11_MS:g} ms")
        ax.set(xticks=x, xticklabels=[r["layer"] for r in rows], ylabel="ms per filter", yscale="log")
        ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(ticker.FormatStrFormatter("%g"))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_title(f"lab 11, {lab11_result['size']} px × {lab11_result['steps']} steps")
        ax.legend(fontsize=8)
        paths.append(plotting.save(fig, out, "lab11_ms_per_filter", show=False))
    measured = [r for r in choice_rows if r["a_s"] is not None]
    if measured:
        fig, axes = plotting.figure(len(measured), size=3.6)
        for ax, r in zip(np.ravel(axes), measured):
            scale = 1e3 if r["unit"].startswith("s per") else 1.0
            ax.bar([0, 1], [r["a_s"] * scale, r["b_s"] * scale], color=["tab:gray", "tab:blue"])
            title, a, b = r["short"]
            taken = r["course"][0]  # "a …" or "b …"
            ax.set_xticks([0, 1], [a + " *" * (taken == "a"), b + " *" * (taken == "b")], fontsize=8)
            ax.set_ylabel("ms" if scale == 1e3 else "s")
            ax.set_title(title, fontsize=9)
        fig.suptitle("the course's per-backend choices (* the one it takes here)")
        paths.append(plotting.save(fig, out, "choices", show=False))
    return paths


def write_report(out: Path, cfg: Config, parts: set[str], lab10_result, lab11_result, choice_rows, wall) -> Path:
    device = jax.devices()[0]
    versions = _versions()
    lines = [
        "# Make You Dangerous on this backend" + (" (smoke run: tiny sizes, not a measurement)" if cfg.smoke else ""),
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- backend: {jax.default_backend()}; device kind: {device.device_kind}; devices: {jax.device_count()}",
        f"- parts: {', '.join(sorted(parts))}; command: `python benchmarks/gpu.py {' '.join(sys.argv[1:])}`",
        "- wall seconds: " + ", ".join(f"{name} {seconds:.0f}" for name, seconds in wall.items()),
        "",
        "## Targets",
        "",
        "Lab 10's is met when some configuration below (loop shape, dtype) averages both over its seeds; the "
        "measured column shows the fastest that reaches the accuracy (else the fastest). Lab 11's is met when "
        "every layer's batched time is within it.",
        "",
        "| target | measured | verdict |",
        "| --- | --- | --- |",
        *(
            f"| {goal} | {measured} | {verdict} |"
            for goal, measured, verdict in targets(cfg, lab10_result, lab11_result)
        ),
        "",
    ]
    if lab10_result is not None:
        n_train, n_test = lab10_result["examples"]
        lines += [
            "## Lab 10: the lecture's CNN on MNIST",
            "",
            f"`course.training.fit` with lab 10's solution (its CNN, its step, Adadelta 1.0), batch "
            f"{lab10_result['batch_size']}, {_epochs(lab10_result['epochs'])}, {n_train} training and {n_test} "
            "test images on the device. Seconds: the run's wall time (training and each epoch's validation) "
            "less compiling; accuracy: on the test images after the last epoch. bfloat16: the forward and "
            "backward pass in bfloat16, the parameters and their updates in float32.",
            "",
            "| loop | dtype | seeds | seconds (excl. compile) | compile s | test accuracy (mean, min) | note |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in lab10_result["rows"]:
            notes = []
            if "keeps_accuracy" in r:
                notes.append("keeps accuracy" if r["keeps_accuracy"] else "loses accuracy (> 0.1 pp)")
            if r["fell_back"]:
                notes.append("fit fell back to loop='steps' (CPU, generic convolutions)")
            lines.append(
                f"| {r['loop']} | {r['dtype']} | {r['seeds']} | {r['seconds']:.2f} ± {r['seconds_sd']:.2f} | "
                f"{r['compile_seconds']:.2f} | {r['accuracy']:.2%}, {r['accuracy_min']:.2%} | {'; '.join(notes)} |"
            )
        lines += ["", "![lab 10 seconds](lab10_seconds.png)", ""]
    if lab11_result is not None:
        lines += [
            "## Lab 11: VGG16 filter visualisation",
            "",
            f"Gradient ascent on the input, {lab11_result['size']} px × {lab11_result['steps']} steps, the HED "
            "VGG16 weights. Batched: every filter of the layer in one `visualize_filters` call (chunk = filters "
            "in flight); one at a time: a jitted `gradient_ascent` per filter, on a sample of filters (each "
            "costs the same). Compiling excluded (a first call's time minus a timed call's).",
            "",
            "| layer | filters | batched ms/filter | chunk | compile s | one at a time ms/filter (sample) | compile s |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in lab11_result["rows"]:
            lines.append(
                f"| {r['layer']} | {r['filters']} | {r['batched_ms']:.2f} | {r['chunk']} | "
                f"{r['batched_compile_s']:.2f} | {r['one_ms']:.2f} ({r['one_sample']}) | {r['one_compile_s']:.2f} |"
            )
        lines += ["", "![lab 11 ms per filter](lab11_ms_per_filter.png)", ""]
    if choice_rows:
        lines += [
            "## The course's per-backend choices, side by side",
            "",
            "| choice | a | time a | b | time b | the course takes here |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in choice_rows:
            lines.append(
                f"| {r['choice']} | {r['a']} | {_fmt(r['a_s'], r['unit'])} | {r['b']} | {_fmt(r['b_s'], r['unit'])} "
                f"| {r['course']} |"
            )
        lines += ["", "![choices](choices.png)", ""]
    lines += ["## Running it on a GPU", "", GPU_COMMANDS, ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out", type=Path, default=Path("gpu-report"), help="the report's folder: report.md, PNGs, results.json"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="seconds on a CPU, tiny sizes: checks the report, measures nothing"
    )
    parser.add_argument(
        "--part", choices=("mnist", "vgg", "all"), default="all", help="lab 10 (MNIST), lab 11 (VGG16), or both"
    )
    parser.add_argument("--budget", type=float, default=None, help="seconds for lab 10's seeds (default 240)")
    args = parser.parse_args(argv)
    cfg = get_config(smoke=args.smoke, budget_s=args.budget)
    parts = {"mnist", "vgg"} if args.part == "all" else {args.part}
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print(f"benchmarks/gpu.py: {sorted(parts)} on {jax.devices()[0].device_kind} ({jax.default_backend()})", flush=True)
    wall = {}

    def part(name: str, fn: Callable[[], object]):
        begin = time.perf_counter()
        result = fn()
        wall[name] = time.perf_counter() - begin
        return result

    lab10_result = part("lab 10", lambda: lab10(cfg)) if "mnist" in parts else None
    lab11_result = part("lab 11", lambda: lab11(cfg)) if "vgg" in parts else None
    choice_rows = part("choices", lambda: choices(cfg, parts, lab10_result))
    figures(args.out, lab10_result, lab11_result, choice_rows)
    wall["total"] = time.perf_counter() - start
    path = write_report(args.out, cfg, parts, lab10_result, lab11_result, choice_rows, wall)
    results = {"config": dataclasses.asdict(cfg), "lab10": lab10_result, "lab11": lab11_result, "choices": choice_rows}
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"report: {path} ({time.perf_counter() - start:.0f} s)", flush=True)
    return path


if __name__ == "__main__":
    main()
