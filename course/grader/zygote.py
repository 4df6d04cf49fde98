"""A warm start for grading: pytest, JAX and the labs' libraries imported once, then forked for each job.

Grading a lab needs two fresh processes, a trusted test process (pytest and the graded tests) and
the fork server of its sandboxes, and both import JAX: seconds before the first test can run. The
zygote pays that once. Started as ``python -P -m course.grader.zygote FD [MODULE ...]`` with one end
of a Unix socket, it imports what grading needs (and the MODULEs: what the labs of this run import),
then waits. For each job it forks both processes from its own untouched state, joined by a socket
pair, exactly as :func:`course.grader.runner.run` would start them from scratch:

* the fork server (:func:`course.grader.forkserver.serve`), which forks one sandbox per lab;
* the test process, which runs ``pytest.main(args)`` with the job's environment and folder.

The zygote itself never runs a test, a test file or student code, and a job's processes are used for
that job only and then end: nothing carries over from one check to the next. It lives as long as the
process that started it holds the socket (a notebook's kernel, one ``course grade`` run).

The socket carries JSON lines. Requests: ``{"op": "grade", "args": [...], "env": {...}, "cwd": ...,
"preload": [...]}`` with two file descriptors attached (the results channel's write end, the log), and
``{"op": "preload", "modules": [...]}``. Answers: ``{"started": [test_pid, server_pid]}`` and
``{"preloaded": [...]}``. No JAX backend is ever started here (that is what makes forking safe); a
zygote that finds one started refuses jobs (``{"error": ...}``) and the grader starts processes cold.
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import traceback

# What every job needs: the test process's pytest and plugins, and the sandbox side.
BASE = (
    "pytest",
    "numpy",
    "jax",
    "jax.numpy",
    "cloudpickle",
    "course.testing",
    "course.testing.plugin",
    "course.grader.session",
    "course.grader.remote",
    "course.grader.sandbox",
    "course.grader.forkserver",
    # What JAX imports when it lowers its first program (MLIR's dialects): 0.1 s of every process's first op.
    "jaxlib.mlir.dialects.builtin",
    "jaxlib.mlir.dialects.mhlo",
    "jaxlib.mlir.extras.meta",
)
# Packages whose modules a job may ask to preload (what labs and graded tests import): installed
# libraries and the course's own, never a file next to the student's code.
PRELOADABLE = ("jax", "jaxlib", "flax", "optax", "numpy", "matplotlib", "chex", "scipy", "course", "pytest")


def preloadable(name: str) -> bool:
    return isinstance(name, str) and name.split(".")[0] in PRELOADABLE and name.replace(".", "").isidentifier()


def _preload(names) -> list[str]:
    done = []
    for name in names:
        if name in sys.modules or not preloadable(name):
            continue
        try:
            __import__(name)
            done.append(name)
        except Exception:  # noqa: BLE001 - an import that fails here fails again where it is needed, and says why
            pass
    return done


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(getattr(xla_bridge, "_backends", {}))
    except Exception:  # noqa: BLE001 - a JAX without that attribute: assume the worst
        return True


def _launch(control: socket.socket, request: dict, fds: list[int]) -> list[int]:
    """Fork the job's fork server and test process; return their pids."""
    events_fd, log_fd = fds
    ours, theirs = socket.socketpair()
    server = os.fork()
    if server == 0:
        try:
            control.close()
            ours.close()
            os.close(events_fd)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.close(log_fd)
            from course.grader import forkserver

            forkserver.become_server()
            forkserver.serve(theirs)
        finally:
            os._exit(70)
    test = os.fork()
    if test == 0:
        code = 70
        try:
            control.close()
            theirs.close()
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.close(log_fd)
            os.environ.clear()
            os.environ.update(request["env"])
            os.environ.update(COURSE_GRADER_FD=str(events_fd), COURSE_FORKSERVER_FD=str(ours.detach()))
            sys.dont_write_bytecode = True
            if prefix := request["env"].get("PYTHONPYCACHEPREFIX"):
                sys.pycache_prefix = prefix
            os.chdir(request["cwd"])
            import pytest

            code = int(pytest.main(request["args"]))
        except BaseException:  # noqa: BLE001 - said in the log; the grader reports the tests as not run
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    for fd in (events_fd, log_fd):
        os.close(fd)
    ours.close()
    theirs.close()
    return [test, server]


def main(fd: int, preload: list[str]) -> None:
    from course.grader.privacy import set_dumpable

    set_dumpable(False)  # as every grading process (course.grader.privacy); the forks inherit it
    control = socket.socket(fileno=fd)
    _preload([*BASE, *preload])

    def send(**message) -> None:
        control.sendall((json.dumps(message) + "\n").encode())

    buffer = b""
    while True:
        ready, _, _ = select.select([control], [], [], 1.0)
        while True:  # reap the jobs' processes that have ended
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        if not ready:
            continue
        try:
            data, fds, _, _ = socket.recv_fds(control, 1 << 20, 2)
        except OSError:
            data, fds = b"", []
        if not data:
            return  # whoever started us has gone
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            request = json.loads(line)
            if request["op"] == "preload":
                send(preloaded=_preload(request["modules"]))
            elif request["op"] == "grade":
                _preload(request.get("preload", ()))
                if _backend_started() or len(fds) != 2:
                    for f in fds:
                        os.close(f)
                    send(error="this zygote cannot fork grading processes safely")
                else:
                    send(started=_launch(control, request, fds))
                fds = []


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])


# ---------------------------------------------------------------------------------------------------
# The grader's side


class ZygoteError(Exception):
    """The zygote could not start a job; the grader starts the processes from scratch instead."""


class Zygote:
    """A zygote process of ours (see the module's docstring) and our end of its socket."""

    def __init__(self, preload: list[str] | tuple[str, ...] = (), *, path: str, log=None) -> None:
        import subprocess

        ours, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": path, "MPLBACKEND": "Agg", "JAX_PLATFORMS": "cpu"}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "course.grader.zygote", str(theirs.fileno()), *preload],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=log if log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env=env,
        )
        theirs.close()
        self.sock, self.buffer = ours, b""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _ask(self, message: dict, fds: list[int] = (), timeout: float = 300.0) -> dict:
        import time

        try:
            socket.send_fds(self.sock, [(json.dumps(message) + "\n").encode()], list(fds))
            deadline = time.monotonic() + timeout
            while b"\n" not in self.buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                    raise ZygoteError("the zygote did not answer")
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise ZygoteError("the zygote has stopped")
                self.buffer += chunk
        except OSError as exc:
            raise ZygoteError(f"the zygote cannot be reached: {exc}") from None
        line, self.buffer = self.buffer.split(b"\n", 1)
        answer = json.loads(line)
        if "error" in answer:
            raise ZygoteError(answer["error"])
        return answer

    def preload(self, modules: list[str]) -> list[str]:
        """Import ``modules`` (those :func:`preloadable`) now, ahead of the jobs that need them."""
        return self._ask({"op": "preload", "modules": list(modules)})["preloaded"]

    def launch(
        self, args: list[str], *, env: dict, cwd: str, events_fd: int, log_fd: int, preload: list[str] = ()
    ) -> list[int]:
        """Start a job's test process (``pytest args``) and its fork server; returns their pids."""
        request = {"op": "grade", "args": args, "env": env, "cwd": cwd, "preload": list(preload)}
        return self._ask(request, [events_fd, log_fd])["started"]

    def close(self) -> None:
        self.sock.close()  # the zygote exits at its next read; jobs still running finish on their own
        try:
            self.proc.wait(10)
        except Exception:  # noqa: BLE001
            self.proc.kill()


_shared: Zygote | None = None


def shared(path: str, preload: list[str] | tuple[str, ...] = ()) -> Zygote | None:
    """This process's zygote, started now if there is none (or it died); None where forking is not to be used.

    ``COURSE_WARM=0`` turns the zygote off (every grading process then starts from scratch, as before);
    so does a platform without ``fork`` (Windows) or ``socket.send_fds``.
    """
    global _shared
    if os.environ.get("COURSE_WARM", "1") == "0" or not hasattr(os, "fork") or not hasattr(socket, "send_fds"):
        return None
    if _shared is None or not _shared.alive():
        _shared = Zygote(preload, path=path)
    return _shared


def shut_down() -> None:
    global _shared
    if _shared is not None:
        _shared.close()
        _shared = None
