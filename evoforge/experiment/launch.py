"""How the sandbox starts one evaluation: its command line, and under bwrap the evoforge side of the jail.

Under bwrap the chain is evoforge → bwrap → supervisor (the jail's PID 1) → command: bwrap's own options do what
an outer supervisor did (`--die-with-parent`: the jail dies with evoforge; `--new-session`, the namespaces, the
capability drop), and `JailWatch` does the rest from here — it reads the jail's PID 1 from bwrap's `--info-fd` to
give it SIGTERM on a timeout (it passes it on with a grace), and the command's exact wait status from the
supervisor's `--status-fd` pipe, where the supervisor first says `ready` once it has started: then it is boosted
to real-time priority (a fork bomb cannot starve it; its own start ran at normal priority, as any process's).
Under unshare and none the supervisor is started as before (outer.py wraps unshare around an inner copy of it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import importlib.util
import json
import os
import py_compile
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from evoforge.config import Limits
from evoforge.experiment.isolation import bwrap_sizes_tmpfs, jail_for, wrapper_argv
from evoforge.experiment.isolation import resolve as resolve_isolation
from evoforge.experiment.supervisor import uid_tasks

SUPERVISOR = Path(__file__).with_name("supervisor.py")
# Starts the supervisor from its cached bytecode (a script given by path is compiled again at every start).
BOOT = "import sys; sys.path[:0] = [sys.argv.pop(1)]; import supervisor; supervisor.main(sys.argv[1:])"
HARNESS = "evoforge.experiment.harness"  # `python -m` it: the harness, which can supervise itself
SUPERVISED = "--supervised"  # the harness's flag for that (harness.SUPERVISED)
TERMINATED = 128 + signal.SIGTERM  # how a supervisor that stopped its command on SIGTERM exits
READY = b"ready\n"  # what the supervisor writes on its status fd once it has started (supervisor.READY)


def _limit_options(limits: Limits) -> list[str]:
    options: list[str] = []
    for flag, value in (("--memory-mb", limits.memory_mb), ("--cpu-s", limits.cpu_s),
                        ("--max-processes", limits.max_processes), ("--max-open-files", limits.max_open_files),
                        ("--disk-mb", limits.disk_mb)):
        if value is not None:
            options += [flag, str(value)]
    return options


def nproc_rlimit(limits: Limits) -> int | None:
    """RLIMIT_NPROC for a user other than root (the kernel counts all the user's tasks): theirs now + max_processes.
    Root is exempt from it; the supervisor's poll holds its trials instead. Scans /proc: call it off the loop."""
    if limits.max_processes is None or os.getuid() == 0:
        return None
    return uid_tasks() + limits.max_processes


@functools.cache
def compile_chain() -> None:
    """Byte-compile the modules every jailed start loads, once per process, where their cache is missing or stale:
    the jail cannot write bytecode, and PYTHONDONTWRITEBYTECODE (or a fresh checkout) would leave each evaluation
    compiling them again (milliseconds each). A read-only install is left as it is."""
    package = Path(__file__).resolve().parents[1]
    here = Path(__file__).parent
    for source in (SUPERVISOR, here / "harness.py", here / "zygote.py", here / "child_jail.py", package / "sandbox.py",
                   package / "__init__.py", package / "experiment" / "__init__.py"):
        cached = Path(importlib.util.cache_from_source(str(source)))
        with contextlib.suppress(OSError):
            if not cached.exists() or cached.stat().st_mtime < source.stat().st_mtime:
                py_compile.compile(str(source), cfile=str(cached), doraise=False, quiet=2)


def launch_argv(argv: Sequence[str], limits: Limits, env: Mapping[str, str], cwd: Path,
                pass_fds: Sequence[int] = (), hidden: Sequence[Path] = (), *, status_fd: int = -1,
                info_fd: int | None = None, lifeline_fd: int | None = None, nproc: int | None = None,
                harness: bool = False) -> list[str]:
    """The command line that runs `argv` in the sandbox; the isolation is resolved here (IsolationUnavailable).

    bwrap: bwrap around the supervisor as the jail's PID 1, which reports on `status_fd` (bwrap writes the jail's
    pid to `info_fd`) and stops when `lifeline_fd`'s write end (ours) closes; with `harness` (argv runs
    `python -m evoforge.experiment.harness`) the harness itself is that supervisor. unshare / none: the outer
    supervisor, which dies with this process (`--parent-pid`).
    The jail's folders are computed here, in the evoforge process, which knows its interpreter and virtualenv.
    """
    mode = resolve_isolation(limits.isolation, limits.network)
    compile_chain()
    supervisor = [sys.executable, "-I", "-S", "-c", BOOT, str(SUPERVISOR.parent)]
    fds = [arg for fd in pass_fds for arg in ("--pass-fd", str(fd))]
    if mode == "bwrap":
        jail = jail_for(mode, limits.network, env, cwd, hidden=hidden)
        if bwrap_sizes_tmpfs():  # decided once per process, not per trial
            jail = dataclasses.replace(jail, tmp_mb=limits.tmp_mb)
        inner = ["--status-fd", str(status_fd), "--isolation", mode, *_limit_options(limits), *fds]
        if nproc is not None:
            inner += ["--nproc-rlimit", str(nproc)]
        if lifeline_fd is not None:
            inner += ["--lifeline-fd", str(lifeline_fd)]
        if harness and HARNESS in argv:
            at = argv.index(HARNESS) + 1
            return [*wrapper_argv(jail, info_fd), *argv[:at], SUPERVISED, *inner, "--", *argv[at:]]
        return [*wrapper_argv(jail, info_fd), *supervisor, *inner, "--", *argv]
    cmd = [*supervisor, "--parent-pid", str(os.getpid()), *_limit_options(limits), "--isolation", mode]
    if not limits.network:
        cmd += ["--network", "off"]
    if mode != "none":
        jail = jail_for(mode, limits.network, env, cwd, hidden=hidden)
        cmd += ["--writable", str(jail.writable)]
        for flag, paths in (("--readonly", jail.readonly), ("--mask", jail.masked), ("--hide", jail.hidden)):
            for path in paths:
                cmd += [flag, str(path)]
    return [*cmd, *fds, "--", *argv]


def _boost(pid: int) -> None:
    """Real-time priority for the jail's supervisor where allowed (CAP_SYS_NICE); its command is forked back to
    normal. Under bwrap it has no capability to do this itself."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(pid, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(1))


class JailWatch:
    """The evoforge side of one bwrap jail: the pipes bwrap and the supervisor write to, the jail's lifeline (a
    pipe it reads and only we hold open for writing), and the jail's PID 1."""

    def __init__(self) -> None:
        self.status_r, self.status_w = os.pipe()
        self.info_r, self.info_w = os.pipe()
        self.life_r, self.life_w = os.pipe()  # the jail's lifeline: only this process ever holds the write end
        self.info = b""
        self.reported = b""
        self.pid1: int | None = None
        self.pidfd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def started(self) -> None:
        """The jail is starting: close our copies of the write ends and watch for bwrap's info."""
        for fd in (self.status_w, self.info_w, self.life_r):
            os.close(fd)
        self.status_w = self.info_w = self.life_r = -1
        for fd in (self.info_r, self.status_r):
            os.set_blocking(fd, False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.info_r, self.read_info)
        self._loop.add_reader(self.status_r, self._read_status)

    def _read_status(self) -> None:
        """Collect what the supervisor writes; boost it when it says `ready` (its start is done)."""
        try:
            chunk = os.read(self.status_r, 256)
        except BlockingIOError:
            return
        if not chunk:
            self._stop_watching(self.status_r)
            return
        before, self.reported = self.reported, self.reported + chunk
        if READY not in before and READY in self.reported:
            self.read_info()
            if self.pid1 is not None:
                _boost(self.pid1)

    def read_info(self) -> None:
        """Read bwrap's {"child-pid": N}; once whole, hold a pidfd to signal that process (the jail's PID 1)."""
        if self.pid1 is not None or self.info_r < 0:
            return
        try:
            chunk = os.read(self.info_r, 4096)
        except BlockingIOError:
            return
        self.info += chunk
        try:
            self.pid1 = int(json.loads(self.info)["child-pid"])
        except (ValueError, TypeError, KeyError):
            if chunk:  # not whole yet
                return
        self._stop_watching(self.info_r)
        if self.pid1 is not None:
            with contextlib.suppress(OSError, AttributeError):
                self.pidfd = os.pidfd_open(self.pid1)

    def terminate(self) -> bool:
        """SIGTERM the jail's supervisor, which passes it on with a grace; False when it cannot be reached."""
        self.read_info()
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signal.SIGTERM)
                return True
        except OSError:
            return False
        return False

    def status(self) -> int | None:
        """The command's return code as the supervisor reported it (negative: killed by that signal; 143: stopped on
        SIGTERM), or None when it reported nothing (bwrap failed, or the supervisor was killed)."""
        while self.status_r >= 0:
            try:
                chunk = os.read(self.status_r, 256)
            except OSError:  # BlockingIOError included: nothing more was written
                break
            self.reported += chunk
            if not chunk:
                break
        lines = [line for line in self.reported.splitlines() if line and line != READY.strip()]
        words = lines[-1].split() if lines else []
        if len(words) != 2 or not words[0].isdigit():
            return None
        if words[1] == b"terminated":
            return TERMINATED
        try:
            return os.waitstatus_to_exitcode(int(words[0]))
        except ValueError:
            return None

    def _stop_watching(self, fd: int) -> None:
        if self._loop is not None and fd >= 0:
            self._loop.remove_reader(fd)

    def close(self) -> None:
        for fd in (self.info_r, self.status_r):
            self._stop_watching(fd)
        self._loop = None
        for fd in (self.status_r, self.status_w, self.info_r, self.info_w, self.life_r, self.life_w, self.pidfd):
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.status_r = self.status_w = self.info_r = self.info_w = self.life_r = self.life_w = -1
        self.pidfd = None
