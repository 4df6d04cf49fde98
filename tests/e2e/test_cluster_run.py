"""A class of 20 graded on Dask distributed workers (`course grade --cluster local:2`), as the thread pool grades it.

Minutes on 2 cores (two gradings of the class, a looping submission waiting out its timeouts in each),
so `python -m nox -s e2e` runs it (tests/e2e/README.md).
"""

import csv
import json
import os
import re
import signal
import threading
import time
import zipfile

import pytest

from course import labs
from course.cli import main
from course.grader.batch import grade_class
from course.grader.cluster import connect

pytestmark = pytest.mark.solutions_only

LOOPS = "\ndef sigmoid(z):\n    while True:\n        pass\n"
CRASHES = "\nimport os\ndef step(z):\n    os._exit(3)\n"
WRONG = "\ndef sigmoid(z):\n    return z\n"
# At import, as a student who knows where the grades go: a mark beside them, and a pytest configuration
# in the folder above its own, then it solves the lab.
HOSTILE = """
import pathlib as _p
for _target in [_p.Path({out!r}) / "mallory-was-here", _p.Path(__file__).resolve().parents[1] / "conftest.py"]:
    try:
        _target.write_text("raise SystemExit")
    except OSError:
        pass
"""
SCORED = re.compile(r"\S+: [\d.]+/[\d.]+ in [\d.]+ s")  # a student's line once graded


def _make_class(folder, out, stub: str) -> dict[str, str]:
    """20 students of lab01, each a folder or a .zip: honest, stubs, one partly wrong, one that loops, one
    that ends its process, one hostile, one whose zip is not one. Returns each student's kind."""
    lab01 = labs.lab_files("solutions")["lab01"]
    solution = lab01.read_text()
    kinds = {}
    texts = {f"honest{i:02d}": solution for i in range(9)} | {f"stub{i:02d}": stub for i in range(5)}
    texts |= {"alice": solution, "wrong": solution + WRONG, "loops": solution + LOOPS, "crashes": solution + CRASHES}
    texts["mallory"] = solution + HOSTILE.format(out=str(out))
    for n, (student, text) in enumerate(sorted(texts.items())):
        kinds[student] = student.rstrip("0123456789")
        if n % 3 == 0:  # a zip, its lab in a folder of its own
            with zipfile.ZipFile(folder / f"{student}.zip", "w") as zf:
                zf.writestr(f"{student}/{lab01.name}", text)
        else:
            (folder / student).mkdir()
            (folder / student / lab01.name).write_text(text)
    (folder / "frank.zip").write_text("not a zip")
    kinds["frank"] = "not a zip"
    assert len(kinds) == 20
    return kinds


def _grade(capsys, subs, out, *how: str) -> tuple[float, list[str]]:
    start = time.perf_counter()
    # A timeout of 10 s: at 3 s and 5 s an honest lab01 timed out now and then on a loaded 2-core machine
    # (its first jax.grad compiled cold), which would make the two gradings differ by chance. A budget of
    # one timeout: the looping lab costs 10 s.
    settings = ["--timeout", "10", "--budget", "10", "--seed", "7"]
    status = main(["grade", "--submissions", str(subs), "--out", str(out), *settings, *how, "lab01"])
    seconds = time.perf_counter() - start
    printed = capsys.readouterr()
    assert status == 0, printed.out + printed.err
    return seconds, printed.out.splitlines()


def _scores(out) -> dict[str, dict]:
    """Each student's total and each test's (name, status, score), from the gradebook and results.json."""
    rows = {r["student"]: r for r in csv.DictReader((out / "gradebook.csv").open())}
    found = {}
    for student, row in rows.items():
        results = json.loads((out / student / "results.json").read_text())
        tests = [(t["name"], t["output"].split("\n")[0], t["score"]) for t in results["tests"]]
        found[student] = {"total": float(row["total"]), "max": float(row["max"]), "tests": tests}
    return found


def test_a_class_on_local_dask_workers_grades_as_the_thread_pool_and_resumes(tmp_path, capsys, fresh_stubs):
    tmp_path.chmod(0o755)  # the hostile's targets are beside the grades; as root it runs as nobody
    subs, on_cluster, in_threads = tmp_path / "subs", tmp_path / "cluster", tmp_path / "threads"
    subs.mkdir()
    lab01 = labs.lab_files("solutions")["lab01"]
    kinds = _make_class(subs, on_cluster, (fresh_stubs / lab01.name).read_text())

    cluster_s, lines = _grade(capsys, subs, on_cluster, "--cluster", "local:2")
    assert any(line.startswith("grading on 2 Dask worker(s) of the scheduler at tls://127.0.0.1:") for line in lines)
    threads_s, _ = _grade(capsys, subs, in_threads, "--jobs", "2")
    with capsys.disabled():
        print(f"\nthe class of {len(kinds)}: --cluster local:2 {cluster_s:.1f} s, --jobs 2 {threads_s:.1f} s")

    graded = _scores(on_cluster)
    assert set(graded) == set(kinds)
    full = graded["alice"]["max"]
    assert full > 0 and all(g["max"] in (full, 0) for g in graded.values())
    for student, kind in kinds.items():
        total = graded[student]["total"]
        if kind in ("honest", "alice", "mallory"):
            assert total == full, (student, graded[student])
        elif kind in ("stub", "not a zip"):
            assert total == 0, (student, graded[student])
        else:  # wrong, loops, crashes: what does not use the broken function still passes
            assert 0 < total < full, (student, graded[student])
    statuses = {s: {line for _, line, _ in graded[s]["tests"]} for s in ("loops", "crashes")}
    assert "**Timed out**" in statuses["loops"] and "**Crashed**" in statuses["crashes"]
    assert "frank.zip is not a zip file" in json.loads((on_cluster / "frank" / "results.json").read_text())["output"]
    if os.geteuid() == 0:  # its code ran as nobody, who can write none of it
        assert not (on_cluster / "mallory-was-here").exists()
    assert sum(bool(SCORED.fullmatch(line)) for line in lines) == len(kinds)
    # Every student's every test as the thread pool graded it.
    threads = _scores(in_threads)
    assert {s: g["total"] for s, g in graded.items()} == {s: g["total"] for s, g in threads.items()}
    assert {s: g["tests"] for s, g in graded.items()} == {s: g["tests"] for s, g in threads.items()}

    # Run again: nobody is resubmitted, and the gradebook is the same.
    before = (on_cluster / "gradebook.csv").read_text()
    _, lines = _grade(capsys, subs, on_cluster, "--cluster", "local:2")
    assert sorted(line.split(":")[0] for line in lines if line.endswith(": already graded")) == sorted(kinds)
    assert not [line for line in lines if SCORED.fullmatch(line)]
    assert (on_cluster / "gradebook.csv").read_text() == before


def test_a_submission_whose_worker_dies_is_not_graded_this_time_and_graded_the_next(tmp_path):
    """Its worker killed while it grades (a node preempted): the row says so and the run ends with its
    gradebook; nothing records it as graded, so the next run grades it."""
    dask = pytest.importorskip("dask")
    lab01 = labs.lab_files("solutions")["lab01"]
    (tmp_path / "subs" / "loops").mkdir(parents=True)
    (tmp_path / "subs" / "loops" / lab01.name).write_text(lab01.read_text() + LOOPS)  # a grading of 15 s or more
    out, lines = tmp_path / "grades", []

    def kill_the_worker_while_it_grades(client) -> None:
        deadline = time.monotonic() + 300
        while not any(client.processing().values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)
        [pid] = client.run(os.getpid).values()
        os.kill(pid, signal.SIGKILL)

    # No retry on another worker, so that one death is the task's end (Dask's default is 3 retries).
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        connect("local:1", log=lines.append) as cluster,
    ):
        killer = threading.Thread(target=kill_the_worker_while_it_grades, args=(cluster.client,))
        killer.start()
        gradebook = grade_class(tmp_path / "subs", out, labs=["lab01"], timeout=5, log=lines.append, workers=cluster)
        killer.join()
        results = json.loads((out / "loops" / "results.json").read_text())
        assert results["score"] == 0 and results["max_score"] > 0  # its tests at 0, each saying why
        assert all("the Dask worker grading it died" in t["output"] for t in results["tests"])
        assert "not graded: the Dask worker grading it died" in results["output"]
        assert "the next run grades it again" in results["output"]
        assert [r["total"] for r in csv.DictReader(gradebook.open())] == ["0"]
        assert not (out / "loops" / "grading.json").exists()

        cluster.client.wait_for_workers(1, timeout=120)  # its nanny starts it again
        lines.clear()
        grade_class(tmp_path / "subs", out, labs=["lab01"], timeout=5, log=lines.append, workers=cluster)
    results = json.loads((out / "loops" / "results.json").read_text())
    assert 0 < results["score"] < results["max_score"], results
    assert (out / "loops" / "grading.json").exists()
    assert not [line for line in lines if "already graded" in line]
