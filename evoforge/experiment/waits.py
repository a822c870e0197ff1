"""Waiting for an evaluation without a task per thing waited for: the first of its ends (a report, the process's
exit, a gate's stop, its folder outgrowing the disk limit, the timeout) is a callback that sets one future, and its
output pipes are read by reader callbacks. An evaluation's end thus wakes its waiter once, not through a task per
end, each cancelled and awaited afterwards (a pass of the event loop each, behind whatever else is ready)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from evoforge.experiment import disk

CHUNK = 1 << 20


class StopEvent(asyncio.Event):
    """The stop event of a running stage (a gate's prune sets it), whose setting a wait can follow by callback."""

    def __init__(self) -> None:
        super().__init__()
        self._callbacks: list[Callable[[], None]] = []

    def set(self) -> None:
        super().set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def when_set(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` once when the event is set (now, if it is); returns what forgets it."""
        if self.is_set():
            callback()
            return lambda: None
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None


class Ending:
    """The first of an evaluation's ends, each named by the string it gives (`on_*`); `wait` returns it, or
    "timeout" once `timeout_s` has passed, and forgets every end it was following."""

    def __init__(self, timeout_s: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[str] = self.loop.create_future()
        self._undo: list[Callable[[], object]] = [self.loop.call_later(timeout_s, self.end, "timeout").cancel]

    def end(self, why: str) -> None:
        if not self.future.done():
            self.future.set_result(why)

    def on_future(self, future: asyncio.Future[Any], why: str) -> None:
        """End with `why` once `future` is done."""

        def done(_: asyncio.Future[Any]) -> None:
            self.end(why)

        future.add_done_callback(done)
        self._undo.append(lambda: future.remove_done_callback(done))

    def on_readable(self, fd: int, why: str) -> None:
        """End with `why` once `fd` is readable (data or end of file)."""
        self.loop.add_reader(fd, self.end, why)
        self._undo.append(lambda: self.loop.remove_reader(fd))

    def on_stop(self, stop: asyncio.Event, why: str = "stopped") -> None:
        """End with `why` once `stop` is set (a task waits for an event that is not a StopEvent)."""
        if isinstance(stop, StopEvent):
            self._undo.append(stop.when_set(lambda: self.end(why)))
            return
        waiter = asyncio.ensure_future(stop.wait())
        self.on_future(waiter, why)
        self._undo.append(waiter.cancel)

    def on_disk(self, folder: Path, disk_mb: int, poll_s: float = disk.POLL_S) -> None:
        """End with "disk_limit: REASON" once `folder` outgrows `disk_mb` (measured every `poll_s` in a thread)."""
        state: dict[str, Any] = {}

        def measure() -> None:
            state["future"] = future = self.loop.run_in_executor(None, disk.folder_usage, folder)
            future.add_done_callback(judge)

        def judge(future: asyncio.Future[tuple[int, int]]) -> None:
            if future.cancelled() or self.future.done():
                return
            if future.exception() is not None:
                state["timer"] = self.loop.call_later(poll_s, measure)
                return
            reason = disk.over_limit(*future.result(), disk_mb)
            if reason is not None:
                self.end(f"disk_limit: {reason}")
            else:
                state["timer"] = self.loop.call_later(poll_s, measure)

        def forget() -> None:
            for key in ("timer", "future"):
                if key in state:
                    state[key].cancel()

        state["timer"] = self.loop.call_later(poll_s, measure)
        self._undo.append(forget)

    async def wait(self) -> str:
        try:
            return await self.future
        finally:
            for undo in self._undo:
                undo()
            self._undo.clear()


class Sink(Protocol):
    def feed(self, data: bytes) -> None: ...


def pump(pipe: BinaryIO, log: Sink) -> asyncio.Future[None]:
    """Copy the read end of a pipe into `log` from a reader callback until end of file, when the future is done
    and the reader gone; `stop_pumps` ends the copy sooner and closes the pipes."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    fd = pipe.fileno()
    os.set_blocking(fd, False)

    def read() -> None:
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            log.feed(data)
            return
        loop.remove_reader(fd)  # now, not from a callback that could run once the descriptor is closed and reused
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, read)
    return done


async def stop_pumps(pumps: list[asyncio.Future[None]], pipes: list[BinaryIO], grace: float) -> None:
    """Let the pumps copy until end of file for up to `grace` seconds (no wait when they are done), then stop them
    and close the pipes."""
    if grace > 0 and not all(p.done() for p in pumps):
        await asyncio.wait(pumps, timeout=grace)
    loop = asyncio.get_running_loop()
    for pumped, pipe in zip(pumps, pipes, strict=True):
        pumped.cancel()
        if not pipe.closed:
            with contextlib.suppress(Exception):  # a loop that is closing
                loop.remove_reader(pipe.fileno())
            pipe.close()
