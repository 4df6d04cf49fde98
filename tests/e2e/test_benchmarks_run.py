"""The benchmarks run: a smoke run of bench_cnn's accuracy table (lab 10 against its PyTorch peer), on a
real MNIST subset."""

from __future__ import annotations

import pytest
from conftest import load_benchmark

pytestmark = pytest.mark.solutions_only  # benchmarks/ is in the staff repository, not the student bundle


def test_bench_cnn_accuracy_prints_each_seed_and_the_spread(mnist_data_dir, capsys):
    bench = load_benchmark("bench_cnn")
    bench.main(["--accuracy", "--seeds", "0", "1", "--recipe-epochs", "1", "--train", "512", "--test", "256"])
    out = capsys.readouterr().out
    seeds = [line for line in out.splitlines() if line.startswith("  seed ")]
    assert [line.split(":")[0] for line in seeds] == ["  seed 0", "  seed 1"]
    row = next(line for line in out.splitlines() if line.startswith("course: lab 10 train() (JAX)"))
    mean, sd = float(row.split()[-8]), float(row.split()[-6].rstrip(","))
    accuracies = [float(line.split("ours ")[1].split()[0]) for line in seeds]
    assert mean == pytest.approx(sum(accuracies) / 2, abs=1e-4)
    assert sd == pytest.approx(abs(accuracies[0] - accuracies[1]) / 2**0.5, abs=2e-4)  # from rounded lines
    assert 0.1 < mean <= 1.0
    assert "peer: PyTorch" in out
