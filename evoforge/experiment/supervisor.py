"""Stdlib-only supervisor that runs one evaluation command under its limits and leaves nothing behind.

Usage: `python -I -S supervisor.py [--memory-mb N] [--cpu-s N] [--max-open-files N] [--max-processes N]
[--nproc-rlimit N] [--disk-mb N] [--isolation bwrap|unshare|none] [--network off] [--status-fd N] [--lifeline-fd N]
[--parent-pid N] [--writable DIR] [--readonly DIR]... [--mask PATH]... [--hide PATH]... [--tmp-mb N]
[--pass-fd N]... -- argv...`. It forks the command with the rlimits set in the child (address space, CPU, open
files, largest file, no core dumps, RLIMIT_NPROC when not root), polls the tree and kills it all past
max_processes tasks (the kernel ignores RLIMIT_NPROC for root), then kills and reaps every remaining descendant
and exits like the child (re-raising its fatal signal). On SIGTERM it passes SIGTERM on to all descendants, gives
them a short grace, then SIGKILLs them. With `--status-fd` it is PID 1 of a bwrap jail the sandbox started: it
writes `ready` there once started and at the end the command's exact wait status (bwrap would turn a fatal signal
into 128+N); at EOF on `--lifeline-fd` (a pipe only evoforge holds open) it stops as on SIGTERM, which covers an
evoforge that died before bwrap's --die-with-parent took hold. The harness supervises its own evaluation the same
way (`serve`). With `unshare` and no status fd it is the outer one (outer.py). It imports builtins only (no
subprocess, ctypes, enum or dataclasses), so it starts in about the time of a bare `python -I -S`.
"""

from __future__ import annotations

import _signal as signal  # the C module under `signal`, without its enums (5 ms at start)
import os
import resource
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from types import ModuleType

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE_S = 0.5
REAP_DEADLINE_S = 5.0
POLL_S = 0.05
LIFELINE_S = 0.25  # at most this long between looks at the lifeline
SCAN_SHARE = 20  # wait this many times as long as a /proc scan took before the next one
SETUP_FAILED = 125
INT_OPTIONS = ("parent-pid", "memory-mb", "cpu-s", "max-open-files", "max-processes", "nproc-rlimit", "status-fd",
               "disk-mb", "tmp-mb", "lifeline-fd")
LIST_OPTIONS = ("readonly", "pass-fd", "mask", "hide")
MODES = ("bwrap", "unshare", "none")
READY = b"ready\n"  # written on the status fd once started (before the fork): the sandbox boosts us then
RESTORED_SIGNALS = ("SIGPIPE", "SIGXFSZ")  # the interpreter ignores them; the command gets the default back


class Options:
    """Parsed command line; `status_fd` set means this is the inner supervisor inside the wrapper."""

    def __init__(self) -> None:
        self.parent_pid: int | None = None  # the evoforge process: when it dies, this supervisor gets SIGTERM
        self.memory_mb: int | None = None
        self.cpu_s: int | None = None
        self.max_open_files: int | None = None
        self.max_processes: int | None = None
        self.nproc_rlimit: int | None = None
        self.disk_mb: int | None = None  # RLIMIT_FSIZE: no single file grows past it
        self.tmp_mb: int | None = None  # bwrap: size of the private /tmp and /dev/shm
        self.status_fd: int | None = None
        self.lifeline_fd: int | None = None  # a pipe whose write end only evoforge holds: at EOF, stop as on SIGTERM
        self.isolation = "none"
        self.network = True
        self.writable: str | None = None
        self.readonly: list[str] = []
        self.pass_fd: list[str] = []  # inherited descriptors the command keeps (the channel)
        self.mask: list[str] = []  # bwrap: emptied before the read-only folders are bound
        self.hide: list[str] = []  # bwrap: emptied after them (files only the evaluator sees)


def _prctl(option: int, value: int) -> int:
    """prctl(2) through ctypes, imported only here: the jailed supervisor (PID 1 under bwrap) needs none."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        return ctypes.get_errno()
    return 0


def _boost(pid: int = 0) -> None:
    """Run `pid` at real-time priority where allowed (not inherited by its children): a fork bomb cannot starve it.
    Under bwrap it holds no capability to: the sandbox boosts it once it says `ready` on its status fd."""
    try:
        os.sched_setscheduler(pid, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(1))
    except (OSError, AttributeError):
        pass


def process_table() -> dict[int, tuple[int, int]]:
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


def descendants(table: dict[int, tuple[int, int]] | None = None, root: int | None = None) -> list[int]:
    """Pids of every live process below `root` (default: this one), found through the parent links in /proc."""
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    stack = [os.getpid() if root is None else root]
    while stack:
        for pid in children.get(stack.pop(), []):
            found.append(pid)
            stack.append(pid)
    return found


def _task_count() -> int:
    """Processes and threads below this one (what RLIMIT_NPROC would count)."""
    table = process_table()
    return sum(table[pid][1] for pid in descendants(table))


def signal_all(sig: int, skip: Collection[int] = ()) -> None:
    for pid in descendants():
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


def clean_up() -> None:
    """SIGKILL and reap every descendant until none is left (bounded by a deadline)."""
    deadline = time.monotonic() + REAP_DEADLINE_S
    while time.monotonic() < deadline:
        signal_all(signal.SIGKILL)
        _reap_all()
        if not descendants():
            _reap_all()
            return
        time.sleep(0.01)


def _apply_limits(opts: Options) -> None:
    """In the forked child: rlimits, no blocked signals, in `unshare` mode no capabilities, and only stdin, stdout,
    stderr and the passed descriptors open."""
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
    low = 3
    for fd in [*fds(opts), 1 << 30]:
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1


def _lower(which: int, value: int) -> None:
    """Set both limits to `value`, or to the hard limit when that is lower (an unprivileged user cannot raise it)."""
    _, hard = resource.getrlimit(which)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (value, value))


def _package_on_path() -> None:
    """Put the folder holding `evoforge` on sys.path (-I leaves it off) for the modules only some modes need."""
    if (root := os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))) not in sys.path:
        sys.path.insert(0, root)


def _isolation() -> ModuleType:
    """evoforge.experiment.isolation (stdlib only), imported only in unshare mode, which needs it."""
    _package_on_path()
    from evoforge.experiment import isolation

    return isolation


def parse_args(argv: list[str]) -> tuple[Options, list[str]]:
    split = argv.index("--") if "--" in argv else len(argv)
    options, command = argv[:split], argv[split + 1 :]
    opts = Options()
    if len(options) % 2:
        raise SystemExit(f"evoforge supervisor: option {options[-1]} has no value")
    for flag, value in zip(options[::2], options[1::2], strict=True):
        name = flag.removeprefix("--")
        if name in INT_OPTIONS and value.isdigit():
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


def wait_child(pid: int, *, max_tasks: int | None = None, skip: Collection[int] = (),
               grace_s: float = GRACE_S, lifeline: int | None = None) -> tuple[int, str]:
    """Wait for the child with SIGTERM and SIGCHLD blocked; returns (raw status, "" / "terminated" / "too_many").

    Orphans re-parented to us are reaped as they die. With `max_tasks` the tree is counted every POLL_S or more
    (first POLL_S after the fork, when it was the child alone) and the wait ends when it holds more tasks. On
    SIGTERM, or once the `lifeline` pipe's far end (evoforge) is gone, every descendant except those in `skip` gets
    SIGTERM and the child a grace of `grace_s`; the caller then SIGKILLs whatever is left.
    """
    watched = {signal.SIGTERM, signal.SIGCHLD}
    pause = 1.0 if lifeline is None else LIFELINE_S
    next_scan = time.monotonic() + POLL_S  # at the fork the tree is the child alone: first counted POLL_S later
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, ""
        if lifeline is not None and lifeline_cut(lifeline):
            break
        _reap_orphans(pid)
        timeout = pause
        if max_tasks is not None:
            if (scan_start := time.monotonic()) >= next_scan:  # not at each wake (a dying orphan's SIGCHLD)
                if (count := _task_count()) > max_tasks:
                    sys.stderr.write(f"evoforge supervisor: process limit exceeded ({count} processes and threads > "
                                     f"max_processes={max_tasks}); killed the whole process tree\n")
                    return signal.SIGKILL, "too_many"
                pause = max(POLL_S, SCAN_SHARE * (time.monotonic() - scan_start))  # at most ~5% of a core
                pause = pause if lifeline is None else min(pause, LIFELINE_S)
                next_scan = time.monotonic() + pause
            timeout = min(pause, max(next_scan - time.monotonic(), 0.001))
        info = signal.sigtimedwait(watched, timeout)
        if info is not None and info.si_signo == signal.SIGTERM:
            break
    signal_all(signal.SIGTERM, skip)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, "terminated"
        signal.sigtimedwait({signal.SIGCHLD}, 0.02)
    return signal.SIGKILL, "terminated"


def lifeline_cut(fd: int) -> bool:
    """True once no one holds the write end of the pipe `fd` reads (evoforge died); nothing is ever written to it."""
    try:
        return os.read(fd, 1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


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


def exit_like(status: int) -> None:
    """Exit with the child's exit code, or die of the child's fatal signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def uid_tasks() -> int:
    """Processes and threads the real user runs now (RLIMIT_NPROC counts them all, not just this trial's)."""
    uid, count = os.getuid(), 0
    for pid, (_, threads) in process_table().items():
        try:
            count += threads if os.stat(f"/proc/{pid}").st_uid == uid else 0
        except OSError:
            continue
    return count


def fds(opts: Options) -> list[int]:
    return sorted(int(fd) for fd in opts.pass_fd if fd.isdigit())


def _exec_child(opts: Options, command: list[str]) -> None:
    """The child's part for a command: the signals the interpreter ignores back to their defaults, then exec."""
    for name in RESTORED_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    os.execvp(command[0], command)


def run_child(opts: Options, start: Callable[[], object], name: str) -> tuple[int, str]:
    """Fork; the child applies the limits and calls `start` (which execs or exits); wait for it, then kill every
    descendant. Returns (raw wait status, how it ended)."""
    if opts.isolation == "unshare" and opts.status_fd is not None and opts.writable:
        try:
            from pathlib import Path

            _isolation().protect_mounts(Path(opts.writable), [Path(p) for p in opts.readonly])
        except OSError as exc:
            sys.stderr.write(f"evoforge supervisor: cannot make the task and run folders read-only: {exc}\n")
            return SETUP_FAILED << 8, ""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError as exc:
        sys.stderr.write(f"evoforge supervisor: cannot start {name!r}: {exc}\n")
        return 127 << 8, ""
    if pid == 0:  # the child: whatever happens here, it must never return into the supervisor's code
        try:
            _apply_limits(opts)
            start()
        except BaseException as exc:  # noqa: BLE001
            try:
                os.write(2, f"evoforge supervisor: cannot start {name!r}: {type(exc).__name__}: {exc}\n".encode())
            finally:
                os._exit(127)
        os._exit(0)
    status, ended = wait_child(pid, max_tasks=opts.max_processes, lifeline=opts.lifeline_fd)
    if ended != "too_many" or opts.status_fd is None:  # inside a PID namespace our exit kills the rest at once
        clean_up()
    return status, ended


def _prologue(opts: Options) -> None:
    """Block SIGTERM and SIGCHLD (waited for), die with evoforge, reap orphans, run at real-time priority."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGCHLD})
    if opts.parent_pid is not None:  # evoforge killed (kill -9 included): stop the trial as on a timeout
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != opts.parent_pid:
            os._exit(128 + signal.SIGTERM)
    if os.getpid() != 1 and (errno := _prctl(PR_SET_CHILD_SUBREAPER, 1)):  # PID 1 of a jail reaps all anyway
        sys.stderr.write(f"evoforge supervisor: prctl(PR_SET_CHILD_SUBREAPER) failed: errno {errno}\n")
    _boost()
    if opts.lifeline_fd is not None:  # under bwrap: evoforge may have died before bwrap asked for its parent's death
        os.set_blocking(opts.lifeline_fd, False)
        if lifeline_cut(opts.lifeline_fd):
            os._exit(128 + signal.SIGTERM)
    if opts.status_fd is None and opts.max_processes is not None and os.getuid() != 0 and opts.nproc_rlimit is None:
        opts.nproc_rlimit = uid_tasks() + opts.max_processes


def _finish(status: int, ended: str) -> None:
    if ended == "terminated":
        os._exit(128 + signal.SIGTERM)
    exit_like(status)


def serve(opts: Options, start: Callable[[], object], name: str) -> None:
    """Supervise `start()`, called in a forked child under the limits (the harness runs its evaluation so, as the
    jail's PID 1, saving a second interpreter); report on the status fd and exit like the child. Never returns."""
    _prologue(opts)
    if opts.status_fd is not None:
        os.write(opts.status_fd, READY)
    status, ended = run_child(opts, start, name)
    if opts.status_fd is not None:
        os.write(opts.status_fd, f"{status} {ended or 'exited'}\n".encode())
    _finish(status, ended)


def main(argv: list[str]) -> None:
    opts, command = parse_args(argv)
    if opts.isolation == "none" or opts.status_fd is not None:
        serve(opts, lambda: _exec_child(opts, command), command[0])
    _prologue(opts)
    _package_on_path()
    from evoforge.experiment import outer  # the wrapper around an inner copy of this script

    _finish(*outer.run_wrapped(opts, command, sys.modules[__name__]))


if __name__ == "__main__":
    main(sys.argv[1:])
