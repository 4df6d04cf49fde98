"""What runs inside the sandbox: the student's lab, driven by requests from the trusted test process.

A sandbox is a process forked from a server (:mod:`course.grader.forkserver`) that has JAX, Flax and
Optax already imported (so a new one starts in milliseconds). It contains itself before touching student code: a session and process
group of its own (the grader kills the whole group), resource limits (address space, processes, no
core files), its output sent to a pipe the grader caps, and — when the grader runs as root — the
identity of an unprivileged user, who cannot write the tests, the course code or the results.

Then it imports the lab and serves requests, one at a time. A request comes from the trusted side
(pickled: the test's own functions may travel); the answer goes back in :mod:`course.grader.wire`'s
data format, never pickle: a value, or an exception described as data. JAX runs with its defaults,
as in a notebook; implicit rank promotion is only watched, and reported as a hint.
"""

from __future__ import annotations

import os
import pickle
import resource
import sys
import traceback
import warnings

import jax
import numpy as np

from course.grader import wire

_module = None  # the student's lab, once imported


def lab_attribute(name: str):
    """What ``lab.NAME`` in a test refers to, resolved here (a test may pass ``lab.relu`` as an argument)."""
    if _module is None:
        raise RuntimeError("the lab could not be imported")
    return getattr(_module, name)


# ---------------------------------------------------------------------------------------------------
# Containment, then the loop.


def main(config: dict, requests_fd: int, responses_fd: int, output_fd: int) -> None:
    """The sandbox's entry point, in a child of the fork server. Never returns normally."""
    os.setsid()  # our own session and process group: the grader kills the group, children included
    if config.get("isolate"):  # namespaces of its own (course.grader.isolation); a refusal ends it here
        from course.grader import isolation

        root = os.geteuid() == 0
        try:
            identity = isolation.enter(
                lab_path=config["lab_path"],
                workdir=config["workdir"],
                uid=config.get("uid"),
                gid=config.get("gid"),
                cache=config.get("cache"),
            )
        except OSError as exc:
            os.write(output_fd, f"the sandbox could not isolate itself: {exc}\n".encode())
            os._exit(isolation.FAILED)
        config["uid"], config["gid"] = identity if root else (None, None)  # a user id of its own, as root
    _contain(config, output_fd)
    import_error = _import_lab(config["lab_path"])
    wire.write_frame(responses_fd, wire.encode({"ready": True, "pid": os.getpid()}))
    while True:
        frame = wire.read_frame(requests_fd)
        if frame is None:  # the grader closed the pipe: we are done
            os._exit(0)
        wire.write_frame(responses_fd, _answer(frame, import_error))


# The only variables a sandbox inherits (its environment is otherwise empty: the grader's is never shown
# to student code). XLA reads XLA_FLAGS when the sandbox first compiles; the rest is locale and threads.
ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "XLA_FLAGS", "OMP_NUM_THREADS", "TF_CPP_MIN_LOG_LEVEL")


def _contain(config: dict, output_fd: int) -> None:
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = sys.stdout
    _limit(resource.RLIMIT_CORE, 0)
    if config.get("memory_bytes"):
        _limit(resource.RLIMIT_AS, int(config["memory_bytes"]))
    workdir = config["workdir"]
    if config.get("uid") is not None:
        if os.geteuid() == 0:  # not isolated (course.grader.isolation changes identity itself)
            os.setgroups([])
            os.setgid(config["gid"])
            os.setuid(config["uid"])  # from here on, nothing of the grader's is writable
        _limit(resource.RLIMIT_NPROC, 256)
    os.chdir(workdir)
    kept = {name: os.environ[name] for name in ENVIRONMENT if name in os.environ}
    os.environ.clear()
    os.environ.update(kept, HOME=workdir, TMPDIR=workdir, MPLBACKEND="Agg", MPLCONFIGDIR=workdir, JAX_PLATFORMS="cpu")
    os.environ["COURSE_SANDBOX"] = "1"  # course.check() does nothing in a graded notebook
    jax.config.update("jax_platforms", "cpu")
    if config.get("cache"):
        jax.config.update("jax_compilation_cache_dir", config["cache"]["path"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    # JAX's defaults, as students run them; rank promotion only warns, and we turn it into a hint.
    jax.config.update("jax_numpy_rank_promotion", "warn")


def _limit(which: int, value: int) -> None:
    """Lower a resource limit where the system allows it (macOS refuses some, e.g. RLIMIT_AS)."""
    try:
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        pass


def _import_lab(path: str) -> dict | None:
    global _module
    from course.labs import import_file

    try:
        with _watching() as hints:
            _module = import_file(path)
    except BaseException as exc:  # noqa: BLE001 - whatever the student's module does, we report it
        return _describe(exc, hints)
    return None


def _answer(frame: bytes, import_error: dict | None) -> bytes:
    hints: list = []
    if import_error is not None:  # every request gets the import's error (a syntax error, a stub at top level)
        return wire.encode({"error": import_error})
    try:
        op, target, args, kwargs = pickle.loads(frame)  # from the trusted side
        fn = lab_attribute(target) if op == "call" else target
        with _watching() as hints:
            value = fn(*args, **kwargs) if op == "call" else fn(_module, *args, **kwargs)
        return wire.encode({"value": value, "hints": hints})
    except BaseException as exc:  # noqa: BLE001 - sys.exit and KeyboardInterrupt are reported too
        try:
            return wire.encode({"error": _describe(exc, hints)})
        except BaseException as again:  # noqa: BLE001 - e.g. a __str__ that raises
            return wire.encode(
                {
                    "error": {
                        "type": "Exception",
                        "builtin": None,
                        "message": f"(an exception that could not be described: {again!r:.200})",
                        "frames": [],
                        "hints": [],
                    }
                }
            )


def _describe(exc: BaseException, hints: list) -> dict:
    """An exception as data: its type, message, traceback frames and the hints seen before it."""
    import builtins

    name = type(exc).__name__
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001
        message = f"<{name} whose message could not be read>"
    if isinstance(exc, wire.WireError):
        message = f"the code returned something the grader cannot read: {message}"
    frames = [[f.filename, f.lineno, f.name, f.line or ""] for f in traceback.extract_tb(exc.__traceback__)]
    if isinstance(exc, SyntaxError) and exc.filename:
        frames.append([exc.filename, exc.lineno or 0, "<module>", (exc.text or "").strip()])
    builtin = name if getattr(builtins, name, None) is type(exc) else None
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "builtin": builtin,
        "message": message[:20000],
        "frames": frames[-40:],
        "hints": hints,
    }


def _suspicious(warning: str) -> bool:
    """A rank promotion whose result is larger than every operand: ``(N, 1) - (N,)`` -> ``(N, N)``.

    ``x @ W + b`` — ``(N, n) + (n,)`` — is a rank promotion too, but the ordinary, intended kind.
    """
    import ast
    import re

    try:
        shapes = [ast.literal_eval(s) for s in re.findall(r"\([\d, ]*\)", warning.split(" on shapes ")[1])]
        result = np.broadcast_shapes(*shapes)
    except (IndexError, ValueError, SyntaxError):
        return False
    return all(result != tuple(shape) for shape in shapes)


class _watching:
    """Records JAX's suspicious implicit-rank-promotion warnings with the student's frames, as hints."""

    def __enter__(self) -> list:
        self.hints: list = []
        self.catcher = warnings.catch_warnings()
        self.catcher.__enter__()
        warnings.simplefilter("always")
        previous = warnings.showwarning

        def record(message, category, filename, lineno, file=None, line=None):
            text = str(message)
            if "rank promotion" in text and _suspicious(text) and len(self.hints) < 20:
                stack = [[f.filename, f.lineno, f.name, f.line or ""] for f in traceback.extract_stack()[:-1]]
                self.hints.append({"kind": "rank promotion", "message": text, "frames": stack[-40:]})
            else:
                previous(message, category, filename, lineno, file, line)

        warnings.showwarning = record
        return self.hints

    def __exit__(self, *exc) -> None:
        self.catcher.__exit__(*exc)
