"""Holding a Ctrl-C back for a moment: from a run's first row in the record to the code that records why a run
stopped, an interrupt is kept and raised once that code is in place, so a Ctrl-C at start-up is recorded too."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

_NOT_SET = object()


class HeldInterrupt:
    """`with HeldInterrupt() as held:` keeps SIGINT from raising until `held.release()` (or the end of the block)
    raises the KeyboardInterrupt it kept, if any. Outside the main thread (where Python delivers no SIGINT) it does
    nothing."""

    def __init__(self) -> None:
        self.pending = False
        self._previous: Any = _NOT_SET

    def __enter__(self) -> HeldInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._hold)
        return self

    def _hold(self, _signum: int, _frame: FrameType | None) -> None:
        self.pending = True

    def _restore(self) -> None:
        if self._previous is not _NOT_SET:
            signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.default_int_handler)
            self._previous = _NOT_SET

    def release(self) -> None:
        """Put the previous SIGINT handler back; raise the KeyboardInterrupt held meanwhile, if one came."""
        self._restore()
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def __exit__(self, kind: type[BaseException] | None, _exc: BaseException | None,
                 _tb: TracebackType | None) -> None:
        if kind is None:
            self.release()
        else:
            self._restore()
