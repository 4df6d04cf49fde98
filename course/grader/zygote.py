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

import atexit
import json
import os
import select
import socket
import sys
import threading
import traceback

# What every job needs: the test process's pytest and plugins, and the sandbox side.
BASE = (
    "pytest",
    "numpy",
    "jax",
    "jax.numpy",
    "cloudpickle",
    "course.grader.testing",
    "course.grader.picture",
    # What a failed comparison's picture draws with, imported once here rather than by each test process.
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "matplotlib.patches",
    "course.grader.lab_plugin",
    "course.grader.grading_plugin",
    "course.grader.outside",
    "course.grader.inside",
    "course.grader.forkserver",
    # What JAX imports when it lowers its first program (MLIR's dialects), which every new process would pay.
    "jaxlib.mlir.dialects.builtin",
    "jaxlib.mlir.dialects.mhlo",
    "jaxlib.mlir.extras.meta",
)
# Packages whose modules a job may ask to preload (what labs and graded tests import): installed
# libraries and the course's own, never a file next to the student's code.
PRELOADABLE = ("jax", "jaxlib", "flax", "optax", "numpy", "matplotlib", "chex", "scipy", "course", "pytest")


def preloadable(name: str) -> bool:
    return isinstance(name, str) and name.split(".")[0] in PRELOADABLE and name.replace(".", "").isidentifier()


_tried: set[str] = set()  # names asked for before (``from jax import Array`` asks for ``jax.Array``)


def _preload(names) -> list[str]:
    done = []
    for name in names:
        if name in sys.modules or name in _tried or not preloadable(name):
            continue
        _tried.add(name)
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


_sockets: list[socket.socket] = []  # the zygote's own (its clients', its listener): closed in every fork


def _launch(request: dict, fds: list[int]) -> list[int]:
    """Fork the job's fork server and test process; return their pids."""
    events_fd, log_fd = fds
    ours, theirs = socket.socketpair()
    server = os.fork()
    if server == 0:
        try:
            for own in _sockets:
                own.close()
            ours.close()
            os.close(events_fd)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.close(log_fd)
            os.environ.clear()  # the sandboxes' environment is the job's, as when started from scratch
            os.environ.update(request["env"])
            from course.grader import forkserver

            forkserver.become_server()
            forkserver.serve(theirs)
        finally:
            os._exit(70)
    test = os.fork()
    if test == 0:
        code = 70
        try:
            for own in _sockets:
                own.close()
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


def main(control: socket.socket | None, preload: list[str], *, listener: socket.socket | None = None, idle=600.0):
    """Serve jobs on ``control`` (one client: exit when it leaves), or on connections to ``listener`` (a
    daemon: exit once no client has come for ``idle`` seconds)."""
    import time

    from course.grader import forkserver
    from course.grader.privacy import set_dumpable

    set_dumpable(False)  # as every grading process (course.grader.privacy); the forks inherit it
    _preload([*BASE, *preload])
    clients = {control: b""} if control is not None else {}
    _sockets[:] = [*clients, *([listener] if listener else [])]
    last = time.monotonic()
    while True:
        ready, _, _ = select.select(_sockets, [], [], 1.0)
        forkserver.reap()  # the jobs' processes that have ended
        if listener is not None and not clients and time.monotonic() - last > idle:
            return
        for sock in ready:
            if sock is listener:
                conn = listener.accept()[0]
                clients[conn] = b""
                _sockets.append(conn)
                continue
            try:
                data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 2)
            except OSError:
                data, fds = b"", []
            if not data:
                del clients[sock]
                _sockets.remove(sock)
                sock.close()
                last = time.monotonic()
                if listener is None:
                    return  # whoever started us has gone
                continue
            *lines, clients[sock] = (clients[sock] + data).split(b"\n")
            for line in lines:
                _handle(sock, json.loads(line), fds)
                fds = []


def _handle(sock: socket.socket, request: dict, fds: list[int]) -> None:
    def send(**message) -> None:
        try:
            sock.sendall((json.dumps(message) + "\n").encode())
        except OSError:  # that client has gone
            pass

    if request["op"] == "preload":
        send(preloaded=_preload(request["modules"]))
    elif request["op"] == "grade":
        _preload(request.get("preload", ()))
        if _backend_started() or len(fds) != 2:
            for f in fds:
                os.close(f)
            send(error="this zygote cannot fork grading processes safely")
        else:
            send(started=_launch(request, fds))


def _listen(path: str) -> socket.socket | None:
    """A listening socket at ``path``, or None when another daemon already answers there."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _at(path, listener.bind)
    except OSError:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            _at(path, probe.connect)
            return None  # it is alive: leave it be
        except OSError:
            os.unlink(path)  # a dead daemon's socket
            _at(path, listener.bind)
        finally:
            probe.close()
    listener.listen(16)
    return listener


SUN_PATH_MAX = 100  # a socket's path must fit in sockaddr_un's 108 bytes (104 on macOS), with room to spare


def _at(path: str, call) -> None:
    """``call(path)`` (a socket's bind or connect), also where ``path`` is longer than a socket's address
    may be (a deep ``$TMPDIR``): on Linux, through ``/proc/self/fd`` and a descriptor of its folder."""
    if len(os.fsencode(path)) < SUN_PATH_MAX or not os.path.isdir("/proc/self/fd"):
        return call(path)
    folder = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        return call(f"/proc/self/fd/{folder}/{os.path.basename(path)}")
    finally:
        os.close(folder)


def _command_line(argv: list[str]) -> None:
    if argv[:1] == ["--listen"]:  # a daemon: --listen PATH --idle SECONDS [MODULE ...]
        os.chdir("/")
        listener = _listen(argv[1])
        if listener is None:
            return
        try:
            main(None, argv[4:], listener=listener, idle=float(argv[3]))
        finally:
            try:
                os.unlink(argv[1])
            except OSError:
                pass
    else:
        main(socket.socket(fileno=int(argv[0])), argv[1:])


# ---------------------------------------------------------------------------------------------------
# The grader's side


class ZygoteError(Exception):
    """The zygote could not start a job; the grader starts the processes from scratch instead."""


class Zygote:
    """A zygote (see the module's docstring) and our end of its socket: a child of ours, or a daemon's."""

    def __init__(self, sock: socket.socket, proc=None) -> None:
        self.sock, self.proc, self.buffer = sock, proc, b""
        self.lock = threading.Lock()  # one question and its answer at a time (a class is graded in threads)

    @classmethod
    def start(cls, preload: list[str] | tuple[str, ...] = (), *, path: str) -> "Zygote":
        """A zygote of this process's own, which ends when we do."""

        ours, theirs = socket.socketpair()
        proc = _spawn([str(theirs.fileno()), *preload], path, pass_fds=[theirs.fileno()])
        theirs.close()
        return cls(ours, proc)

    @classmethod
    def daemon(cls, preload: list[str] | tuple[str, ...] = (), *, path: str, idle: float) -> "Zygote":
        """The daemon zygote of this user, Python and course code, started (detached) if none answers.

        Its socket is in a folder only this user can open, named by a fingerprint of the interpreter,
        the course's files and the libraries' installs: after an edit or an upgrade, the next ``course
        grade`` gets a new daemon, and the old one ends on its own after ``idle`` seconds unused.
        """
        import tempfile
        import time

        folder = os.path.join(tempfile.gettempdir(), f"course-{os.geteuid()}")
        os.makedirs(folder, mode=0o700, exist_ok=True)
        st = os.lstat(folder)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077 or not os.path.isdir(folder):
            raise ZygoteError(f"{folder} is not a private folder of this user")
        address = os.path.join(folder, f"zygote-{_fingerprint(path)}.sock")
        started = None
        deadline = time.monotonic() + 60
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                _at(address, sock.connect)
                return cls(sock)
            except OSError:
                sock.close()
            if started is None:  # a session of its own: no terminal's signals; it outlives this command
                started = _spawn(["--listen", address, "--idle", f"{idle:g}", *preload], path, start_new_session=True)
            elif started.poll() not in (None, 0) or time.monotonic() > deadline:
                raise ZygoteError("the grader's daemon did not start")
            time.sleep(0.02)

    def alive(self) -> bool:
        return self.proc.poll() is None if self.proc is not None else self.sock.fileno() >= 0

    def _ask(self, message: dict, fds: list[int] = (), timeout: float = 300.0) -> dict:
        with self.lock:
            return self._exchange(message, fds, timeout)

    def _exchange(self, message: dict, fds: list[int], timeout: float) -> dict:
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
        self.sock.close()  # ours exits at its next read (a daemon waits for the next client)
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except Exception:  # noqa: BLE001
                self.proc.kill()


def _spawn(argv: list[str], path: str, **options):
    """``python -P -m course.grader.zygote ARGV``, silent, importing this course (``path``) with CPU JAX."""
    import subprocess

    quiet = subprocess.DEVNULL
    command = [sys.executable, "-P", "-m", "course.grader.zygote", *argv]
    return subprocess.Popen(command, stdin=quiet, stdout=quiet, stderr=quiet, env=_environment(path), **options)


def _environment(path: str) -> dict[str, str]:
    from course.grader.privacy import grading_environment

    return {
        **grading_environment(),
        "PYTHONPATH": path,
        "MPLBACKEND": "Agg",
        "JAX_PLATFORMS": "cpu",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _fingerprint(path: str) -> str:
    """What a daemon's imports depend on: this Python, the course's files, the libraries' installs."""
    import hashlib
    import importlib.util

    parts = [sys.executable, sys.version, path, *imported_with()]
    course = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for folder, _, names in sorted(os.walk(course)):
        for name in sorted(n for n in names if n.endswith(".py")):
            st = os.stat(os.path.join(folder, name))
            parts.append(f"{folder}/{name}:{st.st_mtime_ns}:{st.st_size}")
    for lib in ("jax", "jaxlib", "flax", "optax", "numpy", "pytest", "matplotlib"):
        spec = importlib.util.find_spec(lib)
        if spec is not None and spec.origin:
            parts.append(f"{spec.origin}:{os.stat(spec.origin).st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def imported_with() -> list[str]:
    """The environment that JAX reads once, when imported (``JAX_ENABLE_X64``, ``XLA_FLAGS``, ...):
    a zygote imported under other values is not used."""
    return sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith(("JAX_", "XLA_")))


_shared: Zygote | None = None
_shared_with: list[str] = []
_sharing = threading.Lock()
IDLE_S = 600.0  # a daemon unused for this long ends


def shared(path: str, preload: list[str] | tuple[str, ...] = (), *, daemon: bool = False) -> Zygote | None:
    """This process's zygote, started now if there is none (or it died); None where forking is not to be used.

    ``daemon``: use (or start) this user's daemon zygote, shared by successive ``course grade`` commands,
    instead of one that ends with this process. ``$COURSE_WARM`` overrides: ``0`` turns the zygote off
    (every grading process starts from scratch, the old path), ``1`` never uses a daemon, ``daemon``
    always does. A platform without ``fork`` (Windows) or ``socket.send_fds`` starts processes from scratch.
    """
    setting = os.environ.get("COURSE_WARM", "")
    if setting == "0" or not hasattr(os, "fork") or not hasattr(socket, "send_fds"):
        return None
    with _sharing:
        return _zygote(path, preload, daemon=setting == "daemon" or (daemon and setting != "1"))


def _zygote(path: str, preload, *, daemon: bool) -> Zygote:
    global _shared, _shared_with
    if _shared is not None and _shared.alive() and (_shared.proc is None) == daemon:
        if _shared_with == imported_with():
            return _shared
        shut_down()  # JAX's settings changed since it was imported there
    _shared_with = imported_with()
    if daemon:
        try:
            _shared = Zygote.daemon(preload, path=path, idle=float(os.environ.get("COURSE_WARM_IDLE", IDLE_S)))
            return _shared
        except (ZygoteError, OSError):
            pass  # a zygote of our own, then
    _shared = Zygote.start(preload, path=path)
    atexit.register(shut_down)  # it ends with us; say so now, rather than leave it to the interpreter's exit
    return _shared


def shut_down() -> None:
    global _shared
    if _shared is not None:
        _shared.close()
        _shared = None


if __name__ == "__main__":
    _command_line(sys.argv[1:])
