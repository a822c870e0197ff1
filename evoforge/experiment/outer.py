"""The outer supervisor of the `unshare` mode (and of `supervisor.py --isolation bwrap` from the command line): it
starts the isolation wrapper around an inner copy of the supervisor and exits as the command did.

Under bwrap the sandbox does this work itself (sandbox.py starts `bwrap ... -- supervisor.py --status-fd N`),
so a bwrap evaluation runs one supervisor, not two. `unshare` cannot die with its parent, report a fatal signal
exactly or keep a grace on SIGTERM, so this outer process stays in its chain: it dies with evoforge (parent-death
signal), keeps the wrapper in a process group of its own (the sandbox's SIGTERM reaches the jail through it,
with a grace), boosts the inner supervisor, and reads the command's wait status from the inner one's pipe.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from evoforge.experiment import isolation

if TYPE_CHECKING:
    from evoforge.experiment.supervisor import Options

OUTER_GRACE_S = 0.9  # above the inner supervisor's grace, below the sandbox's TERM_GRACE_S
PR_SET_PDEATHSIG = 1
SIGKILL = 9


def _boost_inner(core: ModuleType, wrapper: int) -> None:
    """Boost the wrapper's child, the inner supervisor (under the wrapper it has no capability to do so itself)."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        table = core.process_table()
        kids = [pid for pid, (ppid, _) in table.items() if ppid == wrapper]
        if kids:
            core._boost(kids[0])
        if kids or wrapper not in table:
            return
        time.sleep(0.002)


def inner_argv(opts: Options, jail: isolation.Jail, status_fd: int, command: list[str]) -> list[str]:
    """The wrapper's command line around the inner supervisor, which runs `command` under the same limits."""
    argv = [sys.executable, "-I", "-S", str(Path(__file__).with_name("supervisor.py")), "--status-fd",
            str(status_fd), "--isolation", jail.mode, "--writable", str(jail.writable)]
    for name in ("memory_mb", "cpu_s", "max_open_files", "max_processes", "nproc_rlimit", "disk_mb"):
        if (value := getattr(opts, name)) is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    for folder in jail.readonly:
        argv += ["--readonly", str(folder)]
    for fd in opts.pass_fd:
        argv += ["--pass-fd", fd]
    return [*isolation.wrapper_argv(jail), *argv, "--", *command]


def _die_with_parent() -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
    import signal

    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def run_wrapped(opts: Options, command: list[str], core: ModuleType) -> tuple[int, str]:
    """Start the wrapper around the inner supervisor; returns the command's status as the inner one reported it.

    `opts` are the supervisor's parsed options and `core` the supervisor module (its wait and clean-up helpers).
    """
    if opts.writable:  # the evoforge process named what must be visible (it knows its virtualenv; we run -I -S)
        readonly = tuple(sorted((Path(p) for p in opts.readonly), key=lambda p: len(p.parts)))
        jail = isolation.Jail(opts.isolation, opts.network, Path(opts.writable), readonly, Path.cwd(),
                              masked=tuple(Path(p) for p in opts.mask), hidden=tuple(Path(p) for p in opts.hide),
                              tmp_mb=opts.tmp_mb)
    else:
        jail = isolation.jail_for(opts.isolation, opts.network, os.environ, Path.cwd())
    read_end, write_end = os.pipe()
    try:  # its own process group: the sandbox's SIGTERM to our group must not kill the wrapper before the grace
        wrapper = subprocess.Popen(inner_argv(opts, jail, write_end, command),
                                   pass_fds=[write_end, *core.fds(opts)], process_group=0,
                                   preexec_fn=_die_with_parent)
    except (OSError, subprocess.SubprocessError) as exc:
        sys.stderr.write(f"evoforge supervisor: cannot start {jail.mode}: {exc}\n")
        return 127 << 8, ""
    finally:
        os.close(write_end)
    _boost_inner(core, wrapper.pid)
    status, ended = core.wait_child(wrapper.pid, skip={wrapper.pid}, grace_s=OUTER_GRACE_S)
    wrapper.returncode = 0  # the status is ours now; keep Popen from waiting on the pid again
    core.clean_up()
    os.set_blocking(read_end, False)
    try:
        lines = [line for line in os.read(read_end, 256).splitlines() if line and line != core.READY.strip()]
    except BlockingIOError:
        lines = []
    os.close(read_end)
    reported = lines[-1].split() if lines else []
    if ended != "terminated" and len(reported) == 2 and reported[0].isdigit():
        return int(reported[0]), reported[1].decode()
    return status, ended
