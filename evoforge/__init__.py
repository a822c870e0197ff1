"""evoforge: research as a closed loop — learn, design, experiment, analyze — over a program and its evaluator.

`import evoforge` stays light (the telemetry helper and the sandbox harness import it in child processes);
`evoforge.run` and `evoforge.resume` are loaded on first use.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["run", "resume"]


def __getattr__(name: str) -> Any:
    if name in ("run", "resume"):
        from evoforge import runs

        return getattr(runs, name)
    raise AttributeError(f"module 'evoforge' has no attribute {name!r}")
