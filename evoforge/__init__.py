"""evoforge: research as a closed loop — learn, design, experiment, analyze — over a program and its evaluator.

`import evoforge` stays light (the telemetry helper and the sandbox harness import it in child processes);
`evoforge.run` and `evoforge.resume` are loaded on first use.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself costs every jailed start 2 ms
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"
__all__ = ["run", "resume"]


def __getattr__(name: str) -> Any:
    if name in ("run", "resume"):
        from evoforge import runs

        return getattr(runs, name)
    raise AttributeError(f"module 'evoforge' has no attribute {name!r}")
