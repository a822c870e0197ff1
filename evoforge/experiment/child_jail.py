"""How a warm worker's child becomes a jail of its own (zygote.py forks it): fresh mount, IPC and UTS namespaces,
only its trial folder of the trials folder, a fresh /tmp and /dev/shm, a read-only /dev, no capability, its job's
environment shown in /proc. What every child sets up alike (the layout) is worked out once by the zygote."""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x4000000, 0x8000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = (
    0x1, 0x2, 0x4, 0x20, 0x1000, 0x2000, 0x4000, 0x40000)
MS_NOEXEC, MS_NOATIME, MS_NODIRATIME, MS_RELATIME, ST_RELATIME = 0x8, 0x400, 0x800, 0x200000, 0x1000
MNT_DETACH = 2
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
CAP_VERSION_3 = 0x20080522
FRESH = ".evoforge-fresh"  # the scratch folder a child builds its fresh /tmp (/dev/shm) in before moving it over
ROOM_VAR = "EVOFORGE_ENVIRON_ROOM"  # the padding variable that makes room in a zygote's environment block
PROBE = ".evoforge-probe"  # the trial name of the self-test each zygote runs before it says ready
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount, _libc.umount2, _libc.unshare, _libc.prctl, _libc.capset  # noqa: B018 - resolved once, before any fork
_CapHeader, _CapData = ctypes.c_uint32 * 2, ctypes.c_uint32 * 6


class Setup(Exception):
    """A child could not be set up (a namespace, mount or capability step failed)."""


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise Setup(f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                       flags, data.encode() if data else None), f"mount {target}")


def _unescape(field: str) -> str:
    """A mountinfo path: octal escapes (\\040 for a space) decoded."""
    return field.encode().decode("unicode_escape").encode("latin-1").decode(errors="surrogateescape")


def mount_points() -> list[str]:
    """Every mount point of this mount namespace, in /proc/self/mountinfo's order (parents before children)."""
    with open("/proc/self/mountinfo") as fh:
        return [_unescape(line.split()[4]) for line in fh]


class Fresh:
    """What a child's fresh tmpfs over `path` (/tmp, /dev/shm) holds, worked out once per worker by its zygote: the
    folders, symlinks and empty files bwrap made there (mount points and links, copied as the skeleton) and the top
    mounts below `path` to bind again. The zygote's /tmp and /dev/shm stay as they were at its start: only processes
    of its mount namespace can write them (each child leaves it before anything of the task runs), and no mount can
    appear on them or below them later (the zygote's mount namespace is private once laid out, settle_zygote: no
    host mount propagates in). Were the layout stale, a child's fresh /tmp could only lack an entry (or fail to set
    up), never show one more."""

    __slots__ = ("path", "scratch", "skeleton", "tops")

    def __init__(self, path: str, staging: str) -> None:
        self.path, self.scratch = path, os.path.join(path, FRESH)
        os.makedirs(self.scratch, exist_ok=True)
        inner = [p for p in mount_points() if p.startswith(path + "/")
                 and not any(p == q or p.startswith(q + "/") for q in (self.scratch, staging))]
        tops = [p for p in inner if not any(p.startswith(q + "/") for q in inner)]
        self.tops = [(top, self.scratch + top[len(path):]) for top in dict.fromkeys(tops)]
        self.skeleton = _skeleton(path, self.scratch, (self.scratch, staging))


def _skeleton(old: str, new: str, skip: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """What copies the folders, symlinks and (empty) files of the file system at `old` to `new`, without entering
    mounts or `skip`: [(path under `new`, None for a folder, "" for an empty file, else a symlink's target)], parents
    first. bwrap made them there as mount points and links; their mounts are bound again afterwards."""
    device = os.lstat(old).st_dev
    made: list[tuple[str, str | None]] = []
    for folder, dirs, files in os.walk(old):
        target = os.path.normpath(os.path.join(new, os.path.relpath(folder, old)))
        for name in list(dirs):
            path, dest = os.path.join(folder, name), os.path.join(target, name)
            if path in skip:
                dirs.remove(name)
                continue
            if os.path.islink(path):
                made.append((dest, os.readlink(path)))
                continue
            made.append((dest, None))
            if os.lstat(path).st_dev != device:  # a mount point: made, not entered
                dirs.remove(name)
        for name in files:
            path, dest = os.path.join(folder, name), os.path.join(target, name)
            made.append((dest, os.readlink(path) if os.path.islink(path) else ""))
    return made


def fresh_tmpfs(fresh: Fresh, size_mb: int | None) -> None:
    """Mount an empty tmpfs over `fresh.path` (/tmp, /dev/shm) in this mount namespace, keeping what the jail mounted
    below it (read-only binds of a virtualenv or task folder under /tmp, the run folder's masks)."""
    options = "mode=1777" + (f",size={size_mb * 1024 * 1024}" if size_mb else "")
    _mount("tmpfs", fresh.scratch, "tmpfs", MS_NOSUID | MS_NODEV, options)
    for dest, link in fresh.skeleton:
        if link is None:
            os.mkdir(dest)
        elif link:
            os.symlink(link, dest)
        else:
            os.close(os.open(dest, os.O_CREAT | os.O_WRONLY, 0o644))
    for top, dest in fresh.tops:
        _mount(top, dest, None, MS_BIND | MS_REC)
    _mount(fresh.scratch, fresh.path, None, MS_MOVE)


def read_only(path: str) -> None:
    """Remount the mount at `path` read-only, keeping its other flags (an unprivileged bwrap's are locked)."""
    flags = os.statvfs(path).f_flag
    keep = flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)
    keep |= MS_RELATIME if flags & ST_RELATIME else 0
    _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep)


def _trial_folder(trials: str, staging: str, name: str) -> None:
    """Mount only the trial `name` at its real path: a fresh tmpfs over the (masked) trials folder, the trial's
    folder bound from the staging mount onto it, the tmpfs made read-only."""
    _mount("tmpfs", trials, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    os.mkdir(os.path.join(trials, name))
    source = staging if name == PROBE else os.path.join(staging, name)
    _mount(source, os.path.join(trials, name), None, MS_BIND)
    _mount(None, trials, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def bounding_set() -> list[int]:
    """The capabilities in this process's bounding set (CapBnd of /proc/self/status; every one this kernel knows
    where that cannot be read): a child drops these. The set can only shrink, so a child of this process holds no
    other."""
    try:
        with open("/proc/self/status") as fh:
            bits = int(next(line for line in fh if line.startswith("CapBnd:")).split()[1], 16)
        return [cap for cap in range(bits.bit_length()) if bits >> cap & 1]
    except (OSError, ValueError, StopIteration):
        try:
            with open("/proc/sys/kernel/cap_last_cap") as fh:
                return list(range(int(fh.read()) + 1))
        except (OSError, ValueError):
            return list(range(64))


CAP_SETPCAP, CAP_SYS_ADMIN = 8, 21  # what a zygote uses: dropping from the bounding set, and mounting


def narrow_bounding_set(keep: tuple[int, ...] = (CAP_SETPCAP, CAP_SYS_ADMIN)) -> list[int]:
    """In the zygote, once: drop from its bounding set every capability but `keep` (the bounding set only bounds what
    an exec could gain; a zygote never execs), so that each child has those few left to drop, not every one the
    kernel knows. Returns the bounding set left (the whole set where a drop fails: each child then drops them)."""
    for cap in bounding_set():
        if cap not in keep and _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break
    return bounding_set()


def settle_zygote() -> None:
    """In the zygote, once, what each child would otherwise do alike and inherits through fork instead: its mount
    namespace made private (a child's copy of it is private from the start: no host mount propagates in, none out),
    its /dev read-only (no one in the jail may write it: the worker's /dev outlives every child), no ambient
    capability and no_new_privs (both only matter at an exec, which the zygote never does; neither can be undone)."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    read_only("/dev")
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear the ambient capabilities")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs")


def drop_capabilities(bounding: list[int]) -> None:
    """No capability left, none to regain (the ambient set is empty and no_new_privs set since settle_zygote):
    bounding set emptied (`bounding`: the capabilities in it, bounding_set()), capset to zero."""
    for cap in bounding:
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
    header = _CapHeader(CAP_VERSION_3, 0)
    data = _CapData()  # effective, permitted, inheritable, for capabilities 0-31 and 32-63
    _check(_libc.capset(header, data), "capset")


class Layout:
    """What each child of this worker sets up alike, worked out once by the zygote before its first fork (so no
    child reads /proc/self/mountinfo or walks /tmp): the trials folder and the staging path, the fresh /tmp and
    /dev/shm, the capabilities left in the bounding set for each child to drop (the zygote narrows it to the two it
    uses first), and where the environment block lies (fork keeps it in place) with how much of it the zygote's own
    environment fills (settle_environ)."""

    __slots__ = ("trials", "staging", "fresh", "bounding", "environ", "shown", "env")

    def __init__(self, trials: str, staging: str) -> None:
        self.trials, self.staging = trials, staging
        self.fresh = [Fresh(path, staging) for path in ("/tmp", "/dev/shm")]
        self.bounding = narrow_bounding_set()
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        self.environ = int(fields[47]), int(fields[48])  # env_start and env_end (fields 50 and 51 of proc(5))
        self.shown, self.env = 0, dict(os.environ)


def enter(job: dict, layout: Layout) -> None:
    """In the forked child: the namespaces, mounts and capability drop that make it a jail of its own."""
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")  # copies of private mounts
    staging = layout.staging
    _trial_folder(layout.trials, staging, job["trial"])
    if _libc.umount2(staging.encode(), MNT_DETACH) != 0:  # locked (an unprivileged bwrap's mounts): covered instead
        _mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=0")
    for fresh in layout.fresh:
        fresh_tmpfs(fresh, job.get("tmp_mb"))
    drop_capabilities(layout.bounding)


def settle_environ(layout: Layout) -> None:
    """In the zygote, once: its environment (but the room) copied off the initial block, so that no variable points
    into it and a child may write over it (show_environ) and keep every variable it shares with its job as it is
    (take_environ); then the block shows that environment, zeros after it."""
    layout.env = {name: value for name, value in os.environ.items() if name != ROOM_VAR}
    os.environ.clear()
    os.environ.update(layout.env)
    layout.shown = show_environ(layout.env, layout.environ, layout.environ[1] - layout.environ[0])


def take_environ(env: dict, layout: Layout) -> None:
    """Make os.environ (and the C library's environment) `env`, setting only what differs from the zygote's
    (`layout.env`, which os.environ holds at the fork)."""
    own = layout.env
    for name in [name for name in own if name not in env]:
        del os.environ[name]
    for name, value in env.items():
        if own.get(name) != value:
            os.environ[name] = value


def show_environ(env: dict, block: tuple[int, int], shown: int) -> int:
    """Write `env` over this process's initial environment block (`block`: its start and end address; its first
    `shown` bytes in use, zeros after them), what /proc/PID/environ shows (evoforge's sweep and the tests find a
    trial's processes by it; a forked child would still show the zygote's). The worker starts with a padding variable
    that makes room; settle_environ made sure no variable points into the block. Returns the bytes written."""
    start, end = block
    first = sorted(env, key=lambda name: not name.startswith("EVOFORGE_TRIAL"))  # the token and folder, if cut short
    data = "".join(f"{name}={env[name]}\0" for name in first).encode(errors="surrogateescape")
    if len(data) > end - start:  # cut after the last whole variable that fits
        data = data[: data.rfind(b"\0", 0, end - start) + 1]
    size = max(len(data), shown)
    ctypes.memmove(start, data.ljust(size, b"\0"), size)
    return len(data)




class MountHold:
    """The zygote's hold on its children's mount namespaces: each child hands its own over (an open
    /proc/self/ns/mnt in a datagram the zygote reads only later) once it has entered it, so its exit does not tear the
    namespace down (its mounts unmounted, a wait for an RCU grace period, all before the zygote hears of the exit);
    the zygote lets it go once it has reported the job. No process is left in the namespace meanwhile: only its mounts
    linger. One socket pair serves every job of a zygote (no new sockets per job); a child closes its copies of both
    ends before anything of the task runs."""

    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.ours.setblocking(False)  # (recv_fds passes no flags to recvmsg before Python 3.12)

    def give(self) -> None:
        """In the child, once it has entered its namespaces: hand the mount namespace over (a failure only costs
        the teardown at its exit), and close both ends."""
        with contextlib.suppress(OSError):
            fd = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            try:
                self.theirs.sendmsg(_HELD, [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))])
            finally:
                os.close(fd)
        os.close(self.ours.detach())
        os.close(self.theirs.detach())

    def release(self) -> int:
        """In the zygote, once the job is reported: let the namespace go (torn down now, off the report's path);
        nothing waits when the child failed before it gave (a child gives once, before the task runs). Returns how
        many namespaces were let go (1, or 0 for a child that did not give)."""
        try:
            _, fds, _, _ = socket.recv_fds(self.ours, 1, 1)
        except OSError:
            return 0
        for fd in fds:
            os.close(fd)
        return len(fds)


_HELD = [b"m"]
