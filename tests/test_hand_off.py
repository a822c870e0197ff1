"""A HandOff's thread runs what the event loop hands it in order, one call at a time, hands back results and errors,
skips a call whose caller gave up before it started, and ends once what was handed before ran — at `shutdown` or
at the interpreter's exit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

from evoforge.hand_off import HandOff

WAIT_S = 30.0  # bound on every wait; never reached when things work


class Blocking:
    """A call that holds its thread until `release` is set (`then` runs just before it returns `result`)."""

    def __init__(self, result: object, then: Callable[[], object] = lambda: None) -> None:
        self.result, self.then = result, then
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self) -> object:
        self.started.set()
        assert self.release.wait(WAIT_S)
        self.then()
        return self.result

    async def handed_to(self, hand_off: HandOff) -> asyncio.Future[object]:
        """Hand this call to `hand_off`; returns once it runs there, with the caller's future."""
        running = asyncio.ensure_future(hand_off.call(self))
        await asyncio.to_thread(self.started.wait, WAIT_S)
        return running


def test_calls_run_in_order_on_the_named_thread_with_results_and_errors() -> None:
    hand_off = HandOff("record")
    seen: list[tuple[int, str]] = []

    def note(i: int, *, twice: bool = False) -> int:
        seen.append((i, threading.current_thread().name))
        return 2 * i if twice else i

    def fail() -> None:
        raise ValueError("no such trial")

    async def main() -> list[int]:
        results = list(await asyncio.gather(*(hand_off.call(note, i, twice=i % 2 == 1) for i in range(20))))
        with pytest.raises(ValueError, match="no such trial"):
            await hand_off.call(fail)
        return results

    try:
        assert asyncio.run(main()) == [2 * i if i % 2 else i for i in range(20)]
    finally:
        hand_off.shutdown()
    assert [i for i, _ in seen] == list(range(20))
    assert {name for _, name in seen} == {"record"} and threading.current_thread().name != "record"


def test_a_call_whose_caller_gave_up_before_it_started_never_runs() -> None:
    hand_off = HandOff("cognition")
    ran: list[str] = []
    blocking = Blocking("first", then=lambda: ran.append("first"))

    async def main() -> str:
        first = await blocking.handed_to(hand_off)  # the thread is busy with the first call
        second = asyncio.ensure_future(hand_off.call(ran.append, "second"))
        await asyncio.sleep(0)  # handed
        second.cancel()
        blocking.release.set()
        with pytest.raises(asyncio.CancelledError):
            await second
        result = await first
        await hand_off.call(ran.append, "third")  # the thread went on past the skipped call
        return result

    try:
        assert asyncio.run(main()) == "first"
    finally:
        hand_off.shutdown()
    assert ran == ["first", "third"]


def test_a_call_cancelled_while_it_runs_ends_quietly_and_the_thread_goes_on() -> None:
    hand_off = HandOff("record")
    errors: list[BaseException] = []
    blocking = Blocking(1)

    async def main() -> int:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context["message"]))
        running = await blocking.handed_to(hand_off)
        running.cancel()
        blocking.release.set()
        with pytest.raises(asyncio.CancelledError):
            await running
        return await hand_off.call(lambda: 7)  # its result was dropped; the next call is served

    try:
        assert asyncio.run(main()) == 7
    finally:
        hand_off.shutdown()
    assert errors == []


def test_shutdown_waits_for_what_was_handed_and_refuses_more() -> None:
    hand_off = HandOff("record")
    done: list[int] = []

    def slow(i: int) -> int:
        time.sleep(0.01)
        done.append(i)
        return i

    async def main() -> list[int]:
        handed = [asyncio.ensure_future(hand_off.call(slow, i)) for i in range(3)]
        await asyncio.sleep(0)  # handed, not awaited
        hand_off.shutdown(wait=True)  # as Learning.aclose does, from the loop's thread
        assert done == [0, 1, 2]
        with pytest.raises(RuntimeError, match="shut down"):
            await hand_off.call(slow, 3)
        return list(await asyncio.gather(*handed))

    assert asyncio.run(main()) == [0, 1, 2]
    hand_off.shutdown()  # twice: nothing happens


def test_one_thread_serves_calls_from_one_event_loop_after_another() -> None:
    hand_off = HandOff("cognition")
    try:
        names = [asyncio.run(hand_off.call(lambda: threading.current_thread().ident)) for _ in range(3)]
    finally:
        hand_off.shutdown()
    assert len(set(names)) == 1


def test_at_the_interpreters_exit_the_calls_handed_run_and_the_thread_ends() -> None:
    """No shutdown called: the process still ends (the thread is not left waiting for calls), after the call it was
    handed ran."""
    script = """
import asyncio, threading, time
from evoforge.hand_off import HandOff
hand_off = HandOff("record")

started = threading.Event()

def slow():
    started.set()
    time.sleep(0.2)
    print("ran", flush=True)

async def main():
    await hand_off.call(print, "first", flush=True)
    asyncio.ensure_future(hand_off.call(slow))
    await asyncio.to_thread(started.wait, 30)  # running when the loop ends

asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["first", "ran"]
