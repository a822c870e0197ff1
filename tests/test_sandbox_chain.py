"""The sandbox's process chain under bwrap: evoforge → bwrap → one supervisor (the jail's PID 1) → the command, or
for a Python evaluator bwrap → the harness as that supervisor → its evaluation in a forked child; with the exact
exit status, a SIGTERM grace on timeout, and lean starts (what the supervisor and the harness import)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from containment import BWRAP, evaluate, make_task, trial_dir
from helpers import SLACK_S

from evoforge.config import Limits
from evoforge.experiment import isolation, launch
from evoforge.experiment.sandbox import SandboxResult, child_env, run_sandboxed
from evoforge.models import TrialStatus

# What neither start may import: each costs milliseconds at every evaluation (subprocess, dataclasses and
# inspect the most); the harness loads them only for an evaluator that needs them.
HEAVY = {"subprocess", "dataclasses", "inspect", "asyncio", "socket", "threading", "ctypes", "typing", "enum",
         "signal", "pathlib", "traceback", "selectors"}


def sandboxed(tmp_path: Path, script: str, timeout_s: float = SLACK_S, **limits: object) -> SandboxResult:
    trial = tmp_path / "run" / "trials" / "1"
    trial.mkdir(parents=True, exist_ok=True)
    env = child_env({"EVOFORGE_TRIAL_DIR": str(trial)})
    return asyncio.run(run_sandboxed(["sh", "-c", script], cwd=trial, env=env, timeout_s=timeout_s,
                                     limits=Limits(isolation="bwrap", **limits), stdout_path=tmp_path / "out",
                                     stderr_path=tmp_path / "err"))


def _stat(pid: int) -> tuple[int, str]:
    with open(f"/proc/{pid}/stat") as fh:
        text = fh.read()
    return int(text.rsplit(")", 1)[1].split()[1]), text[text.index("(") + 1 : text.rindex(")")]


def _ancestry(cmdline: bytes) -> list[str]:
    """The command names from the process whose command line is `cmdline` up to (not including) this one."""
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                found = fh.read() == cmdline
        except OSError:
            continue
        if found and name.isdigit():
            chain, pid = [], int(name)
            while pid not in (os.getpid(), 0, 1):
                ppid, comm = _stat(pid)
                chain.append(comm)
                pid = ppid
            return chain
    return []


@BWRAP
def test_one_supervisor_between_bwrap_and_the_command(tmp_path: Path) -> None:
    seconds = f"30.{uuid.uuid4().int % 10**9}"  # tells this sleep from any other
    trial = tmp_path / "run" / "trials" / "1"
    trial.mkdir(parents=True)

    async def watch() -> list[str]:
        task = asyncio.ensure_future(run_sandboxed(
            ["sh", "-c", f"echo go > seen; exec sleep {seconds}"], cwd=trial,
            env=child_env({"EVOFORGE_TRIAL_DIR": str(trial)}), timeout_s=60, limits=Limits(isolation="bwrap"),
            stdout_path=tmp_path / "out", stderr_path=tmp_path / "err"))
        found: list[str] = []
        for _ in range(int(SLACK_S / 0.02)):  # until the command runs (bounded)
            if (trial / "seen").exists() and (found := _ancestry(f"sleep\0{seconds}\0".encode())):
                break
            await asyncio.sleep(0.02)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return found

    chain = asyncio.run(watch())
    assert chain[0] == "sleep" and chain[-1] == "bwrap", chain
    assert chain[1:-1] == [Path(sys.executable).name[:15]], chain  # the supervisor, once: no outer copy


@BWRAP
def test_exit_codes_and_fatal_signals_come_through_bwrap_exactly(tmp_path: Path) -> None:
    assert sandboxed(tmp_path, "exit 7").returncode == 7
    assert sandboxed(tmp_path, "exit 139").returncode == 139  # bwrap alone would not tell this from SIGSEGV
    assert sandboxed(tmp_path, "kill -SEGV $$").returncode == -11


@BWRAP
def test_a_timeout_gives_the_jail_a_grace_on_sigterm_then_nothing_survives(tmp_path: Path) -> None:
    script = "trap 'echo bye > graceful; exit 3' TERM; sleep 300 & wait"
    done = sandboxed(tmp_path, script, timeout_s=1.0)
    assert done.timed_out
    assert (tmp_path / "run" / "trials" / "1" / "graceful").read_text() == "bye\n"
    assert done.returncode == launch.TERMINATED


@BWRAP
def test_the_jailed_command_gets_its_rlimits_and_a_fork_bomb_is_stopped(tmp_path: Path) -> None:
    done = sandboxed(tmp_path, "ulimit -n; ulimit -v; grep CapEff /proc/self/status", max_open_files=77,
                     memory_mb=512)
    assert done.stdout_tail.split()[:2] == [b"77", str(512 * 1024).encode()]
    assert done.stdout_tail.split()[-1] == b"0000000000000000"
    bomb = "end=$(($(date +%s) + 100)); b() { [ $(date +%s) -lt $end ] && { b & b & wait; }; }; b"
    done = sandboxed(tmp_path, bomb, timeout_s=4 * SLACK_S, max_processes=30)
    assert done.returncode == -9 and b"max_processes=30" in done.stderr_tail and not done.timed_out


def imported(args: list[str], cwd: Path) -> set[str]:
    """The modules a Python start with `args` imports (-X importtime), less those a bare start imports."""

    def names(extra: list[str]) -> set[str]:
        done = subprocess.run([sys.executable, "-X", "importtime", *extra], capture_output=True, text=True,
                              cwd=cwd, timeout=60)
        return {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}

    return names(args) - names(["-I", "-S", "-c", "pass"] if "-S" in args else ["-c", "pass"])


def test_the_supervisor_starts_on_builtins_only(tmp_path: Path) -> None:
    boot = ["-I", "-S", "-c", launch.BOOT, str(launch.SUPERVISOR.parent), "--status-fd", "2", "--", "true"]
    heavy = imported(boot, tmp_path) & HEAVY
    assert not heavy - {"ctypes"}, heavy  # ctypes only outside a jail (the subreaper); never the rest
    assert "subprocess" not in imported(["-I", "-S", str(launch.SUPERVISOR), "--", "true"], tmp_path)


def test_the_harness_imports_nothing_heavy_before_the_evaluator(tmp_path: Path) -> None:
    heavy = imported(["-c", "import evoforge.experiment.harness"], tmp_path) & HEAVY
    assert not heavy, heavy


@BWRAP
def test_under_bwrap_the_sandbox_starts_bwrap_around_the_supervisor(tmp_path: Path) -> None:
    argv = launch.launch_argv(["true"], Limits(isolation="bwrap"), {}, tmp_path, status_fd=5, info_fd=6)
    assert argv[0] == "bwrap" and argv.count(sys.executable) == 1
    assert argv.index("--info-fd") < argv.index(sys.executable) < argv.index("--status-fd")
    assert argv[argv.index("--status-fd") + 1] == "5" and argv[-2:] == ["--", "true"]


# Reports where the evaluation runs: its parent (the jail's PID 1) and what that is, its scheduling and limits.
WHERE = """
import os, resource

def evaluate(program_path):
    with open("/proc/1/cmdline", "rb") as fh:
        pid1 = fh.read().split(b"\\0")
    return {"score": 1.0, "ppid": os.getppid(), "pid1_harness": float(b"evoforge.experiment.harness" in pid1),
            "pid1_supervised": float(b"--supervised" in pid1), "policy": os.sched_getscheduler(0),
            "as_mb": resource.getrlimit(resource.RLIMIT_AS)[0] / 2**20,
            "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}
"""


@BWRAP
def test_under_bwrap_the_harness_is_the_jails_supervisor_and_evaluates_in_a_limited_child(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVOFORGE_WARM", "0")  # the cold chain (Ray nodes, the fallback); warm: test_warm_jail.py
    task = make_task(tmp_path, WHERE, memory_mb=700, max_open_files=99)
    out = evaluate(task, "x = 1\n", trial_dir(tmp_path))
    assert out.status is TrialStatus.SUCCEEDED, (out.error_class, out.error_message)
    assert out.metrics["ppid"] == 1 and out.metrics["pid1_harness"] == 1 and out.metrics["pid1_supervised"] == 1
    assert out.metrics["policy"] == os.SCHED_OTHER  # the supervisor's real-time priority is not the evaluation's
    assert out.metrics["as_mb"] == 700 and out.metrics["nofile"] == 99


def test_the_jails_runtime_folders_follow_sys_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = isolation.runtime_paths()  # computed once per state of sys.path and the interpreter, not per trial
    assert isolation.runtime_paths() == first
    monkeypatch.syspath_prepend(str(tmp_path))
    assert tmp_path.resolve() in isolation.runtime_paths()


def test_the_supervisor_stops_its_tree_when_evoforge_lets_go_of_the_lifeline(tmp_path: Path) -> None:
    """bwrap's --die-with-parent misses an evoforge that died while bwrap started: the lifeline covers that."""
    life_r, life_w = os.pipe()
    script = "trap 'echo bye > graceful; exit 3' TERM; sleep 300 & echo go > started; wait"
    boot = [sys.executable, "-I", "-S", "-c", launch.BOOT, str(launch.SUPERVISOR.parent), "--lifeline-fd",
            str(life_r), "--status-fd", "1", "--", "sh", "-c", script]
    proc = subprocess.Popen(boot, cwd=tmp_path, pass_fds=[life_r], stdout=subprocess.PIPE, start_new_session=True)
    os.close(life_r)
    try:
        for _ in range(int(SLACK_S / 0.01)):  # until the command runs (bounded)
            if (tmp_path / "started").exists() or proc.poll() is not None:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the supervisor ended before its lifeline was cut"
        os.close(life_w)  # what evoforge's death does
        assert proc.wait(timeout=SLACK_S) == launch.TERMINATED
        assert (tmp_path / "graceful").read_text() == "bye\n"
        assert proc.stdout is not None and proc.stdout.read().split()[-1] == b"terminated"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_chains_modules_are_byte_compiled_for_the_jail_which_cannot(tmp_path: Path) -> None:
    from importlib.util import cache_from_source

    cached = Path(cache_from_source(str(launch.SUPERVISOR)))
    cached.unlink(missing_ok=True)  # as a fresh checkout, or PYTHONDONTWRITEBYTECODE, leaves it
    launch.compile_chain.__wrapped__()
    assert cached.exists() and cached.stat().st_mtime >= launch.SUPERVISOR.stat().st_mtime


def test_the_supervisor_counts_a_tree_once_it_had_time_to_grow_not_at_the_fork(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A quick evaluation ends before its supervisor (or a warm worker's zygote) first lists /proc: the tree is first
    counted POLL_S after the fork, when at the fork it was the child alone; a child that lives on is counted."""
    import signal
    import types

    from evoforge.experiment import supervisor

    counted: list[int] = []
    release_r, release_w = os.pipe()

    def count() -> int:
        if not counted:  # the first count lets the waiting child go
            os.close(release_w)
        counted.append(1)
        return 1

    monkeypatch.setattr(supervisor, "_task_count", count)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    try:
        with monkeypatch.context() as frozen:  # time stands still: no count falls due while the child exits
            frozen.setattr(supervisor, "time", types.SimpleNamespace(monotonic=lambda: 0.0))
            pid = os.fork()
            if pid == 0:
                os._exit(7)
            status, ended = supervisor.wait_child(pid, max_tasks=10)
        assert os.waitstatus_to_exitcode(status) == 7 and ended == "" and counted == []
        pid = os.fork()
        if pid == 0:  # lives until the supervisor counts its tree
            os.close(release_w)
            os.read(release_r, 1)
            os._exit(0)
        status, ended = supervisor.wait_child(pid, max_tasks=10)
        assert os.waitstatus_to_exitcode(status) == 0 and ended == "" and len(counted) >= 1
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        os.close(release_r)
        if not counted:
            os.close(release_w)
