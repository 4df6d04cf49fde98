"""The sandboxes' fork server: imports JAX and the labs' libraries once, then forks one sandbox per request.

Started as ``python -m course.grader.forkserver FD`` with one end of a Unix socket whose other end the
trusted test process holds (:class:`course.grader.outside.ForkServerClient`; the grader starts both at
once, so that their imports overlap). It never runs student code itself: a forked child contains itself
first (see :mod:`course.grader.inside`). On Linux the server is a *child subreaper*, so a process that a
student's code starts and detaches (double fork, ``setsid``) is re-parented here rather than to init;
the server kills every child of its own that is not a live sandbox whenever it is asked to reap.

The socket carries JSON lines. Requests: ``{"op": "fork", "config": {...}}`` with three file
descriptors attached (requests, responses, output), and ``{"op": "reap"}``. Answers:
``{"started": pid}``, ``{"reaped": n}``, and, whenever a sandbox ends, ``{"exited": pid, "code": c}``
(``c`` as ``subprocess`` reports it: negative for a signal).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time

from course.grader.privacy import set_dumpable

MAX_FDS = 3


# What labs import at the top: imported once here, shared by every fork (a failure shows up in the sandbox).
LAB_LIBRARIES = (
    "jax.numpy",
    "flax.nnx",
    "optax",
    "matplotlib.pyplot",
    "course.datasets",
    "course.plotting",
    "course.images",
)


def become_server() -> None:
    """What a fork server is before it serves: the child subreaper of what sandboxes start, not dumpable."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    set_dumpable(False)  # see course.grader.privacy; the sandboxes inherit it, which does them no harm


def main(fd: int) -> None:
    become_server()
    import course.grader.inside  # noqa: F401 - JAX and the wire format, before any fork

    for name in LAB_LIBRARIES:
        try:
            __import__(name)
        except Exception:  # noqa: BLE001
            pass
    serve(socket.socket(fileno=fd))


def serve(control: socket.socket) -> None:
    """Fork one sandbox per request on ``control`` until the trusted side closes it; then kill them all."""
    from course.grader import inside

    sandboxes: set[int] = set()

    def send(**message) -> None:
        try:
            control.sendall((json.dumps(message) + "\n").encode())
        except OSError:  # the trusted side has gone; the loop ends at its next read
            pass

    try:
        while True:
            ready, _, _ = select.select([control], [], [], 0.2)
            if ready:
                try:
                    data, fds, _, _ = socket.recv_fds(control, 1 << 20, MAX_FDS)
                except OSError:  # the trusted side went away abruptly
                    data = b""
                if not data:
                    return  # the trusted side has gone
                for line in data.decode().splitlines():
                    request = json.loads(line)
                    if request["op"] == "fork":
                        pid = os.fork()
                        if pid == 0:  # the sandbox
                            control.close()
                            try:
                                inside.main(request["config"], *fds)
                            finally:
                                os._exit(70)
                        for f in fds:
                            os.close(f)
                        fds = []
                        sandboxes.add(pid)
                        send(started=pid)
                    elif request["op"] == "reap":
                        send(reaped=_kill_strays(sandboxes))
            _collect(sandboxes, send)
    finally:
        for pid in list(sandboxes):
            _kill(pid)
        _kill_strays(set())


def reap() -> list[tuple[int, int]]:
    """Reap the children that have ended, without waiting: their ``(pid, exit code)``, as ``subprocess`` says it."""
    ended = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended.append((pid, os.waitstatus_to_exitcode(status)))


def _collect(sandboxes: set[int], send) -> None:
    """Reap children that ended; report the sandboxes among them."""
    for pid, code in reap():
        if pid in sandboxes:
            sandboxes.discard(pid)
            send(exited=pid, code=code)


def _children() -> list[int]:
    me, found = os.getpid(), []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def _kill(pid: int) -> None:
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _kill_strays(sandboxes: set[int]) -> int:
    """Kill every child that is not a live sandbox (what escaped a sandbox), until none is left."""
    killed = 0
    for _ in range(200):
        strays = [pid for pid in _children() if pid not in sandboxes]
        if not strays:
            break
        for pid in strays:
            _kill(pid)
            killed += 1
        time.sleep(0.01)
        for pid in strays:  # reap them now, so that their zombies do not count as strays again
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
    return killed


if __name__ == "__main__":
    main(int(sys.argv[1]))
