"""Each sandbox in Linux namespaces of its own: it sees Python, the libraries, ``course/`` and its lab — nothing else.

The sandbox is forked warm from its fork server (JAX imported), so it cannot be started by a tool that
execs a new program (bubblewrap) without losing the warm start. It isolates itself instead, through
the kernel's own interface, before any student code runs (:func:`enter`):

1. ``unshare(2)``: new mount, PID, network, IPC and UTS namespaces (and, when the grader is not root, a
   user namespace that maps only the grader's own user id, from which the sandbox takes the rights to
   mount and then drops every capability).
2. ``fork``: the child is process 1 of the new PID namespace. It sees no other process of the machine
   (``/proc`` is its own), cannot signal one, and when it ends the kernel kills everything it started.
   The parent stays outside, waits, and exits as the child did, so that the fork server sees the
   sandbox end as before.
3. A new root (``pivot_root``) on a small ``tmpfs``, with read-only bind mounts of only what a lab
   needs (:func:`visible_paths`): ``/usr``, ``/etc``, Python and its libraries, the ``course`` package
   (not the checkout around it: no ``solutions/``, no ``tests/``), the lab file itself; a fresh
   ``/proc``; a few device nodes; and private, size-limited ``/tmp``, ``/dev/shm`` and working folder,
   which vanish with the sandbox. The JAX compilation cache is the one writable folder it is given
   (its own submission's), or a read-only warm cache under a private writable layer (overlayfs).
4. An identity: as root, a user id that no other sandbox has (``UID_BASE`` + its process id); as
   another user, that user inside its user namespace with no capabilities. ``no_new_privs`` either way.

The network namespace has only a loopback interface, down: no network, not even 127.0.0.1 (and no
abstract Unix socket of the machine). :func:`available` tells whether this machine allows all that.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import sys

# <sched.h>, <sys/mount.h>, <linux/prctl.h>
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}

FAILED = 71  # a sandbox's exit status when the kernel refused to isolate it (course.grader.inside)
UID_BASE = 0x70000000  # + the sandbox's process id: a user id no other process of the machine has
TMPFS_BYTES = 512 << 20  # each of the sandbox's writable folders (/tmp, its working folder, /dev/shm)
DEVICES = ("null", "zero", "full", "random", "urandom")
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/sys", "/opt")


class IsolationError(OSError):
    """The kernel refused a step of the isolation (the message says which)."""


_libc = None


def _c():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise IsolationError(err, f"{what}: {os.strerror(err)}")
    return result


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = [None if s is None else s.encode() for s in (source, target, fstype, data)]
    _check(_c().mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]), f"mount {target}")


def _syscall(table: dict[str, int], *args) -> int:
    number = table.get(os.uname().machine)
    if number is None:
        raise IsolationError(errno.ENOSYS, f"no system call number for {os.uname().machine}")
    return _c().syscall(ctypes.c_long(number), *args)


# ---------------------------------------------------------------------------------------------------
# What a sandbox sees


def visible_paths() -> list[str]:
    """The folders bound read-only into every sandbox: the system's, Python's, the libraries', ``course/``.

    A folder on ``sys.path`` that holds the ``course`` package (a checkout, an editable install) is
    not bound whole: only its ``course/`` is, so that ``solutions/`` and ``tests/`` beside it stay unseen.
    """
    course = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
    found = [p for p in SYSTEM if os.path.lexists(p)] + [os.path.join(course, "course")]
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    for entry in [*prefixes, *sys.path]:
        if not entry or not os.path.isdir(entry):
            continue
        real = os.path.realpath(entry)
        if real == course or os.path.isfile(os.path.join(real, "course", "grader", "isolation.py")):
            found.append(os.path.join(real, "course"))
        elif not _contains(real, course):
            found.append(real)
    # The interpreter itself, where it is a link into another folder (a venv's bin/python -> /usr/bin).
    found.append(os.path.dirname(os.path.realpath(sys.executable)))
    unique: list[str] = []
    for path in sorted(set(found), key=len):  # a folder already bound covers what is inside it
        if not any(_contains(outer, path) for outer in unique):
            unique.append(path)
    return unique


def _contains(outer: str, inner: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


# ---------------------------------------------------------------------------------------------------
# Entering it (in the sandbox, before any student code)


def enter(*, lab_path: str, workdir: str, uid: int | None, gid: int | None, cache: dict | None) -> tuple[int, int]:
    """Isolate this process (a fresh fork, one thread); return the ``(uid, gid)`` it now runs as.

    Returns in process 1 of a new PID namespace; the process that called it stays outside, waits for
    it and exits as it does. ``uid``/``gid``: the sandbox's user as root chose it (None: keep ours, in
    a user namespace). ``cache``: ``{"path": P, "lower": L or None}``: the JAX cache folder to give the
    sandbox, read-write (``lower`` None), or ``lower`` read-only under a private writable layer at ``P``.
    """
    root = os.geteuid() == 0
    shown = visible_paths()  # before the root changes
    own_uid, own_gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | (0 if root else CLONE_NEWUSER)
    _check(_c().unshare(flags), "unshare")
    if not root:  # our own user id only, inside as outside
        # Writable only by a dumpable process (the fork server is not: course.grader.privacy); nothing
        # outside this namespace sees the sandbox to make use of that.
        _c().prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{own_uid} {own_uid} 1")
        _write("/proc/self/gid_map", f"{own_gid} {own_gid} 1")
    if root:
        uid = gid = UID_BASE + os.getpid() if uid is None else uid
    else:
        uid, gid = own_uid, own_gid
    child = os.fork()
    if child:
        _wait_as_parent(child)
    _build_root(shown + [lab_path], workdir, uid, gid, cache)
    _become(uid, gid, root)
    return uid, gid


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _wait_as_parent(child: int) -> None:
    """Outside the namespace: wait for its first process, then end the same way (a signal as a signal)."""
    os.closerange(3, 65536)  # the sandbox's pipes: the grader sees them close when the child ends
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        import resource

        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the same death, without a core file of ours
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 70)


def _build_root(shown: list[str], workdir: str, uid: int, gid: int, cache: dict | None) -> None:
    private = MS_NOSUID | MS_NODEV
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", "/tmp", "tmpfs", private, "mode=0755,size=16m")  # staging: becomes our root for a moment
    os.chdir("/tmp")
    for name in ("newroot", "oldroot"):
        os.mkdir(name, 0o755)
    _mount("tmpfs", "newroot", "tmpfs", private, "mode=0755,size=16m")
    _check(_syscall(SYS_PIVOT_ROOT, b"/tmp", b"/tmp/oldroot"), "pivot_root")
    os.chdir("/")
    new = "/newroot"
    _proc_and_dev(new)
    size = f"size={TMPFS_BYTES},mode=1777"
    for folder in ("/tmp", "/dev/shm"):  # first: the lab file and the caches may be bound inside /tmp
        os.makedirs(new + folder, exist_ok=True)
        _mount("tmpfs", new + folder, "tmpfs", private, size)
    for path in shown:
        _bind(path, new, writable=False)
    os.makedirs(new + workdir, exist_ok=True)
    _mount("tmpfs", new + workdir, "tmpfs", private, f"size={TMPFS_BYTES},mode=0700,uid={uid},gid={gid}")
    if cache:
        _give_cache(cache, new, uid, gid)
    _check(_c().umount2(b"/oldroot", MNT_DETACH), "umount the old root")
    os.chdir(new)
    _check(_syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root into the sandbox's root")
    _check(_c().umount2(b".", MNT_DETACH), "umount the staging root")
    os.chdir("/")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | private)


def _bind(path: str, new: str, *, writable: bool, target: str | None = None) -> None:
    """``/oldroot/PATH`` at ``NEW/TARGET`` (default PATH); a link is made again as the same link."""
    source, target = "/oldroot" + path, new + (target or path)
    if os.path.islink(source) and path in SYSTEM:  # /lib -> usr/lib on merged-/usr systems
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.lexists(target):
            os.symlink(os.readlink(source), target)
        return
    if not os.path.exists(source) or os.path.lexists(target):
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.isdir(source):
        os.mkdir(target)
    else:
        open(target, "wb").close()
    _mount(source, target, None, MS_BIND | MS_REC)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | (0 if writable else MS_RDONLY) | _locked(target)
    _mount(None, target, None, flags)


def _locked(path: str) -> int:
    """The flags a remount must keep (in a user namespace, the kernel refuses to clear them)."""
    st = os.statvfs(path)
    kept = 0
    for flag, mount_flag in ((os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC), (os.ST_NOSUID, MS_NOSUID)):
        if st.f_flag & flag:
            kept |= mount_flag
    return kept


def _proc_and_dev(new: str) -> None:
    os.makedirs(new + "/proc", exist_ok=True)
    _mount("proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.makedirs(new + "/dev", exist_ok=True)
    _mount("tmpfs", new + "/dev", "tmpfs", MS_NOSUID, "mode=0755,size=64k")
    for name in DEVICES:
        if os.path.exists(f"/oldroot/dev/{name}"):
            open(f"{new}/dev/{name}", "wb").close()
            _mount(f"/oldroot/dev/{name}", f"{new}/dev/{name}", None, MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1")):
        os.symlink(target, f"{new}/dev/{name}")
    os.symlink("/proc/self/fd/2", f"{new}/dev/stderr")


def _give_cache(cache: dict, new: str, uid: int, gid: int) -> None:
    """The JAX compilation cache: the submission's own folder (read-write), or a warm one read-only
    under a private layer that ends with the sandbox (overlayfs; an empty private folder where the
    kernel refuses it)."""
    path, lower = cache["path"], cache.get("lower")
    if lower is None:
        _bind(path, new, writable=True)
        return
    layer = new + "/tmp/.jax-cache"
    for name in ("upper", "work"):
        os.makedirs(f"{layer}/{name}")
        os.chown(f"{layer}/{name}", uid, gid)
    os.makedirs(new + path, exist_ok=True)
    if os.path.isdir("/oldroot" + lower):
        try:
            options = f"lowerdir=/oldroot{lower},upperdir={layer}/upper,workdir={layer}/work"
            _mount("overlay", new + path, "overlay", MS_NOSUID | MS_NODEV, options)
            return
        except IsolationError:
            pass
    _mount(f"{layer}/upper", new + path, None, MS_BIND)


def _become(uid: int, gid: int, root: bool) -> None:
    """The sandbox's identity, with no capabilities, no way to gain any, and killed with its parent."""
    c = _c()
    _check(c.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if root:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)  # from root to another user: every capability goes with it
    else:
        c.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        for cap in range(64):
            if c.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0:
                break
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable (two words each): none
        _check(_syscall(SYS_CAPSET, header, data), "dropping capabilities")
    # After the identity change, which clears it. Should the process outside die first, the fork
    # server (the subreaper this process then belongs to) kills it when it next reaps.
    c.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# ---------------------------------------------------------------------------------------------------
# Can this machine do it?

_PROBE = """
import os, sys
sys.path[:0] = [{path!r}]
from course.grader import isolation
pid = os.fork()
if pid == 0:
    try:
        isolation.enter(lab_path=isolation.__file__, workdir="/tmp/probe", uid=None, gid=None, cache=None)
        os._exit(0 if not os.path.exists({hidden!r}) and os.getpid() == 1 else 3)
    except BaseException as exc:
        print(exc, file=sys.stderr)
        os._exit(2)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""

_available: dict[int, str | None] = {}


def unavailable() -> str | None:
    """Why sandboxes cannot be isolated on this machine as this user, or None when they can (tried for real, once)."""
    if not sys.platform.startswith("linux"):
        return f"namespaces are Linux's ({sys.platform} has none)"
    if os.uname().machine not in SYS_PIVOT_ROOT:
        return f"no system call table for {os.uname().machine}"
    euid = os.geteuid()
    if euid not in _available:
        import subprocess

        course = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
        code = _PROBE.format(path=course, hidden=os.path.join(course, "pyproject.toml"))
        try:
            probe = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
            reason = None if probe.returncode == 0 else (probe.stderr.strip().splitlines() or ["it failed"])[-1]
        except (OSError, subprocess.SubprocessError) as exc:
            reason = str(exc)
        _available[euid] = reason
    return _available[euid]
