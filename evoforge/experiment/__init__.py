"""The Engineer pillar: sandboxed evaluation of candidates under the task's evaluator.

`Engineer` is loaded on first use so that child processes importing `evoforge.experiment.harness` stay light.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself costs every jailed start 2 ms
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Engineer"]


def __getattr__(name: str) -> Any:
    if name == "Engineer":
        from evoforge.experiment.engineer import Engineer

        return Engineer
    raise AttributeError(f"module 'evoforge.experiment' has no attribute {name!r}")
