"""The benchmarks' own machinery (record.py's tables); their smoke runs are end-to-end runs (tests/e2e)."""

from __future__ import annotations

import pytest
from conftest import load_benchmark

pytestmark = pytest.mark.solutions_only  # benchmarks/ is in the staff repository, not the student bundle


def test_record_keeps_each_scripts_last_tables_with_where_and_when(tmp_path, capsys):
    record = load_benchmark("record")
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
