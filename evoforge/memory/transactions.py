"""How the record's writes become transactions: one per call, several in one `batch`, and `io`, which runs record
calls on the record's own thread so the event loop never waits on the database. Subscribers (the loop's
population) hear of every trial written, after its transaction committed, on the thread that asked for the write.
Mixed into `Record` (through `ResearchLog`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from evoforge.hand_off import HandOff
from evoforge.models import Trial

T = TypeVar("T")


class Transactions:
    """The transaction state of one record; `Record` provides the engine and calls `_open_transactions`."""

    _engine: Engine
    _batch: Connection | None = None  # the open transaction of `batch`, used by the thread that opened it
    _batch_thread: int | None = None

    def _open_transactions(self) -> None:
        self._listeners: list[Callable[[Trial], None]] = []
        self._unsent: list[Trial] = []  # trials written inside the open batch, told to the listeners once it commits
        self._on_commit: list[Callable[[], None]] = []  # what runs once the open batch commits (`_after_commit`)
        self._io_thread: HandOff | None = None  # the record's own thread (see `io`)
        self._deferred = threading.local()  # `active` on the record's thread inside `io`: the caller tells
        # the connection the first thread to run a batch (the record's thread) keeps for its batches: no pool
        # checkout and return (with its reset) at every transaction
        self._kept: Connection | None = None
        self._kept_thread: int | None = None
        self._kept_lock = threading.Lock()
        self._own_hooks = threading.local()  # `hooks`: what runs once the transaction `_writing` opened commits

    def _close_io(self) -> None:
        if self._io_thread is not None:
            self._io_thread.shutdown(wait=True)
            self._io_thread = None
        kept, self._kept = self._kept, None
        if kept is not None:
            kept.close()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A transaction (committed at the end, rolled back on an error) on this thread's kept connection, or on
        one from the pool for any other thread. A kept connection the database dropped is let go."""
        ident = threading.get_ident()
        if self._kept_thread is None:
            with self._kept_lock:  # two threads starting their first batch at once: one keeps a connection
                if self._kept_thread is None:
                    self._kept, self._kept_thread = self._engine.connect(), ident
        conn = self._kept if self._kept_thread == ident else None
        if conn is None:
            with self._engine.begin() as pooled:
                yield pooled
            return
        try:
            with conn.begin():
                yield conn
        finally:
            if conn.invalidated:  # lost (the server dropped it): the next batch takes a fresh one
                self._kept = self._kept_thread = None
                conn.close()

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A connection to write with: the batch's when this thread has one open, else a transaction of its own."""
        if self._batch is not None and self._batch_thread == threading.get_ident():
            yield self._batch
            return
        outer = getattr(self._own_hooks, "hooks", None)
        hooks: list[Callable[[], None]] = []
        try:
            with self._engine.begin() as conn:
                self._own_hooks.hooks = hooks
                yield conn
        finally:
            self._own_hooks.hooks = outer
        for hook in hooks:
            hook()

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection to read with: the batch's when this thread has one open (no connection taken from the pool
        and handed back; it sees the batch's own writes), else one of its own."""
        if self._batch is not None and self._batch_thread == threading.get_ident():
            yield self._batch
            return
        with self._engine.connect() as conn:
            yield conn

    def _wrote(self, trial: Trial) -> Trial:
        if self._batch is not None and self._batch_thread == threading.get_ident():
            self._unsent.append(trial)  # told once the batch commits
            return trial
        for listener in self._listeners:
            listener(trial)
        return trial

    def _after_commit(self, hook: Callable[[], None]) -> None:
        """Run `hook` once what this thread wrote is committed: at the end of its open batch, or of the transaction
        `_writing` opened (never, when it rolls back), else now (a write outside both committed already)."""
        if self._batch is not None and self._batch_thread == threading.get_ident():
            self._on_commit.append(hook)
        elif getattr(self._own_hooks, "hooks", None) is not None:
            self._own_hooks.hooks.append(hook)
        else:
            hook()

    @contextmanager
    def batch(self) -> Iterator[list[Trial]]:
        """Make the writes inside (from this thread) one transaction: all committed at the end, or none on an error;
        subscribers hear of the trials written once it committed. A batch inside a batch joins it. Yields the list
        the trials written are collected in (what `io` hands to the event loop's thread)."""
        if self._batch is not None and self._batch_thread == threading.get_ident():
            yield self._unsent
            return
        unsent: list[Trial] = []
        hooks: list[Callable[[], None]] = []
        try:
            with self._transaction() as conn:
                self._batch, self._batch_thread = conn, threading.get_ident()
                self._unsent, self._on_commit = unsent, hooks
                yield unsent
        finally:
            self._batch = self._batch_thread = None
            self._unsent, self._on_commit = [], []
        for hook in hooks:
            hook()
        if not getattr(self._deferred, "active", False):
            for trial in unsent:
                self._wrote(trial)

    async def io(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` (calls on this record) on the record's own thread, as one transaction, so the
        event loop never waits on the database; the subscribers hear of the trials written on the caller's
        thread, after the commit and before this returns (so what a write returns is in the population)."""
        if self._io_thread is None:
            self._io_thread = HandOff("record")

        def work() -> tuple[T, list[Trial]]:
            self._deferred.active = True
            try:
                with self.batch() as written:
                    return fn(*args, **kwargs), written
            finally:
                self._deferred.active = False

        result, written = await self._io_thread.call(work)
        for trial in written:
            self._wrote(trial)
        return result

    def subscribe(self, listener: Callable[[Trial], None]) -> None:
        """Call `listener` with every trial this record writes (added or changed), after the write committed."""
        self._listeners.append(listener)
