"""BLAS on one thread for the duration of an encoder call, and restored after it: the encoder's small matrix products
are faster on one thread, and BLAS threads would compete with the sandboxed evaluations for the cores. The user's own
thread settings (environment variables, which evaluators inherit) are never touched."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# BLAS's thread count is process-wide, and threadpoolctl lets only the thread that set it restore it: limited blocks
# run one at a time, so that none restores a setting another one made (the encoder is CPU-bound anyway)
_lock = threading.RLock()


_controller: tuple[int, Any] | None = None  # (len(sys.modules) when made, threadpoolctl's controller)


def _blas_controller() -> Any:
    """threadpoolctl's view of the BLAS libraries loaded now, or None without threadpoolctl.

    Making one scans the process's shared libraries (~0.5 ms, as much as a tenth of a short text's encoding), so it
    is kept, and made again only when modules were imported since: a BLAS loaded later (by faiss or torch, say) comes
    with an import, and is then seen too."""
    global _controller
    loaded = len(sys.modules)
    if _controller is not None and _controller[0] == loaded:
        return _controller[1]
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    _controller = (len(sys.modules), ThreadpoolController())
    return _controller[1]


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS limited to one thread inside the block, its previous setting restored on leaving it."""
    controller = _blas_controller()
    if controller is None:
        yield
        return
    with _lock, controller.limit(limits=1, user_api="blas"):
        yield
