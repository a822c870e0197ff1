"""Warm jailed workers (issue 11): evaluations of one run share a bwrap jail whose PID 1 forks a fresh child per
evaluation, yet nothing of one candidate reaches the next, a child holds no capability and sees only its own trial
folder, the limits classify as on the cold path, a timeout ends the worker, and a worker that cannot start leaves the
evaluations to the cold path with one warning."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from containment import BWRAP, IN_PROCESS, make_task, survivors, trial_dir

from evoforge.experiment import Engineer, warm, warm_worker
from evoforge.experiment.sandbox import TOKEN_VAR
from evoforge.experiment.warm import STAGING, Worker
from evoforge.models import Outcome, TrialStatus

pytestmark = BWRAP
SHM_KEY = 0x5EED0000 + os.getpid() % 0xFFFF

LEAVE_STATE = """
import ctypes, os, signal, time

def result():
    os.kill(1, signal.SIGINT)  # the worker's PID 1: it must not fall to the candidate's KeyboardInterrupt
    open("/tmp/x", "w").write("left by candidate 1")
    open("/dev/shm/y", "w").write("left by candidate 1")
    try:
        open("/dev/z", "w").write("left by candidate 1")
    except OSError:
        pass
    segment = ctypes.CDLL(None, use_errno=True).shmget(KEY, 4096, 0o1000 | 0o600)  # IPC_CREAT
    os.environ["LEFT_BEHIND"] = "1"
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", "SECONDS"])
        os._exit(0)
    time.sleep(0.2)
    return {"score": 1.0, "segment": float(segment >= 0)}
"""
LOOK_FOR_STATE = """
import ctypes, os, signal

def result():
    libc = ctypes.CDLL(None, use_errno=True)
    return {"score": 1.0, "sigint": float(signal.getsignal(signal.SIGINT) is signal.default_int_handler),
            "tmp": float(os.path.exists("/tmp/x")), "dev_shm": float(os.path.exists("/dev/shm/y")),
            "dev": float(os.path.exists("/dev/z")),
            "sysv": float(libc.shmget(KEY, 0, 0) >= 0), "env": float("LEFT_BEHIND" in os.environ),
            "processes": float(len([p for p in os.listdir("/proc") if p.isdigit()]))}
"""
LOOK_AROUND = """
import os

def readable(path):
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").read()
        return 1.0
    except OSError:
        return 0.0

def writable(path):
    try:
        open(path, "w").write("x")
        return 1.0
    except OSError:
        return 0.0

def result():
    import resource
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    pid1 = open("/proc/1/cmdline", "rb").read()
    caps = {name: float(int(status[name], 16)) for name in ("CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh")}
    return {"score": 1.0, **caps, "no_new_privs": float(status["NoNewPrivs"]),
            "other_trial": readable("OTHER"), "trials_listed": float(len(os.listdir("TRIALS"))),
            "staging": float(os.path.exists("STAGING")), "record": readable("RECORD"),
            "pid1_environ": readable("/proc/1/environ"), "pid1_root": readable("/proc/1/root/STAGING"),
            "task_write": writable("TASK/evil.py"),
            "trials_write": writable("TRIALS/evil"), "own_write": writable("OWN/ok.txt"),
            "policy": float(os.sched_getscheduler(0)), "ppid": float(os.getppid()),
            "pid1_zygote": float(b"evoforge.experiment.zygote" in pid1),
            "as_mb": resource.getrlimit(resource.RLIMIT_AS)[0] / 2**20,
            "nofile": float(resource.getrlimit(resource.RLIMIT_NOFILE)[0])}
"""
HONEST = "def result():\n    return {'score': 2.5}\n"


def _worker(engineer: Engineer) -> Worker:
    """The one idle warm worker of `engineer` (the one its last evaluation ran in)."""
    pool = engineer.executor.warm
    assert pool is not None and len(pool.idle) == 1, "the evaluation did not run in (or return) one warm worker"
    return pool.idle[0]


async def _evaluate(engineer: Engineer, code: str, where: Path) -> Outcome:
    return await engineer.evaluate(textwrap.dedent(code), where)


def _remove_segment() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    segment = libc.shmget(SHM_KEY, 0, 0)
    if segment >= 0:  # only there when the child shared the host's IPC namespace: the test fails, the host stays clean
        libc.shmctl(segment, 0, None)  # IPC_RMID


def test_nothing_of_one_candidate_reaches_the_next_in_the_same_worker(tmp_path: Path) -> None:
    engineer = Engineer(make_task(tmp_path, IN_PROCESS))
    seconds = f"300.{uuid.uuid4().int % 10**6}"  # a unique command line to find the background process by

    async def scenario() -> tuple[Outcome, Outcome, list[int], tuple[int | None, ...]]:
        first = await _evaluate(engineer, LEAVE_STATE.replace("KEY", str(SHM_KEY)).replace("SECONDS", seconds),
                                trial_dir(tmp_path, 1))
        pid1 = _worker(engineer).jail.pid1
        left = survivors(seconds.encode())  # once the evaluation returned
        second = await _evaluate(engineer, LOOK_FOR_STATE.replace("KEY", str(SHM_KEY)), trial_dir(tmp_path, 2))
        return first, second, left, (pid1, _worker(engineer).jail.pid1)

    try:
        first, second, left, pids = asyncio.run(scenario())
    finally:
        _remove_segment()
    assert first.status is TrialStatus.SUCCEEDED and first.metrics["segment"] == 1.0, first
    assert pids[0] is not None and pids[0] == pids[1], "the two candidates did not run in the same warm worker"
    assert left == [], "candidate 1's detached background process outlived its evaluation"
    assert second.status is TrialStatus.SUCCEEDED, second
    seen = {name: second.metrics[name] for name in ("tmp", "dev_shm", "dev", "sysv", "env")}
    assert seen == {"tmp": 0.0, "dev_shm": 0.0, "dev": 0.0, "sysv": 0.0, "env": 0.0}
    assert second.metrics["processes"] == 2.0  # the worker's PID 1 and candidate 2 itself: no one else in the jail
    assert second.metrics["sigint"] == 1.0  # Ctrl-C handled as in a fresh interpreter


def test_a_child_holds_no_capability_and_sees_only_its_own_trial(tmp_path: Path) -> None:
    task = make_task(tmp_path, IN_PROCESS, memory_mb=700, max_open_files=99)
    engineer = Engineer(task)
    other, own = trial_dir(tmp_path, 1), trial_dir(tmp_path, 2)
    code = LOOK_AROUND
    for word, path in (("OTHER", other / "program.py"), ("TRIALS", own.parent), ("STAGING", STAGING),
                       ("RECORD", own.parent.parent / "record.db"), ("TASK", task.root), ("OWN", own)):
        code = code.replace(word, str(path))

    async def scenario() -> tuple[Outcome, Outcome, int | None, int | None]:
        first = await _evaluate(engineer, HONEST, other)
        pid1 = _worker(engineer).jail.pid1
        second = await _evaluate(engineer, code, own)
        return first, second, pid1, _worker(engineer).jail.pid1

    first, second, pid1, again = asyncio.run(scenario())
    assert first.status is TrialStatus.SUCCEEDED and (other / "program.py").exists()
    assert pid1 is not None and pid1 == again, "the two evaluations did not run in the same warm worker"
    assert second.status is TrialStatus.SUCCEEDED, second
    seen = second.metrics
    assert {k: seen[k] for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh")} == dict.fromkeys(
        ("CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"), 0.0)
    assert seen["no_new_privs"] == 1.0
    assert seen["other_trial"] == 0.0 and seen["trials_listed"] == 1.0 and seen["staging"] == 0.0
    assert seen["record"] == 0.0 and seen["pid1_environ"] == 0.0 and seen["pid1_root"] == 0.0  # nor through PID 1
    assert seen["task_write"] == 0.0 and seen["trials_write"] == 0.0 and seen["own_write"] == 1.0
    assert seen["policy"] == float(os.SCHED_OTHER)  # the worker's real-time boost is not inherited
    assert seen["ppid"] == 1.0 and seen["pid1_zygote"] == 1.0  # a child of the worker's PID 1, the zygote
    assert seen["as_mb"] == 700 and seen["nofile"] == 99
    assert not (task.root / "evil.py").exists()


MEMORY_HOG = "def result():\n    block = bytearray(3 * 1024 ** 3)\n    return {'score': 1}\n"
CPU_BURNER = "def result():\n    while True:\n        pass\n"
CHATTY = "def result():\n    print('x' * 100_000)\n    return {'score': 1.0}\n"
DISK_HOG = """
import os, time

def result():
    for i in range(8):  # 4 MB files, each under the file-size limit, 32 MB in all; then wait for the folder's watch
        with open(f"part{i}.bin", "wb") as fh:
            fh.write(os.urandom(1024) * (4 * 1024))
    time.sleep(30)
    return {"score": 1.0}
"""


def test_limits_classify_as_on_the_cold_path_in_one_worker(tmp_path: Path) -> None:
    engineer = Engineer(make_task(tmp_path, IN_PROCESS, memory_mb=256, cpu_s=1, output_bytes=4000, disk_mb=20))

    async def scenario() -> list[tuple[Outcome, int | None]]:
        done = []
        for n, code in enumerate((MEMORY_HOG, CPU_BURNER, CHATTY, HONEST, DISK_HOG, HONEST), start=1):
            outcome = await _evaluate(engineer, code, trial_dir(tmp_path, n))
            pool = engineer.executor.warm
            done.append((outcome, pool.idle[0].jail.pid1 if pool.idle else None))
        return done

    (memory, w1), (cpu, w2), (chatty, w3), (honest, w4), (disk, w5), (after, w6) = asyncio.run(scenario())
    assert memory.error_class == "killed_by_limit" and "memory_mb=256" in memory.error_message, memory
    assert cpu.error_class == "killed_by_limit" and "cpu_s=1" in cpu.error_message, cpu
    assert chatty.status is TrialStatus.SUCCEEDED, chatty
    stdout = (trial_dir(tmp_path, 3) / "stdout.log").read_bytes()
    assert len(stdout) <= 4000 and b"the middle was dropped" in stdout
    assert honest.status is TrialStatus.SUCCEEDED and honest.score == 2.5
    assert w1 is not None and w1 == w2 == w3 == w4  # a limit that kills the child leaves the worker in service
    assert disk.error_class == "disk_limit" and "disk_mb=20" in (disk.error_message or ""), disk
    assert after.status is TrialStatus.SUCCEEDED and w5 is None and w6 not in (None, w4)  # stopped: a fresh worker


SPAWNS_AND_HANGS = """
import os, signal, time

def result():
    for _ in range(3):
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            os.execvp("sleep", ["sleep", "SECONDS"])
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)
"""


def test_a_timeout_ends_the_whole_tree_and_the_next_evaluation_gets_a_fresh_worker(tmp_path: Path) -> None:
    engineer = Engineer(make_task(tmp_path, IN_PROCESS, timeout=0.75))  # timeout_s 1.5
    seconds = f"300.{uuid.uuid4().int % 10**6}"

    async def scenario() -> tuple[Outcome, Outcome, Outcome, Worker, int | None]:
        first = await _evaluate(engineer, HONEST, trial_dir(tmp_path, 1))
        worker = _worker(engineer)
        hung = await _evaluate(engineer, SPAWNS_AND_HANGS.replace("SECONDS", seconds), trial_dir(tmp_path, 2))
        assert engineer.executor.warm.idle == []
        after = await _evaluate(engineer, HONEST, trial_dir(tmp_path, 3))
        return first, hung, after, worker, _worker(engineer).jail.pid1

    first, hung, after, worker, pid1 = asyncio.run(scenario())
    assert first.status is TrialStatus.SUCCEEDED
    assert hung.error_class == "timeout", hung
    assert survivors(seconds.encode()) == []
    assert worker.proc.returncode is not None, "the worker of the timed-out evaluation is still running"
    assert after.status is TrialStatus.SUCCEEDED and after.score == 2.5
    assert pid1 is not None and pid1 != worker.jail.pid1


def test_a_worker_that_cannot_start_leaves_the_evaluations_to_the_cold_path_with_one_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(warm_worker, "ZYGOTE", "evoforge.experiment.no_such_zygote")
    engineer = Engineer(make_task(tmp_path, IN_PROCESS))

    async def scenario() -> list[Outcome]:
        return [await _evaluate(engineer, HONEST, trial_dir(tmp_path, n)) for n in (1, 2, 3)]

    with caplog.at_level(logging.WARNING, logger="evoforge.experiment.warm"):
        outcomes = asyncio.run(scenario())
    assert [o.score for o in outcomes] == [2.5, 2.5, 2.5]
    warnings = [r for r in caplog.records if "warm workers unavailable" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "no_such_zygote" in warnings[0].getMessage()
    assert engineer.executor.warm.idle == []


def test_a_stage_started_ahead_and_dropped_gives_its_worker_back_with_an_empty_jail(tmp_path: Path) -> None:
    engineer = Engineer(make_task(tmp_path, IN_PROCESS))
    dropped, after = trial_dir(tmp_path, 1), trial_dir(tmp_path, 2)

    async def scenario() -> tuple[list[int], Worker, list[str], Outcome, Worker]:
        await engineer.start_ahead(HONEST, dropped)
        started = engineer._ahead[dropped.resolve()].started
        marker = f"{TOKEN_VAR}={started.token}\0".encode()
        for _ in range(400):  # at most 20 s: until its child is set up and waits for the channel
            if survivors(marker):
                break
            await asyncio.sleep(0.05)
        assert survivors(marker), "the child started ahead never showed up"
        await engineer.drop_ahead(dropped)
        left, worker = survivors(marker), _worker(engineer)
        children = Path(f"/proc/{worker.proc.pid}").exists() and _children(worker.jail.pid1)
        outcome = await _evaluate(engineer, HONEST, after)
        return left, worker, children, outcome, _worker(engineer)

    left, worker, children, outcome, again = asyncio.run(scenario())
    assert left == [] and children == [], "the dropped stage's child (or its jail) is still running"
    assert outcome.status is TrialStatus.SUCCEEDED and outcome.score == 2.5
    assert again is worker  # the worker went back to the pool and served the next evaluation
    assert not (dropped / "stderr.log").exists()  # killed before anything ran: no traceback, no log at all


def _children(pid: int | None) -> list[str]:
    """Pids of the children of `pid` (its main thread's)."""
    assert pid is not None
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


def test_the_workers_end_with_the_event_loop(tmp_path: Path) -> None:
    engineer = Engineer(make_task(tmp_path, IN_PROCESS))

    async def scenario() -> Worker:
        await _evaluate(engineer, HONEST, trial_dir(tmp_path, 1))
        return _worker(engineer)

    worker = asyncio.run(scenario())
    assert worker.proc.returncode is not None
    assert not os.path.exists(f"/proc/{worker.proc.pid}")


def test_the_worker_jail_keeps_two_capabilities_for_its_pid_1_and_binds_the_trials_at_the_staging_path(
        tmp_path: Path) -> None:
    from evoforge.experiment.isolation import wrapper_argv

    task = make_task(tmp_path, IN_PROCESS)
    engineer = Engineer(task)
    job: Any = engineer._job(engineer.stages[0], trial_dir(tmp_path, 1) / "program.py", trial_dir(tmp_path, 1), None)
    trial_dir(tmp_path, 1).mkdir(parents=True, exist_ok=True)
    planned = warm.plan(job)
    assert planned is not None
    argv = wrapper_argv(planned[1])
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--cap-add"] == ["CAP_SYS_ADMIN", "CAP_SETPCAP"]
    trials = str(trial_dir(tmp_path, 1).parent.resolve())
    at = argv.index("--bind")
    assert argv[at + 1 : at + 3] == [trials, str(STAGING)]
    assert str(trial_dir(tmp_path, 1).resolve()) not in argv  # no trial folder of its own


def test_the_cold_path_keeps_what_a_warm_worker_cannot_lay_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = make_task(tmp_path, IN_PROCESS)
    engineer = Engineer(task)

    def job(folder: Path) -> Any:
        folder.mkdir(parents=True, exist_ok=True)
        return engineer._job(engineer.stages[0], folder / "program.py", folder, None)

    assert warm.plan(job(trial_dir(tmp_path, 1))) is not None
    assert warm.plan(job(task.root / "trial")) is None  # its trials folder is the task folder, bound read-only
    off = Engineer(make_task(tmp_path / "off", IN_PROCESS, warm_workers=False))  # task.yaml turns it off
    assert warm.plan(off._job(off.stages[0], trial_dir(tmp_path, 2) / "program.py", trial_dir(tmp_path, 2), None)) \
        is None
    monkeypatch.setenv(warm.SWITCH, "0")
    assert warm.plan(job(trial_dir(tmp_path, 1))) is None


SLEEPER = "import time\n\ndef result():\n    time.sleep(120)\n    return {'score': 1.0}\n"


def test_a_worker_killed_mid_evaluation_ends_that_evaluation_at_once(tmp_path: Path) -> None:
    engineer = Engineer(make_task(tmp_path, IN_PROCESS, timeout=60))  # timeout_s 120: far past the test's own end
    where = trial_dir(tmp_path, 2)

    async def scenario() -> tuple[Outcome, Outcome, int | None, int | None]:
        await _evaluate(engineer, HONEST, trial_dir(tmp_path, 1))
        pid1 = _worker(engineer).jail.pid1
        assert pid1 is not None
        running = asyncio.ensure_future(_evaluate(engineer, SLEEPER, where))
        marker = f"EVOFORGE_TRIAL_DIR={where.resolve()}\0".encode()
        for _ in range(400):  # at most 20 s: until its child runs
            if survivors(marker):
                break
            await asyncio.sleep(0.05)
        os.kill(pid1, 9)  # the worker's PID 1 (the zygote), from outside: its jail dies with it
        killed = await asyncio.wait_for(running, 60)
        after = await _evaluate(engineer, HONEST, trial_dir(tmp_path, 3))
        return killed, after, pid1, _worker(engineer).jail.pid1

    killed, after, pid1, again = asyncio.run(scenario())
    assert killed.status is TrialStatus.FAILED and killed.error_class != "timeout", killed
    assert after.status is TrialStatus.SUCCEEDED and again not in (None, pid1)
