"""The benchmarks run: a seconds-long smoke run of bench_cnn's accuracy table, on a real MNIST subset."""

from __future__ import annotations

import importlib.util

import pytest

from course import labs

pytestmark = pytest.mark.solutions_only  # benchmarks/ is in the staff repository, not the student bundle


def load(name: str):
    path = labs.root() / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_cnn_accuracy_prints_each_seed_and_the_spread(mnist_data_dir, capsys):
    bench = load("bench_cnn")
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


def test_record_keeps_each_scripts_last_tables_with_where_and_when(tmp_path, capsys):
    record = load("record")
    readme = tmp_path / "README.md"
    for name, table in [("bench_b", "b 1"), ("bench_a", "a 1"), ("bench_b", "b 2")]:
        script = tmp_path / f"{name}.py"
        script.write_text(f"print({table!r})\n")
        assert record.main([str(script), "--flag"], readme=readme) == 0
    text = readme.read_text()
    assert text.startswith(record.TITLE)
    assert text.index("## `bench_a.py`") < text.index("## `bench_b.py`")  # sections in name order
    assert "a 1" in text and "b 2" in text and "b 1" not in text  # the last run of each script
    assert "`python benchmarks/bench_b.py --flag`" in text and "jax " in text and "cores" in text
    failing = tmp_path / "bench_a.py"
    failing.write_text("print('a 2'); raise SystemExit(3)\n")
    assert record.main([str(failing)], readme=readme) == 3
    assert readme.read_text() == text  # a failed run changes nothing
    assert "a 2" in capsys.readouterr().out  # but its output was shown
