"""A thread of its own to which the event loop hands calls (the record's, the cognition base's): one call at a time,
in the order handed, each awaited by the caller; a call not yet started when its caller is cancelled never runs.

What a hand-off costs the loop is a put on a queue and, when the call returns, one `call_soon_threadsafe`. A
ThreadPoolExecutor's `submit` through `run_in_executor` also took a semaphore and a condition's lock on every call
(held by the worker as it finished the one before, so the loop often waited on it), and chained two futures: 26 µs
of CPU and 131 µs of wall time per hand-off in a run of cheap trials, against 8 hand-offs a trial.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["HandOff"]

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class HandOff:
    """One thread named `name`, started at the first call; `shutdown` ends it once the calls handed before ran."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: SimpleQueue[_Job | None] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()  # starting and shutting down (from any thread), never per call

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` on this thread; its result, or what it raised."""
        if self._thread is None:
            self._start()
        if self._closed:
            raise RuntimeError(f"the {self.name} thread was shut down: no call can be handed to it")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, fn, args, kwargs))
        return await future

    def shutdown(self, wait: bool = True) -> None:
        """No more calls; the thread ends once those handed before have run (waited for with `wait`)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
            thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._serve, name=self.name)
            self._thread.start()
            # as concurrent.futures does: at the interpreter's exit the calls handed already run, then it ends
            register = getattr(threading, "_register_atexit", None)
            if register is not None:
                ref = weakref.ref(self)
                try:
                    register(lambda: (hand_off := ref()) is not None and hand_off.shutdown())
                except RuntimeError:  # the interpreter is shutting down already
                    pass

    def _serve(self) -> None:
        while (job := self._queue.get()) is not None:
            loop, future, fn, args, kwargs = job
            del job
            if future.cancelled():  # its caller gave up before it started
                continue
            try:
                result, error = fn(*args, **kwargs), None
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller, whatever it is
                result, error = None, exc
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # its loop is closed: nobody waits for it any more
                pass
            del loop, future, fn, args, kwargs, result, error


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled while it ran
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
