"""Stdlib-only supervisor that runs one evaluation command as a child subreaper and leaves nothing behind.

The sandbox starts it as `python -I -S supervisor.py [--memory-mb N] [--cpu-s N] -- argv...`. It marks itself
a child subreaper (prctl), so descendants that double-fork into a new session are re-parented here; it applies
the rlimits in its child only, waits for the child, then kills and reaps every remaining descendant and exits
with the child's status (re-raising the child's fatal signal on itself). On SIGTERM it passes SIGTERM on to
all descendants, gives the child a short grace, then SIGKILLs them all.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
GRACE_S = 0.5
REAP_DEADLINE_S = 5.0


def _set_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        sys.stderr.write(f"evoforge supervisor: prctl(PR_SET_CHILD_SUBREAPER) failed: errno {errno}\n")


def _descendants() -> list[int]:
    """Pids of every live process below this one, found through the parent links in /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields and fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(name))
    found: list[int] = []
    stack = [os.getpid()]
    while stack:
        for pid in children.get(stack.pop(), []):
            found.append(pid)
            stack.append(pid)
    return found


def _signal_all(sig: int) -> None:
    for pid in _descendants():
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


def _limits_setter(memory_mb: int | None, cpu_s: int | None):  # noqa: ANN202 - a preexec callable
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if memory_mb is not None:
            size = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (size, size))
        if cpu_s is not None:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
        signal.pthread_sigmask(signal.SIG_SETMASK, set())

    return apply


def _parse_args(argv: list[str]) -> tuple[int | None, int | None, list[str]]:
    memory_mb: int | None = None
    cpu_s: int | None = None
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    for flag, value in zip(options[::2], options[1::2], strict=True):
        if flag == "--memory-mb":
            memory_mb = int(value)
        elif flag == "--cpu-s":
            cpu_s = int(value)
        else:
            raise SystemExit(f"evoforge supervisor: unknown option {flag}")
    if not command:
        raise SystemExit("evoforge supervisor: no command after --")
    return memory_mb, cpu_s, command


def _wait_child(pid: int) -> tuple[int, bool]:
    """Wait for the child with SIGTERM and SIGCHLD blocked; returns (raw status, whether SIGTERM arrived).

    Orphans re-parented to us are reaped as they die. On SIGTERM every descendant gets SIGTERM and the child a
    short grace; the caller then SIGKILLs whatever is left.
    """
    watched = {signal.SIGTERM, signal.SIGCHLD}
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, False
        _reap_orphans(pid)
        info = signal.sigtimedwait(watched, 1.0)
        if info is not None and info.si_signo == signal.SIGTERM:
            break
    _signal_all(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, True
        signal.sigtimedwait({signal.SIGCHLD}, 0.02)
    return signal.SIGKILL, True


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


def main(argv: list[str]) -> None:
    memory_mb, cpu_s, command = _parse_args(argv)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGCHLD})
    _set_subreaper()
    try:
        child = subprocess.Popen(command, preexec_fn=_limits_setter(memory_mb, cpu_s))
    except OSError as exc:
        sys.stderr.write(f"evoforge supervisor: cannot start {command[0]!r}: {exc}\n")
        os._exit(127)
    status, terminated = _wait_child(child.pid)
    child.returncode = 0  # the status is ours now; keep Popen from waiting on the pid again
    _clean_up()
    if terminated:
        os._exit(128 + signal.SIGTERM)
    _exit_like(status)


if __name__ == "__main__":
    main(sys.argv[1:])
