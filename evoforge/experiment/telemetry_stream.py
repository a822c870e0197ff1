"""Tails the telemetry file while a stage runs: reads only new complete JSON lines, turns each into points
(one per metric), and skips partial, garbage or oversized lines. Bounded: reads at most `chunk` bytes per poll.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from evoforge.models import TelemetryPoint

MAX_LINE = 64 * 1024
CHUNK = 1 << 20
RESERVED = ("t", "step")


class TelemetryTail:
    """Incremental reader of one stage's telemetry file (JSON lines {"t", "step", name: value, ...}).

    `t` in a point is seconds since `started_at` (a time.time() value taken when the stage started).
    """

    def __init__(self, path: Path, stage: str, started_at: float, *, chunk: int = CHUNK) -> None:
        self.path, self.stage, self.started_at, self.chunk = path, stage, started_at, chunk
        self.offset = 0
        self.partial = b""
        self.skipped = 0  # lines that were not valid telemetry

    def poll(self) -> list[TelemetryPoint]:
        """Points from the complete lines appended since the last poll (none when the file does not exist)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(self.chunk)
        except FileNotFoundError:
            return []
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) > MAX_LINE:  # a line that never ends: drop what we have, keep reading after it
            self.partial = b""
            self.skipped += 1
        points: list[TelemetryPoint] = []
        for line in lines:
            parsed = self._parse(line)
            if parsed is None:
                self.skipped += 1 if line.strip() else 0
            else:
                points += parsed
        return points

    def drain(self, max_polls: int = 64) -> list[TelemetryPoint]:
        """Everything left in the file (bounded by `max_polls` reads), including a final unterminated line."""
        points: list[TelemetryPoint] = []
        for _ in range(max_polls):
            before = self.offset
            points += self.poll()
            if self.offset == before:
                break
        if self.partial:
            points += self._parse(self.partial) or []
            self.partial = b""
        return points

    def _parse(self, line: bytes) -> list[TelemetryPoint] | None:
        if not line.strip() or len(line) > MAX_LINE:
            return None
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(record, dict):
            return None
        t = _number(record.get("t"))
        step = record.get("step")
        if isinstance(step, float) and step.is_integer():
            step = int(step)
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            return None
        seconds = max(t - self.started_at, 0.0) if t is not None and math.isfinite(t) else 0.0
        return [TelemetryPoint(self.stage, step, str(name), value, seconds)
                for name, raw in record.items()
                if name not in RESERVED and (value := _number(raw)) is not None]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
