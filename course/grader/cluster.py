"""Grade a class on Dask distributed workers: each submission one task, the gradebook written here.

    course grade --submissions submissions/ --out grades/ --cluster local:4 lab01
    course grade --submissions submissions/ --out grades/ --cluster tcp://scheduler:8786 lab01

``local:N`` starts a ``distributed.LocalCluster`` of N worker processes (one thread each) on this
machine, listening on 127.0.0.1 only, over TLS with a key made for the run, with no dashboard; an
address joins a scheduler that is already running (one that dask-jobqueue starts on Slurm, or the Dask Helm chart on Kubernetes: docs/staff.md).

Workers share no file system with this machine: each task is sent the submission's bytes (a ``.zip``
as handed in, or a folder zipped in memory) and the grading settings, and sends back the student's
results.json as a dict (:func:`course.grader.batch.grade_submission`, run on the worker, in its own
temporary folder, with the worker's own warm compilation cache). Everything else, the fingerprints
that make a run resumable, results.json, grading.json and the gradebook, is
:func:`course.grader.batch.grade_class`'s, here. A task that fails (its worker died, an error on the
worker) is that student's row, "not graded", and is graded again by the next run.

A grade depends on the course's code, its graded tests, Python and the libraries: a worker whose
differ from this machine's is refused before anything is graded (and a task on a worker that
joined later, with a different course, fails that task only).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import logging
import platform
import socket
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import course
from course import labs as _labs
from course.errors import CourseError
from course.grader import privacy
from course.grader.batch import MAX_UNZIPPED_BYTES, Submission, grade_submission, not_graded
from course.grader.model import Report, Settings
from course.grader.runner import isolation_setting

CONNECT_TIMEOUT_S = 10.0  # a scheduler that does not answer in this time is not there
WORKERS_TIMEOUT_S = 120.0  # a scheduler with no worker yet (a batch job still queued) gets this long
# What a grade depends on besides the course's own files (their versions must match on every worker).
LIBRARIES = ("jax", "jaxlib", "numpy", "flax", "optax", "chex", "pytest", "cloudpickle")
INSTALL = (
    "install this same checkout of the course on every worker (`pip install -e . --group staff` in it, the "
    "same Python and libraries) and start the workers again"
)


def _distributed():
    """Dask distributed, imported when a class is graded on a cluster, and only then."""
    try:
        import distributed
    except ImportError:
        raise CourseError(
            "--cluster grades on Dask distributed, one of the staff's tools, which is not installed: "
            "pip install -e . --group staff"
        ) from None
    return distributed


def _temporary_security(distributed):
    """TLS with a certificate and key made now, in memory, for one LocalCluster and its client."""
    try:
        return distributed.security.Security.temporary()
    except ImportError:
        raise CourseError(
            "--cluster local:N keeps its workers to this command with TLS, which needs the cryptography "
            "package: pip install -e . --group staff"
        ) from None


def describe() -> dict[str, str]:
    """What grades depend on here besides the submission: the course's code and graded tests (hashes of
    their files), the Python and the libraries (versions)."""
    found = {
        "course": _hash(Path(course.__file__).parent, "**/*.py"),
        "graded tests": _hash(_labs.graded_tests_dir(), "test_lab*.py"),
        "python": platform.python_version(),
    }
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _hash(folder: Path, pattern: str) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.glob(pattern)):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def differences(here: dict[str, str], there: dict[str, str]) -> list[str]:
    """What differs between two :func:`describe`, in words: ``"jax 0.6.2 here, 0.6.1 there"``."""
    return [
        f"{key} {here.get(key)} here, {there.get(key)} there"
        for key in sorted(set(here) | set(there))
        if here.get(key) != there.get(key)
    ]


def grade_sent(name: str, data: bytes, labs: list[str] | None, settings: Settings, expected: dict[str, str]) -> dict:
    """On a worker: a submission sent as the bytes of a .zip named ``name``, graded here; its
    results.json as a dict (what :func:`course.grader.batch.grade_submission` returns)."""
    from course.grader.lab_plugin import sandbox_cache_for

    wrong = differences(expected, describe())
    if wrong:  # a worker that joined after the check at the start
        raise CourseError(f"the worker's course is not this one ({'; '.join(wrong)}): {INSTALL}")
    with tempfile.TemporaryDirectory(prefix="course-sent-") as tmp:
        path = Path(tmp) / Path(name).name
        path.write_bytes(data)
        # The worker's own warm cache: the solutions' compiled programs, filled by grading them once there.
        return grade_submission(
            Submission(path.stem, path), labs=labs, settings=settings, warm_cache=sandbox_cache_for("solutions")
        )


def _isolated(setting: str) -> bool:
    """On a worker: whether its sandboxes are isolated (``--isolation``; ``required`` refuses where not)."""
    return isolation_setting(setting, Report(impl="a worker"))


def pack(sub: Submission) -> tuple[str, bytes]:
    """What a worker is sent: a .zip's own name and bytes, or a folder zipped in memory (its files, a
    symbolic link only where it leads to a file inside the folder)."""
    if sub.path.is_file():
        return sub.path.name, sub.path.read_bytes()
    root = sub.path.resolve()
    files = [p for p in sorted(sub.path.rglob("*")) if p.is_file() and p.resolve().is_relative_to(root)]
    if sum(p.stat().st_size for p in files) > MAX_UNZIPPED_BYTES:
        raise CourseError(f"the folder holds more than {MAX_UNZIPPED_BYTES >> 20} MiB")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in files:
            zf.writestr(p.relative_to(sub.path).as_posix(), p.read_bytes())
    return f"{sub.student}.zip", buffer.getvalue()


class Cluster:
    """Dask workers that grade a class (:class:`course.grader.batch.Workers`), from :func:`connect`."""

    def __init__(self, client, spec: str) -> None:
        self.client = client
        self.spec = spec
        self.expected = describe()

    def check(self, sandbox_user: str, isolation: str, log) -> int:
        """Refuse workers whose course, tests, Python or libraries differ from this machine's, that cannot
        run the sandboxes as ``sandbox_user``, or cannot isolate them where ``isolation`` is required;
        warn where sandboxes run as the worker's own user. Returns the number of workers."""
        try:
            found = self.client.run(describe)
        except Exception as exc:  # noqa: BLE001 - whatever stops a worker from running the course
            raise CourseError(
                f"--cluster {self.spec}: the workers cannot run the course ({type(exc).__name__}: {exc}): {INSTALL}"
            ) from None
        wrong = [
            f"{worker}: {'; '.join(d)}" for worker, there in found.items() if (d := differences(self.expected, there))
        ]
        if wrong:
            raise CourseError(
                f"--cluster {self.spec}: {len(wrong)} of {len(found)} workers have another course than this "
                f"machine's, so their grades would not be this course's:\n  " + "\n  ".join(wrong) + f"\n{INSTALL}"
            )
        try:
            self.client.run(_isolated, isolation)
        except CourseError as exc:
            raise CourseError(f"--cluster {self.spec}: on the workers, {exc}") from None
        try:
            users = self.client.run(privacy.sandbox_user, sandbox_user)
        except Exception as exc:  # noqa: BLE001 - a user the workers do not have, or cannot switch to
            raise CourseError(f"--sandbox-user {sandbox_user} on the workers: {type(exc).__name__}: {exc}") from None
        if any(user is None for user in users.values()):
            log(
                "warning: on the workers the submissions' code runs as the workers' own user, who can write the "
                "course, the tests and the grades there: only workers run as root (the sandbox then runs as "
                "nobody) keep students from each other"
            )
        return len(found)

    def grade(
        self, pending: list[Submission], labs: list[str] | None, settings: Settings, log
    ) -> Iterator[tuple[Submission, dict, bool]]:
        """Each submission a task; yield ``(submission, results, final)`` as each is done. ``final`` is
        False for a task that failed (its worker died, an error there): not this submission's fault, so
        the next run grades it again."""
        distributed = _distributed()
        futures, failed = {}, []
        for sub in pending:
            try:
                name, data = pack(sub)
            except (CourseError, OSError) as exc:  # what this machine cannot read is that student's row
                failed.append((sub, exc))
                continue
            key = f"grade-{sub.student}-{uuid.uuid4().hex[:8]}"
            task = self.client.submit(grade_sent, name, data, labs, settings, self.expected, key=key, pure=False)
            futures[task] = sub
        for sub, exc in failed:
            yield sub, not_graded(sub, exc, labs, settings), True
        for future in distributed.as_completed(futures, loop=self.client.loop):
            sub = futures[future]
            try:
                results = future.result()
            except Exception as exc:  # noqa: BLE001 - a task that failed costs its row only, this run only
                why = (
                    f"the Dask worker grading it died ({exc})"
                    if isinstance(exc, distributed.KilledWorker)
                    else f"the grading failed on a Dask worker ({type(exc).__name__}: {exc})"
                )
                log(f"{sub.student}: not graded: {why}; run the command again to grade it")
                yield sub, not_graded(sub, f"{why}; the next run grades it again", labs, settings), False
                continue
            yield sub, results, True


def _local_workers(spec: str) -> int | None:
    """N for ``local:N``; None for a scheduler's address."""
    kind, sep, count = spec.partition(":")
    if kind != "local" or not sep:
        if "://" not in spec and ":" not in spec:
            raise CourseError(
                f"--cluster {spec}: give local:N (N worker processes on this machine) or the address of a "
                "running Dask scheduler, such as tcp://scheduler:8786"
            )
        return None
    if not count.isdigit() or int(count) < 1:
        raise CourseError(f"--cluster {spec}: local:N takes a number of worker processes, 1 or more (local:4)")
    return int(count)


def _reachable(address: str) -> None:
    """Fail at once, in words, where nothing listens at ``address`` (Dask itself would retry until its timeout)."""
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        host, port = parse_host_port(location)
    except ValueError as exc:
        raise CourseError(
            f"--cluster {address}: not a Dask scheduler's address ({exc}), e.g. tcp://host:8786"
        ) from None
    if scheme not in ("tcp", "tls"):
        return  # another transport (ucx, inproc): Dask's own connection says
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise CourseError(
            f"--cluster {address}: no Dask scheduler answers there ({exc.strerror or exc}); start one (docs/staff.md: "
            "on Slurm, dask-jobqueue; on Kubernetes, the Dask Helm chart) and give its address, or use local:N"
        ) from None


@contextlib.contextmanager
def connect(
    spec: str, *, sandbox_user: str = "auto", isolation: str = "required", log=print, wait_s: float = WORKERS_TIMEOUT_S
) -> Iterator[Cluster]:
    """Dask workers for ``course grade --cluster SPEC``, checked (:meth:`Cluster.check`); a LocalCluster
    started here ends with the block."""
    distributed = _distributed()
    count = _local_workers(spec)
    with contextlib.ExitStack() as stack:
        if count is None:
            address, security = spec, None  # Dask's configuration says how to reach it (TLS: docs/staff.md)
            _reachable(address)
        else:
            # A Dask scheduler runs whatever a client sends it, and a student's code can reach 127.0.0.1:
            # only the processes of this command hold the key of this TLS.
            security = _temporary_security(distributed)
            local = distributed.LocalCluster(
                n_workers=count,
                threads_per_worker=1,  # a grading uses a core's worth of processes of its own
                processes=True,
                host="127.0.0.1",  # nothing of it reachable from another machine
                protocol="tls://",
                security=security,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            stack.enter_context(local)
            address = local.scheduler_address
        try:
            client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False, security=security)
        except (OSError, TimeoutError) as exc:
            raise CourseError(f"--cluster {spec}: could not join the Dask scheduler at {address}: {exc}") from None
        stack.enter_context(client)
        if not client.scheduler_info().get("workers"):
            log(f"waiting up to {wait_s:g} s for the first worker of the scheduler at {address}")
            try:
                client.wait_for_workers(1, timeout=wait_s)
            except TimeoutError:
                raise CourseError(
                    f"--cluster {spec}: the scheduler at {address} has no worker after {wait_s:g} s; start workers "
                    "with the course installed (docs/staff.md)"
                ) from None
        cluster = Cluster(client, spec)
        workers = cluster.check(sandbox_user, isolation, log)
        log(f"grading on {workers} Dask worker(s) of the scheduler at {address}")
        yield cluster
