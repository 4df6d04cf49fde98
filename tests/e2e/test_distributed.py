"""``fit`` over several processes: two on this machine, CPU collectives (gloo), end where one process does.

Each process calls ``jax.distributed.initialize`` and runs lab 10's ``train`` (the lecture's CNN, its own
step, Adadelta) on the same small MNIST subset with the same key: ``jax.devices()`` then lists both
processes' CPUs, ``fit`` splits each global batch of 64 over them, and the parameters must come out as
one process's with the same global batch, up to float rounding (the gradient is summed in another order).
Multi-host GPU and TPU runs are the same code with other devices; they are documented, not tested here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.solutions_only, pytest.mark.slow]  # lab 10's solution trains the model

LOOPS = ("steps", "epoch")  # every loop shape fit offers
DEADLINE_S = 150  # all three processes together; a hang is killed and reported, never left to CI
TRAIN, TEST, BATCH, EPOCHS = 512, 200, 64, 2  # 8 steps an epoch: 32 examples per process per step


def worker(processes: int, rank: int, port: int, data: Path, out: Path) -> None:
    """One process of the run (``processes == 1``: the single-process reference); saves what it learned."""
    import jax

    if processes > 1:
        # gloo is jax 0.10's default for CPU collectives; named here, so a changed default cannot pass silently.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{port}",
            num_processes=processes,
            process_id=rank,
            initialization_timeout=60,
        )
    from flax import nnx

    from course import labs, mnist

    lab = labs.load_lab("lab10", "solutions")
    with np.load(data) as z:
        subset = mnist.Dataset(
            "mnist", mnist.Split(z["train_x"], z["train_y"]), mnist.Split(z["test_x"], z["test_y"]), tuple("0123456789")
        )
    arrays, report = {}, {"process_count": jax.process_count(), "devices": jax.device_count()}
    for loop in LOOPS:
        model, history = lab.train(
            subset, epochs=EPOCHS, batch_size=BATCH, key=jax.random.key(0), progress=False, loop=loop
        )
        for i, leaf in enumerate(jax.tree.leaves(nnx.state(model, nnx.Param))):
            arrays[f"{loop}_{i}"] = np.asarray(leaf)  # replicated: every process holds all of it
        report[loop] = {k: history[k] for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
    np.savez(out / f"params_{processes}_{rank}.npz", **arrays)
    (out / f"report_{processes}_{rank}.json").write_text(json.dumps(report))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(mnist_data_dir, tmp_path_factory):
    """The reference (one process) and both ranks of the two-process run, started together, bounded in time."""
    from course import mnist

    out = tmp_path_factory.mktemp("distributed")
    data = mnist.load("mnist", data_dir=mnist_data_dir)
    np.savez(
        out / "subset.npz",
        train_x=data.train.images[:TRAIN],
        train_y=data.train.labels[:TRAIN],
        test_x=data.test.images[:TEST],
        test_y=data.test.labels[:TEST],
    )
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("XLA_FLAGS", None)  # one CPU device per process: the two processes make the two devices
    jobs = {
        (n, rank): subprocess.Popen(
            [sys.executable, __file__, str(n), str(rank), str(port), str(out / "subset.npz"), str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for n, rank in [(2, 0), (2, 1), (1, 0)]
    }
    deadline = time.monotonic() + DEADLINE_S
    logs, failed = {}, []
    for name, job in jobs.items():
        try:
            logs[name] = job.communicate(timeout=max(1.0, deadline - time.monotonic()))[0]
        except subprocess.TimeoutExpired:
            for other in jobs.values():
                other.kill()  # only the processes this fixture started
            logs[name] = job.communicate()[0]
            failed.append(
                f"process {name} still running after {DEADLINE_S} s: killed (a hang in initialize or a collective?)"
            )
            break
        if job.returncode != 0:
            failed.append(f"process {name} exited with {job.returncode}")
    if failed:
        tails = "\n".join(f"--- process (processes, rank) = {k}:\n{v[-3000:]}" for k, v in logs.items())
        pytest.fail("DISTRIBUTED RUN FAILED: " + "; ".join(failed) + "\n" + tails, pytrace=False)
    return out


def _params(out: Path, n: int, rank: int, loop: str) -> list[np.ndarray]:
    with np.load(out / f"params_{n}_{rank}.npz") as z:
        return [
            z[k] for k in sorted((k for k in z.files if k.startswith(f"{loop}_")), key=lambda k: int(k.split("_")[1]))
        ]


def test_both_processes_see_both_devices(runs):
    for rank in (0, 1):
        report = json.loads((runs / f"report_2_{rank}.json").read_text())
        assert (report["process_count"], report["devices"]) == (2, 2), report
    assert json.loads((runs / "report_1_0.json").read_text())["devices"] == 1


@pytest.mark.parametrize("loop", LOOPS)
def test_two_processes_end_with_the_parameters_of_one(runs, loop):
    rank0, rank1, alone = (_params(runs, n, r, loop) for n, r in [(2, 0), (2, 1), (1, 0)])
    assert len(rank0) == len(alone) == 8  # conv1, conv2, dense1, dense2: kernel and bias each
    for a, b in zip(rank0, rank1):
        np.testing.assert_array_equal(a, b)  # one replicated array, read on each process
    for i, (got, want) in enumerate(zip(rank0, alone)):
        # 16 Adadelta steps where only the order of the gradient's sums differs. Each leaf is compared as a
        # whole: max pooling routes a gradient to the larger of two near-equal inputs, so rounding can move
        # one element's update (jax 0.10.2, this CPU: conv1's bias 7.7e-4 apart relative to its norm, the
        # dense layers under 1e-5). A wrong split (each batch's second half taken from another batch) ends 5.6e-2
        # (conv1's kernel) to 8.8e-1 (dense1's bias) apart, measured the same way.
        drift = np.linalg.norm(got - want) / np.linalg.norm(want)
        assert drift < 1e-2, f"leaf {i} {want.shape}: two processes end {drift:.1e} (relative) from one"


@pytest.mark.parametrize("loop", LOOPS)
def test_two_processes_report_the_history_of_one(runs, loop):
    two = json.loads((runs / "report_2_0.json").read_text())[loop]
    one = json.loads((runs / "report_1_0.json").read_text())[loop]
    for name in one:
        # An accuracy may move by one example whose two top logits were within rounding of each other.
        atol = 1.0 / TEST if name.endswith("accuracy") else 1e-5
        np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=atol, err_msg=name)


if __name__ == "__main__":
    worker(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
