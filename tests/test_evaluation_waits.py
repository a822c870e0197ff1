"""An evaluation creates no task (waits.py, broker.py): the report, the worker's death, a gate's stop, the disk limit
and the timeout are callbacks that set one future, the output pipes and the channel are read by reader callbacks
(the token goes out at once), and a stage runs in the cascade's own task; each still ends the wait as before."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from containment import BWRAP, IN_PROCESS, make_task, trial_dir

from evoforge.experiment import Engineer, disk
from evoforge.experiment.waits import Ending, StopEvent, pump, stop_pumps

PROGRAM = "import sys\n\ndef result():\n    print('out' * 1000)\n    print('err', file=sys.stderr)\n" \
          "    return {'score': 1.0}\n"


def _counting_tasks(loop: asyncio.AbstractEventLoop, names: Counter[str]) -> None:
    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        names[getattr(coro, "__qualname__", type(coro).__name__)] += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)  # type: ignore[arg-type]


@BWRAP
def test_a_warm_evaluation_started_ahead_creates_no_task(tmp_path: Path) -> None:
    engineer = Engineer(make_task(tmp_path, IN_PROCESS))
    names: Counter[str] = Counter()

    async def scenario() -> Any:
        await engineer.evaluate(PROGRAM, trial_dir(tmp_path, 0))  # the worker starts
        await engineer.start_ahead(PROGRAM, trial_dir(tmp_path, 1))
        _counting_tasks(asyncio.get_running_loop(), names)
        outcome = await engineer.evaluate(PROGRAM, trial_dir(tmp_path, 1))
        asyncio.get_running_loop().set_task_factory(None)
        return outcome

    outcome = asyncio.run(scenario())
    assert outcome.score == 1.0, outcome
    assert outcome.stdout_tail.endswith("outout\n") and outcome.stderr_tail.strip() == "err"  # the pumps' copy
    assert (trial_dir(tmp_path, 1) / "stdout.log").read_text() == "out" * 1000 + "\n"
    assert not names, names  # 6 before: the stage, 4 waits, the broker


def test_each_end_of_a_wait_ends_it_and_is_forgotten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> list[str]:
        ends = []
        stop = StopEvent()
        ending = Ending(30.0)
        ending.on_stop(stop)
        asyncio.get_running_loop().call_later(0.01, stop.set)
        ends.append(await ending.wait())
        assert not stop._callbacks  # forgotten
        plain = asyncio.Event()  # not a StopEvent: a task waits for it
        ending = Ending(30.0)
        ending.on_stop(plain)
        asyncio.get_running_loop().call_later(0.01, plain.set)
        ends.append(await ending.wait())
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ending = Ending(0.05)
        ending.on_future(done, "exited")
        ends.append(await ending.wait())  # nothing came: the timeout
        (tmp_path / "big").write_bytes(b"x" * (2 * disk.MB))
        ending = Ending(30.0)
        ending.on_disk(tmp_path, 1, poll_s=0.01)
        ends.append(await ending.wait())
        return ends

    ends = asyncio.run(scenario())
    assert ends[:3] == ["stopped", "stopped", "timeout"]
    assert ends[3].startswith("disk_limit: the trial folder grew past disk_mb=1")


def test_a_pump_copies_until_end_of_file_and_stop_closes_its_pipe() -> None:
    import os

    class Log:
        def __init__(self) -> None:
            self.data = bytearray()

        def feed(self, data: bytes) -> None:
            self.data += data

    async def scenario() -> tuple[bytes, bool]:
        read, write = os.pipe()
        pipe = open(read, "rb", buffering=0)  # noqa: SIM115 - closed by stop_pumps
        log = Log()
        pumped = pump(pipe, log)
        os.write(write, b"a" * 50_000)
        os.close(write)
        await asyncio.wait_for(asyncio.shield(pumped), 10)
        await stop_pumps([pumped], [pipe], grace=1.0)
        return bytes(log.data), pipe.closed

    data, closed = asyncio.run(scenario())
    assert data == b"a" * 50_000 and closed


def test_the_broker_reads_lines_in_pieces_answers_runs_and_ends_at_end_of_file(tmp_path: Path) -> None:
    import json
    import socket

    from evoforge.experiment import broker as broker_module
    from evoforge.experiment.broker import Broker
    from evoforge.experiment.sandbox import SandboxResult

    async def start(argv: list[str], **kwargs: Any) -> SandboxResult:
        kwargs["stdout_path"].write_text("ran " + " ".join(argv[1:]))
        return SandboxResult(0, False, 0.1, b"", b"")

    async def scenario() -> tuple[Broker, list[dict[str, Any]]]:
        ours, theirs = socket.socketpair()
        broker = Broker(tmp_path, start, 1000)
        broker.open(ours)
        loop = asyncio.get_running_loop()
        token = json.loads(await loop.sock_recv(theirs, 1000))["token"]
        run = json.dumps({"op": "run", "id": 1, "argv": ["cand.py", "x"], "input": None, "timeout_s": 5}).encode()
        result = json.dumps({"op": "result", "token": token, "value": {"score": 2.0}}).encode()
        for piece in (run[:7], run[7:] + b"\n" + result[:5], result[5:] + b"\nnot json\n"):
            await loop.sock_sendall(theirs, piece)
            await asyncio.sleep(0.01)
        theirs.setblocking(False)
        reply = json.loads(await asyncio.wait_for(loop.sock_recv(theirs, 100_000), 10))
        theirs.close()  # the harness's end closes: the broker has read all, close() does not wait
        await asyncio.wait_for(broker_module.close(broker, ours), 10)
        return broker, [reply]

    broker, replies = asyncio.run(scenario())
    assert broker.reported and broker.result == {"score": 2.0} and broker.runs == 1
    assert replies[0]["id"] == 1 and replies[0]["stdout"] == "ran cand.py x" and replies[0]["returncode"] == 0
    assert len(broker.problems) == 1 and broker.problems[0].startswith("a message that is not JSON")


def test_a_childs_mount_namespace_outlives_it_until_the_zygote_lets_it_go() -> None:
    """MountHold: the child hands its mount namespace over (here the test's own: no namespace of its own), so its exit
    does not tear it down before the zygote reports; the zygote still holds it after the exit, until `release`."""
    import os
    import socket

    from evoforge.experiment.child_jail import MountHold

    hold = MountHold()
    pid = os.fork()
    if pid == 0:
        try:
            hold.give()
        finally:
            os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    _, fds, _, _ = socket.recv_fds(hold.ours, 1, 1)  # what `release` lets go of
    try:
        assert len(fds) == 1 and os.fstat(fds[0]).st_ino == os.stat("/proc/self/ns/mnt").st_ino
    finally:
        for fd in fds:
            os.close(fd)
    assert hold.release() == 0  # nothing left to receive: it must not wait (a child that failed before it gave)
    assert hold.ours.fileno() >= 0 and hold.theirs.fileno() >= 0  # the zygote's next child gives through it too


@BWRAP
def test_a_child_that_fails_before_it_enters_its_jail_leaves_its_zygote_serving(tmp_path: Path) -> None:
    """Its namespace was never handed over: the zygote reports the job and lets go of nothing, without waiting."""
    import os
    import socket

    engineer = Engineer(make_task(tmp_path, IN_PROCESS))

    async def scenario() -> tuple[dict[str, Any], Any]:
        await engineer.evaluate(PROGRAM, trial_dir(tmp_path, 0))
        pool = engineer.executor.warm
        assert pool is not None and len(pool.idle) == 1
        worker = pool.idle[0]
        ours, theirs = socket.socketpair()
        (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
        job = {"argv": ["evaluator.py", "program.py"], "env": {}, "cwd": "/", "trial": "no-such-trial",
               "tmp_mb": None, "limits": {}}
        worker.send(job, [theirs.fileno(), out_w, err_w])  # its trial folder is not there: the mount fails
        for fd in (out_w, err_w, out_r, err_r):
            os.close(fd)
        theirs.close()
        reply = await asyncio.wait_for(worker.receive(), 20)
        ours.close()
        outcome = await asyncio.wait_for(engineer.evaluate(PROGRAM, trial_dir(tmp_path, 1)), 20)
        return reply, outcome

    reply, outcome = asyncio.run(scenario())
    assert reply["empty"] is True and os.waitstatus_to_exitcode(reply["status"]) == 125, reply
    assert outcome.score == 1.0, outcome  # the same zygote went on serving
