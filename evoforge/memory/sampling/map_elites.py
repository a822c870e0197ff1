"""MAP-Elites parent sampling: trials are placed on a grid of feature bins and each cell keeps its best trial
(the elite), so the search keeps good programs that differ in kind, not only the single best.

Features are real: any metric the evaluator returns (`trial.metrics[name]`), or the built-ins `code_length`
(characters) and `code_lines`. A value is binned by its feature's bounds: `bins` equal bins over [min, max],
values outside going to the edge bins. A trial lacking a feature (or with a non-finite one) is not placed, with
one warning per feature. The parent is the elite of a cell drawn uniformly among the occupied ones (seeded);
inspirations are the elites of the nearest cells (Chebyshev distance, then score). With islands, each island has
its own grid: islands take turns as in `IslandSampler`, and a child joins its parent's island.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evoforge.config import FeatureSpec
from evoforge.memory.sampling._base import Sampler, best_n, pool_for
from evoforge.memory.sampling.islands import Archipelago, fill
from evoforge.memory.sampling.pool import TrialPool, rank_key
from evoforge.models import Direction, Trial

log = logging.getLogger(__name__)

Cell = tuple[int, ...]


def builtin_feature(trial: Trial, name: str) -> float | None:
    """The built-in features: code_length (characters) and code_lines; None for any other name."""
    if name == "code_length":
        return float(len(trial.code))
    if name == "code_lines":
        return float(len(trial.code.splitlines()))
    return None


def bin_index(value: float, spec: FeatureSpec) -> int:
    """The bin of `value` on `spec`'s axis, clamped to [0, bins - 1]."""
    position = (value - spec.min) / (spec.max - spec.min) * spec.bins
    return min(spec.bins - 1, max(0, math.floor(position)))


@dataclass
class _Grid:
    """One pool's grid, as of `seen` entries of the pool's log."""

    seen: int
    elites: dict[Cell, Trial]
    cell_of: dict[int, Cell]  # each elite's id -> its cell


class MapElitesSampler(Sampler):
    """A grid over `features` (one elite per cell), one grid per island of `islands` (None: a single grid)."""

    def __init__(
        self, seed: int | None = None, *, features: Sequence[FeatureSpec], islands: Archipelago | None = None
    ) -> None:
        super().__init__(seed)
        if not features:
            raise ValueError("MAP-Elites needs at least one feature (research.map_elites.features)")
        self.features = list(features)
        self.islands = islands or Archipelago(1)
        self.warned: set[str] = set()
        self._grids: weakref.WeakKeyDictionary[TrialPool, _Grid] = weakref.WeakKeyDictionary()

    def feature_value(self, trial: Trial, spec: FeatureSpec) -> float | None:
        """The trial's value on one feature: the metric of that name, else the built-in; None when missing."""
        raw = trial.metrics.get(spec.name) if spec.name in trial.metrics else builtin_feature(trial, spec.name)
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            self._warn_missing(trial, spec.name, raw)
            return None
        return float(raw)

    def _warn_missing(self, trial: Trial, name: str, raw: object) -> None:
        if name in self.warned:
            return
        self.warned.add(name)
        have = ", ".join(sorted(trial.metrics)) or "none"
        what = "is missing from" if raw is None else f"is not a finite number ({raw!r}) in"
        log.warning(
            "MAP-Elites feature %r %s trial %d's metrics (its metrics: %s; built-ins: code_length, code_lines); "
            "such trials stay off the grid: return the metric from the evaluator or fix research.map_elites.features",
            name, what, trial.id, have,
        )

    def cell(self, trial: Trial) -> Cell | None:
        """The trial's cell on the grid, or None when a feature is missing."""
        values = [self.feature_value(trial, spec) for spec in self.features]
        if any(value is None for value in values):
            return None
        return tuple(bin_index(float(v), spec) for v, spec in zip(values, self.features, strict=True))

    def grid(self, trials: Sequence[Trial], direction: Direction) -> dict[Cell, Trial]:
        """Elite per occupied cell among the scored `trials`: the best score (ties: the lowest id). Read-only: it
        is kept per pool (what the loop and the islands pass) and caught up from the pool's log, not rebuilt."""
        pool = pool_for(trials, direction)
        grid = self._grids.get(pool)
        if grid is None:
            elites: dict[Cell, Trial] = {}
            for trial in pool.iter_best():
                cell = self.cell(trial)
                if cell is not None and cell not in elites:
                    elites[cell] = trial
            grid = _Grid(pool.log_size, elites, {elite.id: cell for cell, elite in elites.items()})
            self._grids[pool] = grid
            return grid.elites
        for trial_id in dict.fromkeys(pool.changes(grid.seen)):
            old_cell = grid.cell_of.pop(trial_id, None)
            if old_cell is not None:  # an elite changed (rare): find its cell's elite again
                del grid.elites[old_cell]
                for trial in pool.iter_best():
                    if self.cell(trial) == old_cell:
                        grid.elites[old_cell], grid.cell_of[trial.id] = trial, old_cell
                        break
            trial = pool.get(trial_id)
            cell = self.cell(trial) if trial is not None and trial.scored else None
            if trial is None or cell is None:
                continue
            current = grid.elites.get(cell)
            if current is None or rank_key(trial, direction) < rank_key(current, direction):
                if current is not None:
                    grid.cell_of.pop(current.id, None)
                grid.elites[cell], grid.cell_of[trial.id] = trial, cell
        grid.seen = pool.log_size
        return grid.elites

    def island_grid(self, trials: Sequence[Trial], direction: Direction, island: int) -> dict[Cell, Trial]:
        """The grid of one island (the only grid when there is a single island)."""
        self.islands.update(trials, direction)
        return self.grid(self.islands.members(trials, island), direction)

    def sample_parent(
        self, trials: Sequence[Trial], direction: Direction, pending: Mapping[int, int] | None = None
    ) -> Trial:
        self.islands.update(trials, direction)
        island = self.islands.pick(trials)
        elites = self.grid(self.islands.members(trials, island), direction)
        if elites:
            parent = elites[self.rng.choice(sorted(elites))]
        else:  # nothing placed yet (features missing): build on the island's best meanwhile
            parent = best_n(self.islands.members(trials, island), direction, 1)[0]
        self.islands.claim(parent, island)
        return parent

    def sample_inspirations(
        self, trials: Sequence[Trial], parent: Trial, k: int, direction: Direction
    ) -> list[Trial]:
        """Elites of the cells nearest the parent's (same island), then the run's best to make up `k`."""
        if k <= 0:
            return []
        self.islands.update(trials, direction)
        elites = self.grid(self.islands.members(trials, self.islands.last), direction)
        origin = self.cell(parent)
        sign = direction.sign()
        chosen: list[Trial] = []
        if origin is not None:
            seen = {parent.code}
            by_distance = sorted(
                (cell for cell in elites if cell != origin),
                key=lambda c: (_distance(c, origin), -sign * float(elites[c].score or 0.0), elites[c].id),
            )
            for cell in by_distance:
                elite = elites[cell]
                if len(chosen) < k and elite.id != parent.id and elite.code not in seen:
                    seen.add(elite.code)
                    chosen.append(elite)
        chosen += fill(trials, parent, chosen, k - len(chosen), direction)
        self.islands.set_claim_inspirations(parent, chosen)
        return chosen

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "islands": self.islands.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.islands.load_state_dict(state.get("islands", {}))


def _distance(a: Cell, b: Cell) -> int:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))
