"""BLAS on one thread for the duration of an encoder call, and restored after it: the encoder's small matrix products
are faster on one thread, and BLAS threads would compete with the sandboxed evaluations for the cores. The user's own
thread settings (environment variables, which evaluators inherit) are never touched."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# BLAS's thread count is process-wide, and threadpoolctl lets only the thread that set it restore it: limited blocks
# run one at a time, so that none restores a setting another one made (the encoder is CPU-bound anyway)
_lock = threading.RLock()


def _blas_controller() -> Any:
    """threadpoolctl's view of the BLAS libraries loaded now (~0.3 ms: made at each call, since a library loaded later,
    e.g. by faiss or torch, would be missed by one made once), or None without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS limited to one thread inside the block, its previous setting restored on leaving it."""
    controller = _blas_controller()
    if controller is None:
        yield
        return
    with _lock, controller.limit(limits=1, user_api="blas"):
        yield
