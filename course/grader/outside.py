"""The trusted side of a sandbox: start it, send it work, read back data, and end it for good.

A test's ``lab`` is a :class:`RemoteLab`. ``lab.sigmoid(x)`` sends the call to the sandbox that holds
the student's module and returns what came back, as data; ``lab.run(fn, *args)`` runs the test's own
``fn(lab, *args)`` there, for whatever has to happen next to the student's code (``jax.jit``,
``jax.grad``, building an ``nnx.Module``) and returns its data result. Requests travel pickled (they
come from the tests); answers come back in :mod:`course.grader.wire`'s format, which cannot run code.

Every exchange has a deadline (the test's remaining time), an output cap and a memory limit. A sandbox
that runs past its deadline, dies, prints or allocates without bound, or answers out of turn is killed
with its whole process group, and so is anything it started that escaped the group; the next request
starts a fresh one. What went wrong arrives in the test as one of the exceptions below, which the
grader turns into a status.
"""

from __future__ import annotations

import builtins
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cloudpickle

from course.grader import wire
from course.grader.model import Status

START_LIMIT_S = 120.0  # forking and importing the student's lab; a lab that takes longer is stuck


# ---------------------------------------------------------------------------------------------------
# What can go wrong, as seen by a test


class StudentError(Exception):
    """An exception raised by the student's code, described by the sandbox (as data, never trusted).

    It is also an instance of the builtin exception of the same name where there is one, so
    ``pytest.raises(ValueError)`` in a test catches a ``ValueError`` the student's code raised.
    """

    def __init__(self, info: dict) -> None:
        self.info = info
        self.type_name = str(info.get("type", "Exception")).rsplit(".", 1)[-1]
        self.message = str(info.get("message", ""))
        self.frames = [tuple(f) for f in info.get("frames", []) if isinstance(f, list) and len(f) == 4]
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class SandboxFailure(BaseException):
    """The sandbox could not answer: timed out, died, or hit a limit. Not catchable as ``Exception``."""

    status = Status.CRASHED


class SandboxTimeout(SandboxFailure):
    status = Status.TIMED_OUT


class SandboxCrash(SandboxFailure):
    status = Status.CRASHED


class SandboxLimit(SandboxFailure):
    status = Status.ERROR


_ERROR_TYPES: dict[str, type] = {}


def student_error(info: dict) -> StudentError:
    """A :class:`StudentError` that is also the matching builtin exception (ValueError, KeyError, ...)."""
    name = info.get("builtin")
    base = getattr(builtins, name, None) if isinstance(name, str) else None
    if not (isinstance(base, type) and issubclass(base, Exception)):
        return StudentError(info)
    if name not in _ERROR_TYPES:
        try:
            _ERROR_TYPES[name] = type(f"Student{name}", (StudentError, base), {})
        except TypeError:  # a builtin whose layout cannot be mixed in (OSError, ...)
            _ERROR_TYPES[name] = StudentError
    return _ERROR_TYPES[name](info)


# ---------------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class Limits:
    memory_bytes: int = 6 << 30  # address space; JAX on the CPU needs a few GiB of it
    output_bytes: int = 4 << 20  # printed during one request
    keep_output: int = 16 << 10  # kept to show in a message


@dataclass
class TestClock:
    """The time a test has left in the sandbox, and the hints collected while it ran."""

    timeout: float  # seconds a test may spend in the sandbox (the grader's settings)
    left: float = 0.0  # set from ``timeout`` when made, and at every reset
    hints: list = field(default_factory=list)
    output: str = ""
    importing: float = 0.0  # seconds this test waited for the lab to import (its first call, or a restart)
    budget_left: float | None = None  # what the lab's time budget has left (None: no budget); set by the session

    def __post_init__(self) -> None:
        self.left = self.timeout

    def reset(self, timeout: float | None = None) -> None:
        self.timeout = self.timeout if timeout is None else timeout
        self.left, self.hints, self.output, self.importing = self.timeout, [], "", 0.0

    @property
    def spent(self) -> float:
        """The seconds of the student's code this test ran: its calls, and importing the lab."""
        return max(self.timeout - self.left, 0.0) + self.importing


# ---------------------------------------------------------------------------------------------------
# One sandbox


class ForkServerClient:
    """The trusted side's end of the fork server (:mod:`course.grader.forkserver`): asks it for sandboxes,
    and hears when they end."""

    def __init__(self, fd: int | None = None) -> None:
        """Start a fork server, or adopt one the grader started for us (``fd``: our end of its socket)."""
        if fd is None:
            ours, self.proc = start_fork_server()
        else:
            ours, self.proc = socket.socket(fileno=fd), None
        self.sock, self.buffer, self.exits, self.replies = ours, b"", {}, []

    def fork(self, config: dict, fds: list[int], deadline: float) -> int:
        socket.send_fds(self.sock, [(json.dumps({"op": "fork", "config": config}) + "\n").encode()], fds)
        return self._reply("started", deadline)

    def reap(self) -> int:
        """Kill whatever escaped a sandbox (Linux): the server's children that are not sandboxes."""
        self.sock.sendall(b'{"op": "reap"}\n')
        return self._reply("reaped", time.monotonic() + 30)

    def poll(self, timeout: float = 0.0) -> None:
        """Read what the server has said (sandboxes' exit codes, replies) without blocking past ``timeout``."""
        if select.select([self.sock], [], [], timeout)[0]:
            data = self.sock.recv(1 << 16)
            if not data:
                raise SandboxCrash("the sandboxes' fork server has stopped")
            self.buffer += data
            *lines, self.buffer = self.buffer.split(b"\n")
            for line in lines:
                message = json.loads(line)
                if "exited" in message:
                    self.exits[message["exited"]] = message["code"]
                else:
                    self.replies.append(message)

    def _reply(self, key: str, deadline: float):
        while True:
            for i, message in enumerate(self.replies):
                if key in message:
                    return self.replies.pop(i)[key]
            if time.monotonic() > deadline:
                raise SandboxCrash("the sandboxes' fork server did not answer")
            self.poll(max(0.0, min(1.0, deadline - time.monotonic())))

    def close(self) -> None:
        self.sock.close()  # the server kills its sandboxes and strays, then exits
        if self.proc is not None:
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_fork_server(log=None) -> tuple[socket.socket, subprocess.Popen]:
    """Start a fork server process (its output to ``log``); returns our end of its socket and the process."""
    ours, theirs = socket.socketpair()
    from course.grader.privacy import grading_environment

    env = {**grading_environment(), "MPLBACKEND": "Agg", "JAX_PLATFORMS": "cpu", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "course.grader.forkserver", str(theirs.fileno())],
        pass_fds=[theirs.fileno()],
        stdin=subprocess.DEVNULL,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
    )
    theirs.close()
    return ours, proc


_server: ForkServerClient | None = None


def fork_server() -> ForkServerClient:
    """The one fork server of this process: the grader's (``$COURSE_FORKSERVER_FD``), else started now."""
    global _server
    if _server is None or (_server.proc is not None and _server.proc.poll() is not None):
        fd = os.environ.pop("COURSE_FORKSERVER_FD", None)
        _server = ForkServerClient(int(fd) if fd else None)
    return _server


def shut_down() -> None:
    """Stop the fork server and everything it started."""
    global _server
    if _server is not None:
        _server.close()
        _server = None


class Sandbox:
    """One lab's student code, in a contained process; restarted on demand after it dies."""

    def __init__(
        self,
        lab_path: Path,
        *,
        user: tuple[int, int] | None = None,
        jax_cache: Path | None = None,
        warm_cache: Path | None = None,
        isolate: bool = False,
        limits: Limits = Limits(),
    ) -> None:
        """``jax_cache``: the sandbox's JAX compilation cache, which it writes (its own submission's);
        ``warm_cache``: instead, a cache it only reads, under a private layer (a class's sandboxes);
        ``isolate``: in namespaces of its own (:mod:`course.grader.isolation`), where it sees nothing
        of the machine but Python, the libraries, ``course/``, its lab and its cache."""
        self.lab_path, self.user, self.limits = Path(lab_path).resolve(), user, limits
        self.jax_cache, self.warm_cache, self.isolate = jax_cache, warm_cache, isolate
        self.pid: int | None = None
        self.sticky: SandboxFailure | None = None  # the lab cannot even be imported in time: don't retry

    # -- life cycle -------------------------------------------------------------------------------

    def _start(self, deadline: float) -> None:
        server = fork_server()
        config = {
            "lab_path": str(self.lab_path),
            "memory_bytes": self.limits.memory_bytes,
            "isolate": self.isolate,
            # As root, an isolated sandbox takes a user id of its own (course.grader.isolation).
            "uid": self.user[0] if self.user and not self.isolate else None,
            "gid": self.user[1] if self.user and not self.isolate else None,
            "cache": self._cache(),
        }
        if self.isolate:  # a private tmpfs inside the sandbox, at a path of no consequence
            self.workdir = None
            config["workdir"] = "/tmp/sandbox"
        else:
            self.workdir = Path(tempfile.mkdtemp(prefix="course-sandbox-"))
            config["workdir"] = str(self.workdir)
            if self.user is not None:
                os.chown(self.workdir, *self.user)
        req_r, self.req = os.pipe()
        self.resp, resp_w = os.pipe()
        self.out, out_w = os.pipe()
        try:
            self.pid = server.fork(config, [req_r, resp_w, out_w], deadline)
        finally:
            for fd in (req_r, resp_w, out_w):
                os.close(fd)
        os.set_blocking(self.req, False)
        self.server = server

    def _cache(self) -> dict | None:
        """The JAX cache as the sandbox is given it: ``path`` (and ``lower``, read-only under a private layer)."""
        if self.isolate and self.warm_cache is not None:
            return {"path": "/tmp/jax-cache", "lower": str(self.warm_cache)}
        cache = self.jax_cache
        if cache is None:
            return None
        cache.mkdir(parents=True, exist_ok=True)
        if self.isolate:
            os.chmod(cache, 0o777)  # each sandbox of the submission has a user id of its own
        elif self.user is not None:
            os.chown(cache, *self.user)
        return {"path": str(cache), "lower": None}

    def stop(self) -> None:
        """End the sandbox, its process group and anything that escaped it; remove its files."""
        if self.pid is None:
            return
        for kill in (os.killpg, os.kill):
            try:
                kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for fd in (self.req, self.resp, self.out):
            os.close(fd)
        self.pid = None
        try:
            self.server.reap()
        except SandboxFailure:
            pass
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _exit_code(self, wait: float) -> int | None:
        end = time.monotonic() + wait
        while self.pid not in self.server.exits and time.monotonic() < end:
            self.server.poll(0.05)
        return self.server.exits.pop(self.pid, None)

    # -- requests ---------------------------------------------------------------------------------

    def request(self, op: str, target: Any, args: tuple, kwargs: dict, clock: TestClock) -> Any:
        """Send one request; return its value, or raise StudentError / a SandboxFailure."""
        if self.sticky is not None:
            raise type(self.sticky)(*self.sticky.args)
        payload = cloudpickle.dumps((op, target, args, kwargs))
        if self.pid is None:
            self._import_lab(clock)
        start = time.monotonic()
        try:
            answer = self._exchange(payload, start + max(clock.left, 0.0), clock)
        finally:
            clock.left -= time.monotonic() - start
        if not isinstance(answer, dict) or not ({"value", "error"} & set(answer)):
            self.stop()
            raise SandboxCrash("the sandbox sent a malformed answer (something wrote to the grader's channel)")
        hints = answer.get("hints") or (answer.get("error") or {}).get("hints") or []
        if isinstance(hints, list):
            clock.hints.extend(h for h in hints[:20] if isinstance(h, dict))
        if "error" in answer:
            info = answer["error"] if isinstance(answer["error"], dict) else {"message": str(answer["error"])}
            raise student_error(self._shown(info))
        return answer["value"]

    def _import_lab(self, clock: TestClock) -> None:
        """Start the sandbox and wait for it to import the lab. Importing is the student's code too:
        charged to the lab's time budget, and limited by what the budget has left, so that a lab that
        never finishes importing costs at most that. A lab that cannot be imported fails every call."""
        limit = START_LIMIT_S if clock.budget_left is None else min(START_LIMIT_S, max(clock.budget_left, 0.1))
        start = time.monotonic()
        try:
            self._start(start + limit)
            ready = self._exchange(None, start + limit, clock)
        except SandboxTimeout:
            self.sticky = SandboxTimeout(
                f"importing the lab took longer than {limit:g} s"
                + (", what the lab's time budget had left" if limit < START_LIMIT_S else "")
                + " (an infinite loop, or a long computation, at the top of the file?)"
            )
            raise SandboxTimeout(*self.sticky.args) from None
        except SandboxFailure as failure:
            self.sticky = type(failure)(f"while importing the lab: {failure}")
            raise type(failure)(*self.sticky.args) from None
        finally:
            clock.importing += time.monotonic() - start
        if not (isinstance(ready, dict) and (ready.get("ready") or "error" in ready)):
            self.stop()
            raise SandboxCrash("the sandbox answered out of turn while starting")

    def _shown(self, info: dict) -> dict:
        """The sandbox's report with the paths in its message as the student knows them (a file, a cell)."""
        from course.grader import locations

        return {**info, "message": locations.current().text(info.get("message", ""))}

    def _exchange(self, payload: bytes | None, deadline: float, clock: TestClock) -> Any:
        """Write ``payload`` (if any), then read one answer, watching the clock, the output and the process."""
        outgoing = memoryview(wire.FRAME.pack(len(payload)) + payload) if payload is not None else memoryview(b"")
        incoming, printed = bytearray(), 0
        server = self.server.sock
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise SandboxTimeout(f"it ran longer than the limit of {clock.timeout:g} s (an infinite loop?)")
            readable, writable, _ = select.select(
                [self.resp, self.out, server], [self.req] if outgoing else [], [], left
            )
            if writable:
                outgoing = self._send_some(outgoing)
            if self.out in readable:
                printed = self._take_output(printed, clock)
            if self.resp in readable:
                chunk = os.read(self.resp, 1 << 20)
                incoming += chunk
                if chunk and (answer := self._answer(incoming, outgoing)) is not _PENDING:
                    return answer
                if chunk:
                    continue
            if server in readable:
                self.server.poll()
            if self.pid in self.server.exits or (self.resp in readable and not chunk):
                code = self._exit_code(wait=2.0)
                self.stop()
                raise SandboxCrash(describe_exit(code))

    def _send_some(self, outgoing: memoryview) -> memoryview:
        """Write what the pipe takes of ``outgoing``; what is left to write (nothing, if the sandbox is gone)."""
        try:
            return outgoing[os.write(self.req, outgoing[: 1 << 16]) :]
        except BlockingIOError:
            return outgoing
        except BrokenPipeError:
            return memoryview(b"")

    def _take_output(self, printed: int, clock: TestClock) -> int:
        """Read what the sandbox printed: keep the start of it for messages, refuse it past the limit."""
        chunk = os.read(self.out, 1 << 16)
        printed += len(chunk)
        if len(clock.output) < self.limits.keep_output:
            clock.output += chunk.decode("utf-8", "replace")[: self.limits.keep_output]
        if printed > self.limits.output_bytes:
            self.stop()
            raise SandboxLimit(f"it printed more than {self.limits.output_bytes >> 20} MiB of output")
        return printed

    def _answer(self, incoming: bytearray, outgoing: memoryview) -> Any:
        """The answer framed in ``incoming`` once it has all arrived (else ``_PENDING``), read as data."""
        if len(incoming) < wire.FRAME.size:
            return _PENDING
        (n,) = wire.FRAME.unpack_from(incoming)
        if n > wire.MAX_BYTES:
            self.stop()
            raise SandboxLimit(f"it returned more than {wire.MAX_BYTES >> 20} MiB of data")
        if len(incoming) < wire.FRAME.size + n:
            return _PENDING
        if len(incoming) > wire.FRAME.size + n or outgoing:
            self.stop()  # more than one answer, or an answer before the question
            raise SandboxCrash("the sandbox answered out of turn (something wrote to the grader's channel)")
        try:
            return wire.decode(bytes(incoming[wire.FRAME.size :]))
        except wire.WireError as exc:
            self.stop()
            raise SandboxCrash(f"the sandbox sent an unreadable answer: {exc}") from None


_PENDING = object()  # an answer not yet all read


def describe_exit(code: int | None) -> str:
    if code is None:
        return "the test process stopped answering"
    if code < 0:
        try:
            sig = signal.Signals(-code)
        except ValueError:
            return f"the test process died from signal {-code}"
        meaning = {
            "SIGSEGV": "a segmentation fault",
            "SIGKILL": "killed, perhaps out of memory",
            "SIGABRT": "aborted",
            "SIGFPE": "a floating-point exception",
            "SIGBUS": "a bus error",
        }
        return f"the test process died from signal {sig.name} ({meaning.get(sig.name, sig.name)})"
    from course.grader.isolation import FAILED

    if code == FAILED:
        return "the sandbox could not isolate itself on this machine (course grade --isolation says more)"
    return f"the test process exited with status {code} in the middle of this test (os._exit or a fatal error)"


# ---------------------------------------------------------------------------------------------------
# What tests hold


class LabFunction:
    """``lab.NAME``: calling it calls the student's function in the sandbox; passed as an argument to
    another call, it stands for the student's function there."""

    def __init__(self, lab: "RemoteLab", name: str) -> None:
        self._lab, self._name = lab, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._lab._sandbox.request("call", self._name, args, kwargs, self._lab._clock)

    def __reduce__(self):
        from course.grader import inside

        return (inside.lab_attribute, (self._name,))

    def __repr__(self) -> str:
        return f"<lab.{self._name} in the sandbox>"


class RemoteLab:
    """The student's lab as a test sees it: every call runs in the sandbox and returns data."""

    def __init__(self, sandbox: Sandbox, clock: TestClock) -> None:
        self._sandbox, self._clock = sandbox, clock

    def __getattr__(self, name: str) -> LabFunction:
        if name.startswith("__"):
            raise AttributeError(name)
        return LabFunction(self, name)

    def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``fn(lab, *args, **kwargs)`` run in the sandbox, where ``lab`` is the student's module; its result
        comes back as data (arrays, numbers, strings, lists/tuples/dicts of them)."""
        return self._sandbox.request("run", fn, args, kwargs, self._clock)

    def __repr__(self) -> str:
        return f"<lab {self._sandbox.lab_path.name} in a sandbox>"
