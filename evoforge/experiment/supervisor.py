"""Stdlib-only supervisor that runs one evaluation command under its limits and isolation and leaves nothing behind.

The sandbox starts it as `python -I -S supervisor.py [--memory-mb N] [--cpu-s N] [--max-open-files N]
[--max-processes N] [--disk-mb N] [--tmp-mb N] [--isolation bwrap|unshare|none] [--network off]
[--writable DIR] [--readonly DIR]... [--mask PATH]... [--hide PATH]... [--pass-fd N]... -- argv...`. It marks
itself a child subreaper (prctl), so descendants that double-fork into a new session are re-parented here.

With isolation `none` it runs the command itself: rlimits in the child (address space, CPU, open files, and
RLIMIT_NPROC when not root), a poll that kills the whole tree when it holds more than max_processes tasks (the
kernel ignores RLIMIT_NPROC for root), then it kills and reaps every remaining descendant and exits with the
child's status (re-raising the child's fatal signal on itself). With `bwrap` or `unshare` it starts the wrapper
(see isolation.py) around a second, inner copy of itself which does all of the above inside the namespaces and
sends the command's wait status back through a pipe; when the inner one exits, the PID namespace dies with
everything in it. On SIGTERM it passes SIGTERM on to all descendants, gives them a short grace, then SIGKILLs them.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE_S = 0.5
OUTER_GRACE_S = 0.9  # above the inner supervisor's grace, below the sandbox's TERM_GRACE_S
REAP_DEADLINE_S = 5.0
POLL_S = 0.05
SCAN_SHARE = 20  # wait this many times as long as a /proc scan took before the next one
SETUP_FAILED = 125
INT_OPTIONS = ("parent-pid", "memory-mb", "cpu-s", "max-open-files", "max-processes", "nproc-rlimit", "status-fd",
               "disk-mb", "tmp-mb")
LIST_OPTIONS = ("readonly", "pass-fd", "mask", "hide")
MODES = ("bwrap", "unshare", "none")


def _isolation() -> ModuleType:
    """evoforge.experiment.isolation (stdlib only), imported only when a mode other than none needs it."""
    root = str(Path(__file__).resolve().parents[2])  # -I leaves the package's folder off sys.path
    if root not in sys.path:
        sys.path.insert(0, root)
    from evoforge.experiment import isolation

    return isolation


@dataclass
class Options:
    """Parsed command line; `status_fd` set means this is the inner supervisor inside the wrapper."""

    parent_pid: int | None = None  # the evoforge process: when it dies, this supervisor gets SIGTERM
    memory_mb: int | None = None
    cpu_s: int | None = None
    max_open_files: int | None = None
    max_processes: int | None = None
    nproc_rlimit: int | None = None
    disk_mb: int | None = None  # RLIMIT_FSIZE: no single file grows past it
    tmp_mb: int | None = None  # bwrap: size of the private /tmp and /dev/shm
    status_fd: int | None = None
    isolation: str = "none"
    network: bool = True
    writable: str | None = None
    readonly: list[str] = field(default_factory=list)
    pass_fd: list[str] = field(default_factory=list)  # inherited descriptors the command keeps (the channel)
    mask: list[str] = field(default_factory=list)  # bwrap: emptied before the read-only folders are bound
    hide: list[str] = field(default_factory=list)  # bwrap: emptied after them (files only the evaluator sees)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _set_subreaper() -> None:
    if _libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.stderr.write(f"evoforge supervisor: prctl(PR_SET_CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}\n")


def _boost(pid: int = 0) -> None:
    """Run `pid` at real-time priority where allowed (not inherited by its children): a fork bomb cannot starve it."""
    try:
        os.sched_setscheduler(pid, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(1))
    except (OSError, AttributeError):
        pass


def _boost_inner(wrapper: int) -> None:
    """Boost the wrapper's child, the inner supervisor (under bwrap it has no capability to do so itself)."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        table = _process_table()
        kids = [pid for pid, (ppid, _) in table.items() if ppid == wrapper]
        if kids:
            _boost(kids[0])
        if kids or wrapper not in table:
            return
        time.sleep(0.002)


def _process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, thread count) of every live, non-zombie process visible in /proc."""
    table: dict[int, tuple[int, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 17 and fields[0] not in (b"Z", b"X"):
            table[int(name)] = (int(fields[1]), int(fields[17]))
    return table


def _descendants(table: dict[int, tuple[int, int]] | None = None) -> list[int]:
    """Pids of every live process below this one, found through the parent links in /proc."""
    table = _process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    stack = [os.getpid()]
    while stack:
        for pid in children.get(stack.pop(), []):
            found.append(pid)
            stack.append(pid)
    return found


def _task_count() -> int:
    """Processes and threads below this one (what RLIMIT_NPROC would count)."""
    table = _process_table()
    return sum(table[pid][1] for pid in _descendants(table))


def _signal_all(sig: int, skip: Collection[int] = ()) -> None:
    for pid in _descendants():
        if pid not in skip:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def _reap_all() -> None:
    """Reap zombie children without blocking; orphans re-parented to us show up here too."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _clean_up() -> None:
    """SIGKILL and reap every descendant until none is left (bounded by a deadline)."""
    deadline = time.monotonic() + REAP_DEADLINE_S
    while time.monotonic() < deadline:
        _signal_all(signal.SIGKILL)
        _reap_all()
        if not _descendants():
            _reap_all()
            return
        time.sleep(0.01)


def _limits_setter(opts: Options) -> Callable[[], None]:
    """The preexec function of the command: rlimits, and in `unshare` mode no capabilities."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if opts.memory_mb is not None:
            size = opts.memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (size, size))
        if opts.cpu_s is not None:
            resource.setrlimit(resource.RLIMIT_CPU, (opts.cpu_s, opts.cpu_s + 1))
        if opts.max_open_files is not None:
            _lower(resource.RLIMIT_NOFILE, opts.max_open_files)
        if opts.disk_mb is not None:
            _lower(resource.RLIMIT_FSIZE, opts.disk_mb * 1024 * 1024)
        if opts.nproc_rlimit is not None:
            _lower(resource.RLIMIT_NPROC, opts.nproc_rlimit)
        if opts.isolation == "unshare":
            _isolation().drop_capabilities()
        signal.pthread_sigmask(signal.SIG_SETMASK, set())

    return apply


def _lower(which: int, value: int) -> None:
    """Set both limits to `value`, or to the hard limit when that is lower (an unprivileged user cannot raise it)."""
    _, hard = resource.getrlimit(which)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (value, value))


def _parse_args(argv: list[str]) -> tuple[Options, list[str]]:
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    opts = Options()
    for flag, value in zip(options[::2], options[1::2], strict=True):
        name = flag.removeprefix("--")
        if name in INT_OPTIONS:
            setattr(opts, name.replace("-", "_"), int(value))
        elif name in LIST_OPTIONS:
            getattr(opts, name.replace("-", "_")).append(value)
        elif name == "isolation" and value in MODES:
            opts.isolation = value
        elif name == "network" and value in ("on", "off"):
            opts.network = value == "on"
        elif name == "writable":
            opts.writable = value
        else:
            raise SystemExit(f"evoforge supervisor: bad option {flag} {value}")
    if not command:
        raise SystemExit("evoforge supervisor: no command after --")
    return opts, command


def _wait_child(pid: int, *, max_tasks: int | None = None, skip: Collection[int] = ()) -> tuple[int, str]:
    """Wait for the child with SIGTERM and SIGCHLD blocked; returns (raw status, "" / "terminated" / "too_many").

    Orphans re-parented to us are reaped as they die. With `max_tasks` the tree is polled and the wait ends
    when it holds more tasks. On SIGTERM every descendant except those in `skip` gets SIGTERM and the child a
    short grace; the caller then SIGKILLs whatever is left.
    """
    watched = {signal.SIGTERM, signal.SIGCHLD}
    pause = 1.0
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, ""
        _reap_orphans(pid)
        if max_tasks is not None:
            scan_start = time.monotonic()
            if (count := _task_count()) > max_tasks:
                sys.stderr.write(f"evoforge supervisor: process limit exceeded ({count} processes and threads > "
                                 f"max_processes={max_tasks}); killed the whole process tree\n")
                return signal.SIGKILL, "too_many"
            pause = max(POLL_S, SCAN_SHARE * (time.monotonic() - scan_start))  # at most ~5% of a core
        info = signal.sigtimedwait(watched, pause)
        if info is not None and info.si_signo == signal.SIGTERM:
            break
    _signal_all(signal.SIGTERM, skip)
    grace = OUTER_GRACE_S if skip else GRACE_S
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, "terminated"
        signal.sigtimedwait({signal.SIGCHLD}, 0.02)
    return signal.SIGKILL, "terminated"


def _reap_orphans(keep: int) -> None:
    """Reap dead children other than `keep` (whose status the caller still needs)."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid == keep:
            return
        os.waitpid(info.si_pid, 0)


def _exit_like(status: int) -> None:
    """Exit with the child's exit code, or die of the child's fatal signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def _uid_tasks() -> int:
    """Processes and threads the real user runs now (RLIMIT_NPROC counts them all, not just this trial's)."""
    uid, count = os.getuid(), 0
    for pid, (_, threads) in _process_table().items():
        try:
            count += threads if os.stat(f"/proc/{pid}").st_uid == uid else 0
        except OSError:
            continue
    return count


def _run_command(opts: Options, command: list[str]) -> tuple[int, str]:
    """Run the command as our child under the limits, wait for it, then kill every descendant."""
    if opts.isolation == "unshare" and opts.status_fd is not None and opts.writable:
        try:
            _isolation().protect_mounts(Path(opts.writable), [Path(p) for p in opts.readonly])
        except OSError as exc:
            sys.stderr.write(f"evoforge supervisor: cannot make the task and run folders read-only: {exc}\n")
            return SETUP_FAILED << 8, ""
    try:
        child = subprocess.Popen(command, preexec_fn=_limits_setter(opts), pass_fds=_fds(opts))
    except (OSError, subprocess.SubprocessError) as exc:
        sys.stderr.write(f"evoforge supervisor: cannot start {command[0]!r}: {exc}\n")
        return 127 << 8, ""
    status, ended = _wait_child(child.pid, max_tasks=opts.max_processes)
    child.returncode = 0  # the status is ours now; keep Popen from waiting on the pid again
    if ended != "too_many" or opts.status_fd is None:  # inside a PID namespace our exit kills the rest at once
        _clean_up()
    return status, ended


def _inner_argv(opts: Options, jail: Any, status_fd: int, command: list[str]) -> list[str]:
    argv = [sys.executable, "-I", "-S", str(Path(__file__).resolve()), "--status-fd", str(status_fd),
            "--isolation", opts.isolation, "--writable", str(jail.writable)]
    for name in ("memory_mb", "cpu_s", "max_open_files", "max_processes", "nproc_rlimit", "disk_mb"):
        if (value := getattr(opts, name)) is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    for folder in jail.readonly:
        argv += ["--readonly", str(folder)]
    for fd in opts.pass_fd:
        argv += ["--pass-fd", fd]
    return [*_isolation().wrapper_argv(jail), *argv, "--", *command]


def _fds(opts: Options) -> list[int]:
    return [int(fd) for fd in opts.pass_fd if fd.isdigit()]


def _die_with_parent() -> None:
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _run_wrapped(opts: Options, command: list[str]) -> tuple[int, str]:
    """Start the wrapper around the inner supervisor; returns the command's status as the inner one reported it."""
    isolation = _isolation()
    if opts.writable:  # the evoforge process named what must be visible (it knows its virtualenv; we run -I -S)
        readonly = tuple(sorted((Path(p) for p in opts.readonly), key=lambda p: len(p.parts)))
        jail = isolation.Jail(opts.isolation, opts.network, Path(opts.writable), readonly, Path.cwd(),
                              masked=tuple(Path(p) for p in opts.mask), hidden=tuple(Path(p) for p in opts.hide),
                              tmp_mb=opts.tmp_mb)
    else:
        jail = isolation.jail_for(opts.isolation, opts.network, os.environ, Path.cwd())
    read_end, write_end = os.pipe()
    try:  # its own process group: the sandbox's SIGTERM to our group must not kill bwrap before the grace
        wrapper = subprocess.Popen(_inner_argv(opts, jail, write_end, command), pass_fds=[write_end, *_fds(opts)],
                                   process_group=0, preexec_fn=_die_with_parent)
    except (OSError, subprocess.SubprocessError) as exc:
        sys.stderr.write(f"evoforge supervisor: cannot start {opts.isolation}: {exc}\n")
        return 127 << 8, ""
    finally:
        os.close(write_end)
    _boost_inner(wrapper.pid)
    status, ended = _wait_child(wrapper.pid, skip={wrapper.pid})
    wrapper.returncode = 0
    _clean_up()
    os.set_blocking(read_end, False)
    try:
        reported = os.read(read_end, 64).split()
    except BlockingIOError:
        reported = []
    os.close(read_end)
    if ended != "terminated" and len(reported) == 2 and reported[0].isdigit():
        return int(reported[0]), reported[1].decode()
    return status, ended


def main(argv: list[str]) -> None:
    opts, command = _parse_args(argv)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGCHLD})
    if opts.parent_pid is not None:  # evoforge killed (kill -9 included): stop the trial as on a timeout
        _libc().prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != opts.parent_pid:
            os._exit(128 + signal.SIGTERM)
    _set_subreaper()
    _boost()
    if opts.status_fd is None and opts.max_processes is not None and os.getuid() != 0:
        opts.nproc_rlimit = _uid_tasks() + opts.max_processes
    if opts.isolation == "none" or opts.status_fd is not None:
        status, ended = _run_command(opts, command)
        if opts.status_fd is not None:
            os.write(opts.status_fd, f"{status} {ended or 'exited'}\n".encode())
    else:
        status, ended = _run_wrapped(opts, command)
    if ended == "terminated":
        os._exit(128 + signal.SIGTERM)
    _exit_like(status)


if __name__ == "__main__":
    main(sys.argv[1:])
