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
How a child becomes its jail is child_jail.py; what all children set up alike (the layout of their mounts) is
worked out once, before the first fork. It imports the standard library, the harness and the supervisor only, all
before the first fork, with the standard-library modules a child would import at each evaluation (PREIMPORTED).
The evaluator is compiled (never run) here once per content, and only the content the job names by its sha256 (the
run's sealed evaluator): each child runs that code object instead of reading and compiling the file (`precompiled`).
"""

from __future__ import annotations

import _signal as signal
import gc
import inspect  # noqa: F401 - see PREIMPORTED
import json
import os
import pkgutil  # noqa: F401 - see PREIMPORTED
import select
import socket
import sys
import time
import traceback  # noqa: F401 - see PREIMPORTED

from evoforge.experiment import harness, supervisor

try:  # the interpreter's own SHA-256, not OpenSSL's through hashlib: no libcrypto loaded (and copied at each fork)
    from _sha256 import sha256  # Python 3.11
except ImportError:
    try:
        from _sha2 import sha256  # Python 3.12 on
    except ImportError:
        from hashlib import sha256
from evoforge.experiment.child_jail import (
    PROBE,
    Layout,
    MountHold,
    Setup,
    enter,
    settle_environ,
    settle_zygote,
    show_environ,
    take_environ,
)

# Standard-library modules each child would otherwise import at every evaluation, imported once here (nothing of
# the task's or the candidate's): pkgutil, which runpy.run_path (a common way for an evaluator to load the program;
# runpy itself came with `python -m`) imports at each call, and what the harness imports for a failing evaluation
# (traceback) or a wrapped evaluate (inspect).
PREIMPORTED = ("pkgutil", "traceback", "inspect")
MESSAGE_BYTES = 1 << 20
COMPILED_KEPT = 4  # evaluators (by path) whose compiled code a zygote keeps
_compiled: dict[str, tuple[str, object, object]] = {}  # evaluator's real path -> (sha256, code object, blank module)
REAP_DEADLINE_S = 5.0
SETUP_FAILED = 125


def _options(job: dict) -> supervisor.Options:
    opts = supervisor.Options()
    for name, value in (job.get("limits") or {}).items():
        if name in ("memory_mb", "cpu_s", "max_open_files", "max_processes", "nproc_rlimit", "disk_mb") and (
                value is None or isinstance(value, int)):
            setattr(opts, name, value)
    opts.isolation = "bwrap"
    opts.pass_fd = ["3"]
    return opts


def child(job: dict, fds: list[int], layout: Layout, hold: MountHold | None = None,
          opts: supervisor.Options | None = None) -> None:
    """The child of one job: becomes its own jail (handing its mount namespace to `hold`), takes the job's
    descriptors (channel 3, stdout 1, stderr 2, stdin /dev/null) and environment, then runs the harness's
    evaluation under its limits (`opts`: _options(job), which the zygote worked out before the fork). Never
    returns."""
    stderr = fds[2]
    try:
        enter(job, layout)
        if hold is not None:
            hold.give()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as a fresh interpreter has it
        os.setsid()
        high = [os.dup(fd) for fd in fds]  # above 3 before anything is placed there
        null = os.open("/dev/null", os.O_RDONLY)
        for fd, target in ((null, 0), (high[1], 1), (high[2], 2), (high[0], 3)):
            os.dup2(fd, target)
        stderr = 2
        supervisor._apply_limits(opts or _options(job))  # rlimits, no blocked signal, only 0-3 left open
        os.chdir(job["cwd"])
        take_environ(job["env"], layout)
        show_environ(job["env"], layout.environ, layout.shown)
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


def precompiled(job: dict) -> tuple[str, object, object] | None:
    """(real path, code object, blank module) of the job's evaluator, compiled once per content, for its child to run
    in place of reading and compiling the file (harness.PRECOMPILED); only when the file holds the content whose
    sha256 the job names (the run's sealed evaluator), else None (the child loads the file as a fresh interpreter
    would, and says why if that fails). Compiling runs nothing of the evaluator; the module (made as the harness
    makes one from the file, harness.blank_module) is never run in here, so each child gets it blank through fork."""
    sealed, argv = job.get("evaluator_sha256"), job.get("argv")
    if not isinstance(sealed, str) or not isinstance(argv, list) or not argv or not isinstance(argv[0], str):
        return None
    try:
        path = os.path.realpath(argv[0])
        with open(path, "rb") as fh:
            source = fh.read()
    except (OSError, ValueError):
        return None
    if sha256(source).hexdigest() != sealed:
        return None
    known = _compiled.get(path)
    if known is None or known[0] != sealed:
        try:
            code, module = compile(source, path, "exec", dont_inherit=True), harness.blank_module(path)
        except Exception:  # noqa: BLE001 - a syntax error and the like: the child reports it as it loads the file
            return None
        if len(_compiled) >= COMPILED_KEPT:
            _compiled.clear()
        known = _compiled[path] = (sealed, code, module)
    return path, known[1], known[2]


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


def run_job(job: dict, fds: list[int], layout: Layout, lifeline: int | None,
            hold: MountHold | None = None) -> tuple[int, str, bool]:
    """Fork the job's child and wait for it as the supervisor does; then kill the rest. Returns (raw wait status,
    how it ended, whether the jail is empty again). The child's mount namespace stays in `hold` (see MountHold)."""
    sys.stdout.flush()
    sys.stderr.flush()
    harness.PRECOMPILED = precompiled(job)
    opts = _options(job)
    try:
        pid = os.fork()
    except OSError as exc:
        os.write(fds[2], f"evoforge warm worker: cannot fork: {exc}\n".encode())
        return 127 << 8, "exited", True
    if pid == 0:
        child(job, fds, layout, hold, opts)
    own = os.dup(2)
    os.dup2(fds[2], 2)  # what the supervisor says of the job (a process limit) goes to the job's stderr
    for fd in fds:
        os.close(fd)
    try:
        status, ended = supervisor.wait_child(pid, max_tasks=opts.max_processes, lifeline=lifeline)
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


def _probe(layout: Layout) -> str:
    """Set up one child as a job would (namespaces, mounts, capability drop) and exit: '' when that works, else why."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            enter({"trial": PROBE}, layout)
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
    try:
        layout = Layout(trials, staging)
        settle_zygote()
        settle_environ(layout)
    except (OSError, ValueError, IndexError, Setup) as exc:
        _send(control, {"ready": False, "error": f"cannot lay out the children's jails: {type(exc).__name__}: {exc}"})
        return SETUP_FAILED
    try:
        hold: MountHold | None = MountHold()
    except OSError:
        hold = None  # each child's namespace is torn down at its exit, before the report
    gc.freeze()  # what is here stays out of the children's collections: fewer of its pages copied on write
    why = _probe(layout)
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
        try:
            status, ended, empty = run_job(job, fds, layout, lifeline, hold)
            sent = _send(control, {"status": status, "ended": ended, "empty": empty})
        finally:
            if hold is not None:
                hold.release()
        if not sent or not empty:
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
