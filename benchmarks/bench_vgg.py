"""Filter visualisation on VGG16 (lab 11): the whole layer batched, beside the Keras recipe's loops.

    python benchmarks/bench_vgg.py                       # block3_conv1, 128×128, 20 steps
    python benchmarks/bench_vgg.py --filters 256 --chunk 64 --loop-filters 16    # the full layer (a GPU)

Gradient ascent on the input for filters of one layer of the real VGG16 trunk (the HED weights in
``$COURSE_DATA_DIR/vgg16``), seconds per filter, compiling excluded (reported apart):
  * peer: the Keras recipe in JAX: a Python loop over filters and over steps, one jitted gradient
    step per call, one image at a time (what `conv_filter_visualization.py` does with `iterate`);
  * one jitted `gradient_ascent` (a `fori_loop` over the steps) per filter, a Python loop over filters;
  * `visualize_filters`: every filter in one jitted, vmapped program, `--chunk` filters in flight
    (the solution's steps are unrolled on a CPU, a `fori_loop` elsewhere);
  * the same batched program with the steps in a `fori_loop` (a while loop), on any device.
On a CPU the defaults time a sample of the layer's filters (every filter costs the same); on a GPU,
all of them. The peak resident memory of the process is printed to size ``--chunk``.

Then the pictures, plain against robust (lab 11 §5, ``course.featurevis``): for the lecture's three
layers at the demo's sizes (``--quality full``: 128 px and the full plan's steps), the first
``ROBUST_*[0]`` filters drawn by the lab's plain ascent and by ``robust_filters``; per layer, the mean
over filters of the share of spectral energy above half the Nyquist frequency of the deprocessed
image (``featurevis.high_frequency_fraction``) and of the activation reached (``filter_activation``,
border 2, on the final image, no jitter). ``--quality-only`` skips the timing.
"""

from __future__ import annotations

import argparse
import resource
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

from course import featurevis, labs, vgg16  # noqa: E402
from course.staff import hugepages


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layer", default="block3_conv1")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--filters", type=int, default=None, help="filters batched (default: all on a GPU, 4 on a CPU)")
    parser.add_argument("--chunk", type=int, default=None, help="filters in flight at once (default: all)")
    parser.add_argument(
        "--loop-filters", type=int, default=None, help="filters in the one-at-a-time loops (16 GPU, 1 CPU)"
    )
    parser.add_argument("--impl", default="solutions", help="whose visualize_filters to time (default: solutions)")
    parser.add_argument("--quality", choices=("quick", "full", "none"), default="quick", help="plain vs robust table")
    parser.add_argument("--quality-only", action="store_true", help="only the plain vs robust table")
    args = parser.parse_args(argv)
    if not args.quality_only:
        timing(args)
    if args.quality != "none":
        quality(labs.load_lab("lab11", args.impl), full=args.quality == "full")


def quality(lab, *, full: bool) -> None:
    """Plain ascent against the references' step, per layer: high-frequency energy and activation reached."""
    plan = lab.FULL if full else lab.QUICK
    n, steps, learning_rate = lab.ROBUST_FULL if full else lab.ROBUST_QUICK
    print(
        f"\nPlain ascent vs robust (lab 11 §5: Fourier, decorrelated, jitter/scale/rotation; Adam {steps} steps, "
        f"lr {learning_rate}), first {n} filters per layer, mean over filters"
    )
    print(
        f"{'layer':<14} {'size':>5} {'plain steps':>11} {'hf plain':>9} {'hf robust':>10} {'ratio':>6} "
        f"{'act plain':>10} {'act robust':>11} {'ratio':>6}"
    )
    for i, (layer, _, size, plain_steps) in enumerate(plan):
        before_relu = layer in lab.BEFORE_RELU
        features, params = vgg16.as_function(
            vgg16.pretrained("hed", until=layer), layer=layer, before_activation=before_relu
        )
        starts = lab.initial_images(n, size, key=jax.random.key(i))
        plain = np.asarray(
            lab.visualize_filters(features, params, jnp.arange(n), starts, steps=plain_steps, step_size=1.0)
        )
        robust = np.asarray(
            lab.robust_filters(
                features, params, n, size, steps=steps, learning_rate=learning_rate, key=jax.random.key(i)
            )
        )
        high, act = [], []
        for images in (plain, robust):
            high.append(np.mean([featurevis.high_frequency_fraction(lab.deprocess(x)) for x in images]))
            act.append(np.mean([float(lab.filter_activation(features, params, x, f)) for f, x in enumerate(images)]))
        print(
            f"{layer:<14} {size:>5} {plain_steps:>11} {high[0]:>9.3f} {high[1]:>10.3f} {high[1] / high[0]:>5.2f}x "
            f"{act[0]:>10.1f} {act[1]:>11.1f} {act[1] / act[0]:>5.2f}x",
            flush=True,
        )
    print(
        "(hf: share of the power spectrum of the deprocessed image above 0.25 cycles/pixel, white noise 0.80; "
        "act: filter_activation, border 2, on the final image; ratio: robust / plain)"
    )


def timing(args) -> None:
    """The table of seconds per filter: the Keras recipe's loops, one jitted ascent per filter, batched."""
    gpu = jax.default_backend() != "cpu"
    args.filters = args.filters or (256 if gpu else 4)
    args.loop_filters = args.loop_filters or (16 if gpu else 1)

    lab = labs.load_lab("lab11", args.impl)
    model = vgg16.pretrained("hed", until=args.layer)
    before_relu = args.layer in lab.BEFORE_RELU
    features, params = vgg16.as_function(model, layer=args.layer, before_activation=before_relu)
    starts = lab.initial_images(max(args.filters, args.loop_filters), args.size, key=jax.random.key(0))
    kw = dict(steps=args.steps, step_size=1.0)
    print(
        f"{args.layer} ({'before' if before_relu else 'after'} its ReLU), {args.size}×{args.size}, {args.steps} steps, "
        f"on {jax.devices()[0].device_kind} ({jax.default_backend().upper()}); {hugepages.describe()}",
        flush=True,
    )

    class Rows(list):  # each row is printed as it is measured, so a long run shows where it is
        def append(self, row):
            print(f"  {row[0]}: {row[1]:.3f} s per filter ({row[2]} filters)", flush=True)
            super().append(row)

    rows = Rows()

    # Peer: the Keras recipe, a Python loop over filters and steps around one jitted step.
    grad = jax.jit(jax.grad(lambda p, x, f: lab.filter_activation(features, p, x, f), argnums=1))

    @jax.jit
    def step(p, x, f):
        g = grad(p, x, f)
        return x + 1.0 * g / (jnp.sqrt(jnp.mean(g * g)) + 1e-5)

    start = time.perf_counter()
    jax.block_until_ready(step(params, starts[0], 0))
    compile_keras = time.perf_counter() - start
    start = time.perf_counter()
    for f in range(args.loop_filters):
        x = starts[f]
        for _ in range(args.steps):
            x = step(params, x, f)
        np.asarray(x)  # each filter's image comes back before the next starts, as in the recipe
    rows.append(
        (
            "Keras recipe: loop over filters and steps, jitted step",
            (time.perf_counter() - start) / args.loop_filters,
            args.loop_filters,
            compile_keras,
        )
    )

    # One jitted ascent per filter.
    ascent = jax.jit(lambda p, x, f: lab.gradient_ascent(features, p, x, f, **kw))
    start = time.perf_counter()
    jax.block_until_ready(ascent(params, starts[0], 0))
    compile_one = time.perf_counter() - start
    start = time.perf_counter()
    for f in range(args.loop_filters):
        np.asarray(ascent(params, starts[f], f))
    rows.append(
        (
            "loop over filters, one jitted gradient_ascent each",
            (time.perf_counter() - start) / args.loop_filters,
            args.loop_filters,
            compile_one,
        )
    )

    # Every filter at once.
    filters, images = jnp.arange(args.filters), starts[: args.filters]
    run = lambda: np.asarray(lab.visualize_filters(features, params, filters, images, chunk=args.chunk, **kw))  # noqa: E731
    start = time.perf_counter()
    run()  # compiles, then runs
    first = time.perf_counter() - start
    start = time.perf_counter()
    run()
    timed_run = time.perf_counter() - start
    compile_batched = first - timed_run
    chunk = f"chunk {args.chunk}" if args.chunk else "no chunks"
    rows.append(
        (
            f"visualize_filters: {args.filters} filters batched ({chunk})",
            timed_run / args.filters,
            args.filters,
            compile_batched,
        )
    )

    # The same batched program with the steps in a while loop (fori_loop, not unrolled): the lab's
    # solution unrolls them on a CPU, where XLA:CPU runs the loop 2-3x slower.
    grad_one = jax.grad(lambda p, x, f: lab.filter_activation(features, p, x, f), argnums=1)

    def rolled_one(p, x, f):
        def step(_, x):
            g = grad_one(p, x, f)
            return x + 1.0 * g / (jnp.sqrt(jnp.mean(g * g)) + 1e-5)

        return jax.lax.fori_loop(0, args.steps, step, x)

    if args.chunk:  # as visualize_filters does: at most --chunk filters in flight (memory grows with them)
        rolled = jax.jit(lambda p, xs, fs: jax.lax.map(lambda a: rolled_one(p, *a), (xs, fs), batch_size=args.chunk))
    else:
        rolled = jax.jit(jax.vmap(rolled_one, in_axes=(None, 0, 0)))
    start = time.perf_counter()
    np.asarray(rolled(params, images, filters))
    first = time.perf_counter() - start
    start = time.perf_counter()
    np.asarray(rolled(params, images, filters))
    timed_run = time.perf_counter() - start
    rows.append(
        (
            "the same batched, steps in a while loop (fori_loop)",
            timed_run / args.filters,
            args.filters,
            first - timed_run,
        )
    )

    base = rows[0][1]
    print(f"\n{'':<58} {'filters':>7} {'s/filter':>10} {'ms/filter':>10} {'speed-up':>9} {'compile s':>10}")
    for name, per, n, comp in rows:
        print(f"{name:<58} {n:>7} {per:>10.3f} {per * 1e3:>10.1f} {base / per:>8.1f}x {comp:>10.1f}")
    print(
        f"(speed-up: against the Keras recipe; compile s: first call minus a timed call, or the first step; peak resident memory of this process {peak_rss_gb():.1f} GB)"
    )
    ms = rows[2][1] * 1e3  # visualize_filters
    print(
        f"batched: {ms:.1f} ms per filter at {args.size}×{args.size} × {args.steps} steps "
        f"(the issue's goal on an H100: ≤ 2 ms)"
    )


if __name__ == "__main__":
    main()
