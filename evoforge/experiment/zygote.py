"""PID 1 of a warm bwrap jail (warm.py): a zygote that never runs task code and forks a fresh child per evaluation.

Usage: `python -m evoforge.experiment.zygote --control-fd N --status-fd N --lifeline-fd N --staging DIR --trials DIR`.
The jail is the evaluator's jail of the run (bwrap keeps CAP_SYS_ADMIN and CAP_SETPCAP for this process alone), but
instead of one trial folder the run's trials folder is bound writable at `--staging`. Per job (one JSON message on
the control socket, the stage's channel, stdout and stderr as SCM_RIGHTS descriptors) it forks a child which,
before anything of the task runs, enters mount, IPC and UTS namespaces of its own, mounts its trial folder at its
real path (nothing else of the trials folder), detaches the staging mount (covers it where an unprivileged bwrap
locked it), gets a fresh /tmp and /dev/shm and a read-only /dev, drops every capability for good, shows the job's
environment in /proc, sets the rlimits and runs the harness's evaluation in place of a new interpreter. The
child is waited for as supervisor.py waits (max_processes poll, exact wait status); then every other process in
the jail's PID namespace is killed and reaped, and the status is reported on the control socket. On SIGTERM or at
EOF of the lifeline (evoforge gone) the job is stopped as supervisor.py stops one and the zygote exits.
It imports the standard library, the harness and the supervisor only, all before the first fork.
"""

from __future__ import annotations

import _signal as signal
import ctypes
import gc
import json
import os
import select
import socket
import sys
import time

from evoforge.experiment import harness, supervisor

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x4000000, 0x8000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = (
    0x1, 0x2, 0x4, 0x20, 0x1000, 0x2000, 0x4000, 0x40000)
MS_NOEXEC, MS_NOATIME, MS_NODIRATIME, MS_RELATIME, ST_RELATIME = 0x8, 0x400, 0x800, 0x200000, 0x1000
MNT_DETACH = 2
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
CAP_VERSION_3 = 0x20080522
FRESH = ".evoforge-fresh"  # the scratch folder a child builds its fresh /tmp (/dev/shm) in before moving it over
PROBE = ".evoforge-probe"  # the trial name of the self-test each zygote runs before it says ready
MESSAGE_BYTES = 1 << 20
REAP_DEADLINE_S = 5.0
SETUP_FAILED = 125
_libc = ctypes.CDLL(None, use_errno=True)


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


def _skeleton(old: str, new: str, skip: tuple[str, ...]) -> None:
    """Copy the folders, symlinks and (empty) files of the file system at `old` to `new`, without entering mounts
    or `skip`: bwrap made them there as mount points and links; their mounts are bound again afterwards."""
    device = os.lstat(old).st_dev
    for folder, dirs, files in os.walk(old):
        target = os.path.normpath(os.path.join(new, os.path.relpath(folder, old)))
        for name in list(dirs):
            path, dest = os.path.join(folder, name), os.path.join(target, name)
            if path in skip:
                dirs.remove(name)
                continue
            if os.path.islink(path):
                os.symlink(os.readlink(path), dest)
                continue
            os.makedirs(dest, exist_ok=True)
            if os.lstat(path).st_dev != device:  # a mount point: made, not entered
                dirs.remove(name)
        for name in files:
            path, dest = os.path.join(folder, name), os.path.join(target, name)
            if os.path.islink(path):
                os.symlink(os.readlink(path), dest)
            else:
                os.close(os.open(dest, os.O_CREAT | os.O_WRONLY, 0o644))


def fresh_tmpfs(path: str, size_mb: int | None, staging: str) -> None:
    """Mount an empty tmpfs over `path` (/tmp, /dev/shm) in this mount namespace, keeping what the jail mounted
    below it (read-only binds of a virtualenv or task folder under /tmp, the run folder's masks)."""
    scratch = os.path.join(path, FRESH)
    inner = [p for p in mount_points() if p.startswith(path + "/")
             and not any(p == q or p.startswith(q + "/") for q in (scratch, staging))]
    tops = [p for p in inner if not any(p.startswith(q + "/") for q in inner)]
    options = "mode=1777" + (f",size={size_mb * 1024 * 1024}" if size_mb else "")
    _mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, options)
    _skeleton(path, scratch, (scratch, staging))
    for top in dict.fromkeys(tops):
        _mount(top, scratch + top[len(path):], None, MS_BIND | MS_REC)
    _mount(scratch, path, None, MS_MOVE)


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


def drop_capabilities() -> None:
    """No capability left, none to regain: ambient cleared, bounding set emptied, no_new_privs, capset to zero."""
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear the ambient capabilities")
    try:
        last = int(open("/proc/sys/kernel/cap_last_cap").read())
    except (OSError, ValueError):
        last = 63
    for cap in range(last + 1):
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs")
    header = (ctypes.c_uint32 * 2)(CAP_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable, for capabilities 0-31 and 32-63
    _check(_libc.capset(header, data), "capset")


def enter(job: dict, trials: str, staging: str) -> None:
    """In the forked child: the namespaces, mounts and capability drop that make it a jail of its own."""
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _trial_folder(trials, staging, job["trial"])
    if _libc.umount2(staging.encode(), MNT_DETACH) != 0:  # locked (an unprivileged bwrap's mounts): covered instead
        _mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=0")
    for path in ("/tmp", "/dev/shm"):
        fresh_tmpfs(path, job.get("tmp_mb"), staging)
    read_only("/dev")  # the jail's /dev (a tmpfs of device nodes) is the worker's: nothing written there stays
    drop_capabilities()


def show_environ(env: dict) -> None:
    """Write `env` over this process's initial environment block, what /proc/PID/environ shows (evoforge's sweep and
    the tests find a trial's processes by it; a forked child would still show the zygote's). The worker starts with
    a padding variable that makes room; call it once os.environ no longer points into the block (cleared)."""
    with open("/proc/self/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[47]), int(fields[48])  # env_start and env_end (fields 50 and 51 of proc(5))
    data = b""
    first = sorted(env, key=lambda name: not name.startswith("EVOFORGE_TRIAL"))  # the token and folder, if cut short
    for name, value in ((name, env[name]) for name in first):
        entry = f"{name}={value}".encode(errors="surrogateescape") + b"\0"
        if len(data) + len(entry) > end - start:
            break
        data += entry
    ctypes.memmove(start, data.ljust(end - start, b"\0"), end - start)


def _options(job: dict) -> supervisor.Options:
    opts = supervisor.Options()
    for name, value in (job.get("limits") or {}).items():
        if name in ("memory_mb", "cpu_s", "max_open_files", "max_processes", "nproc_rlimit", "disk_mb") and (
                value is None or isinstance(value, int)):
            setattr(opts, name, value)
    opts.isolation = "bwrap"
    opts.pass_fd = ["3"]
    return opts


def child(job: dict, fds: list[int], trials: str, staging: str) -> None:
    """The child of one job: becomes its own jail, takes the job's descriptors (channel 3, stdout 1, stderr 2, stdin
    /dev/null) and environment, then runs the harness's evaluation. Never returns."""
    stderr = fds[2]
    try:
        enter(job, trials, staging)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as a fresh interpreter has it
        os.setsid()
        high = [os.dup(fd) for fd in fds]  # above 3 before anything is placed there
        null = os.open("/dev/null", os.O_RDONLY)
        for fd, target in ((null, 0), (high[1], 1), (high[2], 2), (high[0], 3)):
            os.dup2(fd, target)
        stderr = 2
        supervisor._apply_limits(_options(job))  # rlimits, no blocked signal, only 0-3 left open
        os.chdir(job["cwd"])
        os.environ.clear()
        show_environ(job["env"])
        os.environ.update(job["env"])
        sys.argv = [harness.__file__, *job["argv"]]
        sys.path[0] = job["cwd"]  # as `python -m` in the trial folder would have it
    except BaseException as exc:  # noqa: BLE001 - whatever happens here, the child must not return
        try:
            os.write(stderr, f"evoforge warm worker: cannot set up the evaluation: {type(exc).__name__}: {exc}\n"
                     .encode())
        finally:
            os._exit(SETUP_FAILED)
    harness._evaluate(job["argv"])  # exits the process
    os._exit(1)


def kill_all() -> bool:
    """SIGKILL and reap every process of the jail but this one (PID 1); False when some outlived the deadline."""
    deadline = time.monotonic() + REAP_DEADLINE_S
    while time.monotonic() < deadline:
        try:
            os.kill(-1, signal.SIGKILL)  # from PID 1: every process in the namespace but itself
        except ProcessLookupError:
            pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return True
        signal.sigtimedwait({signal.SIGCHLD}, 0.01)
    return False


def run_job(job: dict, fds: list[int], trials: str, staging: str, lifeline: int | None) -> tuple[int, str, bool]:
    """Fork the job's child and wait for it as the supervisor does; then kill the rest. Returns (raw wait status,
    how it ended, whether the jail is empty again)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError as exc:
        os.write(fds[2], f"evoforge warm worker: cannot fork: {exc}\n".encode())
        return 127 << 8, "exited", True
    if pid == 0:
        child(job, fds, trials, staging)
    own = os.dup(2)
    os.dup2(fds[2], 2)  # what the supervisor says of the job (a process limit) goes to the job's stderr
    for fd in fds:
        os.close(fd)
    try:
        status, ended = supervisor.wait_child(pid, max_tasks=_options(job).max_processes, lifeline=lifeline)
        return status, ended or "exited", kill_all()
    finally:
        sys.stderr.flush()
        os.dup2(own, 2)
        os.close(own)


def _send(control: socket.socket, message: dict) -> bool:
    """Send one message to evoforge; False when it is gone."""
    try:
        control.send(json.dumps(message).encode())
    except OSError:
        return False
    return True


def _probe(trials: str, staging: str) -> str:
    """Set up one child as a job would (namespaces, mounts, capability drop) and exit: '' when that works, else why."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            enter({"trial": PROBE}, trials, staging)
            with open("/proc/self/status") as fh:
                caps = [line.split()[1] for line in fh if line.startswith(("CapEff", "CapPrm", "CapBnd"))]
            if any(int(c, 16) for c in caps):
                raise Setup(f"capabilities left after the drop: {caps}")
        except BaseException as exc:  # noqa: BLE001
            os.write(write, f"{type(exc).__name__}: {exc}".encode())
            os._exit(1)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        why = fh.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    return why or ("" if status == 0 else f"the self-test ended with status {status}")


def serve(control: socket.socket, trials: str, staging: str, lifeline: int | None, status_fd: int | None) -> int:
    """Say ready, then run jobs until the control socket or the lifeline closes, or SIGTERM; returns the exit code."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGCHLD})
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the one signal a child could send its PID 1 (Python handles it)
    for path in ("/tmp", "/dev/shm"):
        os.makedirs(os.path.join(path, FRESH), exist_ok=True)
    gc.freeze()  # what is here stays out of the children's collections: fewer of its pages copied on write
    why = _probe(trials, staging)
    if why:
        _send(control, {"ready": False, "error": why})
        return SETUP_FAILED
    if status_fd is not None:
        os.write(status_fd, supervisor.READY)  # evoforge boosts this process now (its children run normally)
    _send(control, {"ready": True})
    watched = [control] + ([lifeline] if lifeline is not None else [])
    while True:
        ready, _, _ = select.select(watched, [], [])
        if lifeline in ready and supervisor.lifeline_cut(lifeline):
            return 128 + signal.SIGTERM
        if control not in ready:
            continue
        message, fds, _, _ = socket.recv_fds(control, MESSAGE_BYTES, 8)
        if not message or signal.SIGTERM in signal.sigpending():
            return 0 if not message else 128 + signal.SIGTERM
        try:
            job = json.loads(message)
            if len(fds) != 3 or "/" in job["trial"] or job["trial"] in ("", ".", "..", PROBE):
                raise ValueError("a job needs 3 descriptors and a trial folder's name")
        except (ValueError, KeyError, TypeError) as exc:
            for fd in fds:
                os.close(fd)
            _send(control, {"error": f"bad job: {exc}"})
            continue
        status, ended, empty = run_job(job, fds, trials, staging, lifeline)
        if not _send(control, {"status": status, "ended": ended, "empty": empty}) or not empty:
            return 1
        if ended == "terminated":
            return 128 + signal.SIGTERM


def main(argv: list[str]) -> None:
    values = dict(zip(argv[::2], argv[1::2], strict=False))
    try:
        control = socket.socket(fileno=int(values["--control-fd"]))
        trials, staging = values["--trials"], values["--staging"]
    except (KeyError, ValueError) as exc:
        raise SystemExit(f"evoforge zygote: bad command line ({exc}): {argv}") from None
    lifeline = int(values["--lifeline-fd"]) if "--lifeline-fd" in values else None
    status_fd = int(values["--status-fd"]) if "--status-fd" in values else None
    if lifeline is not None:
        os.set_blocking(lifeline, False)
    os._exit(serve(control, trials, staging, lifeline, status_fd))


if __name__ == "__main__":
    main(sys.argv[1:])
