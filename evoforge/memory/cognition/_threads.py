"""BLAS on one thread for the duration of an encoder call, and restored after it: the encoder's small matrix products
are faster on one thread, and BLAS threads would compete with the sandboxed evaluations for the cores. The user's own
thread settings (environment variables, which evaluators inherit) are never touched."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()
_depth = 0  # encoder calls inside the limit right now (threads of one process share BLAS's setting)
_limit: Any = None  # threadpoolctl's limiter while _depth > 0
_controller: Any = None


def _blas_controller() -> Any:
    """threadpoolctl's view of the loaded BLAS libraries (made once), or None without threadpoolctl."""
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _controller = False
        else:
            _controller = ThreadpoolController()
    return _controller or None


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS limited to one thread inside the block, its previous setting restored when the last concurrent caller
    leaves (the setting is process-wide, so overlapping callers share one limit instead of restoring each other's)."""
    global _depth, _limit
    with _lock:
        if _depth == 0:
            controller = _blas_controller()
            _limit = None if controller is None else controller.limit(limits=1, user_api="blas")
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _limit is not None:
                _limit.restore_original_limits()
                _limit = None
