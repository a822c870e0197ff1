"""Benching: a model that fails `after_failures` calls in a row sits out `bench_s` seconds, then gets another go."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("evoforge.llm")


class Bench:
    """Counts consecutive failed calls per model; `seconds_left(model)` > 0 while it is benched."""

    def __init__(self, after_failures: int, bench_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.after_failures = after_failures
        self.bench_s = bench_s
        self.clock = clock
        self._streak: dict[str, int] = {}
        self._until: dict[str, float] = {}
        self.benchings: dict[str, int] = {}  # how often each model was benched

    def success(self, model: str) -> None:
        self._streak[model] = 0

    def failure(self, model: str) -> bool:
        """Count a failed call; True when it benches the model."""
        streak = self._streak.get(model, 0) + 1
        self._streak[model] = streak
        if streak < self.after_failures or self.bench_s <= 0:
            return False
        self._streak[model] = 0
        self._until[model] = self.clock() + self.bench_s
        self.benchings[model] = self.benchings.get(model, 0) + 1
        log.warning("model %r failed %d calls in a row: benched for %g s", model, streak, self.bench_s)
        return True

    def seconds_left(self, model: str) -> float:
        return max(self._until.get(model, 0.0) - self.clock(), 0.0)

    def benched(self, model: str) -> bool:
        return self.seconds_left(model) > 0
