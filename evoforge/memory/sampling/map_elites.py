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
from collections.abc import Mapping, Sequence
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


class MapElitesSampler(Sampler):
    """A grid over `features` (one elite per cell), one grid per island of `islands` (None: a single grid)."""

    name = "map_elites"

    def __init__(
        self, seed: int | None = None, *, features: Sequence[FeatureSpec], islands: Archipelago | None = None
    ) -> None:
        super().__init__(seed)
        if not features:
            raise ValueError("MAP-Elites needs at least one feature (research.map_elites.features)")
        self.features = list(features)
        self.islands = islands or Archipelago(1)
        self.warned: set[str] = set()
        self._elites: list[dict[Cell, Trial]] = []  # per island, for the attached population (see `rebuild`)
        self.islands.on_join = self._joined

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
        """Elite per occupied cell among the scored `trials`: the best score (ties: the lowest id), by a scan."""
        elites: dict[Cell, Trial] = {}
        for trial in pool_for(trials, direction).iter_best():
            cell = self.cell(trial)
            if cell is not None and cell not in elites:
                elites[cell] = trial
        return elites

    def island_grid(self, trials: Sequence[Trial], direction: Direction, island: int) -> dict[Cell, Trial]:
        """The grid of one island (the only grid when there is a single island): kept up to date trial by trial
        for the attached population, scanned for a plain list."""
        self.islands.update(trials, direction)
        if self._elites and trials is self.islands.source:
            return self._elites[island]
        return self.grid(self.islands.members(trials, island), direction)

    def _joined(self, island: int, trial: Trial) -> None:
        """A trial joined an island of the attached population (recorded, or migrated): the elite of its cell if it
        beats the one there. Scores never change once a trial is finished, so the best so far is the best."""
        source = self.islands.source
        if not self._elites or source is None or not trial.scored:
            return
        cell = self.cell(trial)
        if cell is None:
            return
        current = self._elites[island].get(cell)
        if current is None or current.id == trial.id or (
                rank_key(trial, source.direction) < rank_key(current, source.direction)):
            self._elites[island][cell] = trial

    def sample_parent(
        self, trials: Sequence[Trial], direction: Direction, pending: Mapping[int, int] | None = None
    ) -> Trial:
        self.islands.update(trials, direction)
        self.islands.due(trials, direction)
        island = self.islands.pick(trials, self.turn if self.turn is not None else self.islands.picks)
        elites = self.island_grid(trials, direction, island)
        if elites:
            cell = self.rng.choice(sorted(elites))
            parent = elites[cell]
            self.why = {"reason": "elite of a random occupied cell", "island": island, "cell": list(cell)}
        else:  # nothing placed yet (features missing): build on the island's best meanwhile
            parent = best_n(self.islands.members(trials, island), direction, 1)[0]
            self.why = {"reason": "island best (no cell occupied yet)", "island": island}
        return parent

    def recorded_picks(self, trials: Sequence[Trial], direction: Direction) -> int:
        self.islands.update(trials, direction)
        return self.islands.picks

    def pick_facts(self, parent: Trial) -> dict[str, Any]:
        migration = self.islands.unrecorded
        return {**self.why, **({"migration": migration} if migration is not None else {})}

    def observe(self, trial: Trial, old: Trial | None) -> None:
        self.islands.observe(trial, old)

    def rebuild(self, trials: Sequence[Trial], direction: Direction) -> None:
        self.reset()
        if isinstance(trials, TrialPool) and trials.direction is direction:
            self._elites = [{} for _ in range(self.islands.count)]
            self.islands.attach(trials)  # each member joins its island's grid as it is placed
        else:
            self.islands.update(trials, direction)

    def reset(self) -> None:
        super().reset()
        self.islands.reset()
        self._elites = []

    def sample_inspirations(
        self, trials: Sequence[Trial], parent: Trial, k: int, direction: Direction
    ) -> list[Trial]:
        """Elites of the cells nearest the parent's (same island), then the run's best to make up `k`."""
        if k <= 0:
            return []
        self.islands.update(trials, direction)
        elites = self.island_grid(trials, direction, self.islands.last)
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
        return chosen

    def state(self, trials: Sequence[Trial] | None = None, direction: Direction | None = None) -> dict[str, Any]:
        """Membership and migrations; with the run's trials, each island's grid too (cell -> elite id)."""
        if trials is not None and direction is not None:
            self.islands.update(trials, direction)  # caught up with the run first
        state: dict[str, Any] = {"islands": self.islands.state()}
        if trials is not None and direction is not None:
            state["grids"] = [{cell: elite.id for cell, elite in self.island_grid(trials, direction, i).items()}
                              for i in range(self.islands.count)]
        return state


def _distance(a: Cell, b: Cell) -> int:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))
