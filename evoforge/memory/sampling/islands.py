"""Island sampling: the run's trials live on N islands (sub-populations) that evolve apart and exchange their best
on a ring, so the search keeps several lines of attack instead of collapsing onto one.

Membership. A root trial (the seed: no parent) belongs to every island. A child joins the island its parent was
picked on: the pick's facts, written on the child's row, say which (`island`). A child without that fact (a record
made before facts, an internal error) joins its parent's home island, and a child of a root island `id % N`.

Migration. Each time the run gains `migration_interval` more non-root trials (any status), every island i copies
its best `ceil(migration_rate * scored members)` trials into island (i + 1) % N, as members, not new trials. The
pick that finds a migration due makes it and writes it in its facts (`migration`: its number, when, and who moved;
several due at once, as in a record made before facts, are made as one);
a resumed run replays it from there, so nothing but the trials is kept. Parents are picked island by island in turn
(round robin from the pick's turn); inside the island an inner policy (greedy, random, ucb1, weighted) chooses.
Inspirations come from the same island first, then from the others.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evoforge.memory.sampling._base import Sampler, pool_for, ranked, require_scored
from evoforge.memory.sampling.pool import TrialPool
from evoforge.models import Direction, Trial

MAX_EVENTS = 50  # migration events kept (for status displays); membership is kept whole


@dataclass(frozen=True)
class Migration:
    """One ring migration: after `after` non-root trials, `trials` of island `source` joined island `target`."""

    after: int
    source: int
    target: int
    trials: tuple[int, ...]


class Archipelago:
    """Island membership and ring migration over a run's trials, read from their facts (no parent choice: see
    `IslandSampler`)."""

    def __init__(self, count: int = 1, migration_interval: int = 10, migration_rate: float = 0.1) -> None:
        if count < 1 or migration_interval < 1 or not 0.0 <= migration_rate <= 1.0:
            raise ValueError(
                "islands: need count >= 1, migration_interval >= 1 and 0 <= migration_rate <= 1, got "
                f"{count}, {migration_interval}, {migration_rate}"
            )
        self.count, self.interval, self.rate = count, migration_interval, migration_rate
        self.on_join: Callable[[int, Trial], None] | None = None  # told of each trial joining an island (MAP-Elites)
        self.reset()

    def reset(self) -> None:
        self.home: dict[int, int | None] = {}  # trial id -> island (None: a root, on every island)
        self.migrants: list[set[int]] = [set() for _ in range(self.count)]
        self.migrations = 0
        self.events: list[Migration] = []
        self.children = 0  # non-root trials seen
        self.picks = 0  # trials placed by a pick's `island` fact
        self.unrecorded: dict[str, Any] | None = None  # a migration made by a pick whose trial is not recorded yet
        self.last = 0  # the island of the latest pick
        # Following the run's population (`attach`): one pool per island, kept up to date by `observe` with each
        # trial the record writes, so a pick costs the same at 100 or 100,000 trials. (Given a plain list, members
        # are found by a scan instead.)
        self._source: TrialPool | None = None
        self._pools: list[TrialPool] = []

    # ---- membership ---------------------------------------------------------------------------------------
    def attach(self, population: TrialPool) -> None:
        """Start over from the run's population: place its trials (in id order, replaying the migrations their
        facts carry) and build one pool per island; from then on `observe` must see every trial written."""
        self.reset()
        self._place_new(sorted(population, key=lambda t: t.id), population)
        self._source = population
        self._pools = [TrialPool(population.direction, self._scan(population, island)) for island in range(self.count)]
        if self.on_join is not None:
            for island, pool in enumerate(self._pools):
                for trial in pool.iter_best():
                    self.on_join(island, trial)

    def observe(self, trial: Trial, old: Trial | None) -> None:
        """A trial the record wrote (new or changed): placed when new, and kept current in its islands' pools."""
        if trial.id not in self.home:
            self._place_new([trial], self._source if self._source is not None else ())
        if self._source is not None:
            for island in self.islands_of(trial.id):
                self._join(island, trial)

    def _join(self, island: int, trial: Trial) -> None:
        self._pools[island].put(trial)
        if self.on_join is not None:
            self.on_join(island, trial)

    def update(self, trials: Sequence[Trial], direction: Direction) -> None:
        """Place the trials of a plain list not seen before (the attached population is kept by `observe`)."""
        if trials is not self._source:
            self._place_new(sorted((t for t in trials if t.id not in self.home), key=lambda t: t.id), trials)

    def _place_new(self, new: Sequence[Trial], trials: Sequence[Trial]) -> None:
        for trial in new:
            self.home[trial.id] = self._place(trial)
            self.children += bool(trial.parent_ids)
            self.picks += "island" in trial.facts
            migration = trial.facts.get("migration")
            if migration and int(migration["number"]) > self.migrations:
                self._apply(migration, trials)
            if self.unrecorded is not None and self.unrecorded["number"] <= self.migrations:
                self.unrecorded = None

    def _place(self, trial: Trial) -> int | None:
        if not trial.parent_ids:
            return None
        island = trial.facts.get("island")
        if isinstance(island, int) and 0 <= island < self.count:
            return island
        default = self.home.get(trial.parent_ids[0])
        return trial.id % self.count if default is None else default

    def due(self, trials: Sequence[Trial], direction: Direction) -> dict[str, Any] | None:
        """The migration a pick must make now (made, and kept until a recorded trial carries it), or None."""
        number = self.children // self.interval  # several due at once (a record from before facts): made as one
        if self.unrecorded is None and self.count > 1 and number > self.migrations:
            moves = []
            for island in range(self.count):
                best = ranked(self.members(trials, island), direction)
                share = math.ceil(self.rate * len(best)) if self.rate > 0 else 0
                target = (island + 1) % self.count
                moves.append([island, target, [t.id for t in best[:share] if target not in self.islands_of(t.id)]])
            self.unrecorded = {"number": number, "after": self.children, "moves": moves}
            self._apply(self.unrecorded, trials)
        return self.unrecorded

    def _apply(self, migration: Mapping[str, Any], trials: Sequence[Trial]) -> None:
        self.migrations = int(migration["number"])
        for source, target, ids in migration["moves"]:
            new = [int(i) for i in ids if int(i) not in self.migrants[target]]
            self.migrants[target].update(new)
            if trials is self._source and self._source is not None and self._pools:
                for trial_id in new:
                    trial = self._source.get(trial_id)
                    if trial is not None:
                        self._join(target, trial)
            self.events.append(Migration(int(migration["after"]), source, target, tuple(int(i) for i in ids)))
        del self.events[:-MAX_EVENTS]

    def pick(self, trials: Sequence[Trial], turn: int) -> int:
        """The island whose turn it is, or the next one after it that has a scored member (ValueError when no
        trial is scored)."""
        require_scored(trials)
        for step in range(self.count):
            island = (turn + step) % self.count
            members = self.members(trials, island)
            if members.n_scored if isinstance(members, TrialPool) else any(t.scored for t in members):
                self.last = island
                return island
        raise ValueError("no island has a scored trial")

    @property
    def source(self) -> TrialPool | None:
        """The population attached (None: plain lists are scanned)."""
        return self._source

    def islands_of(self, trial_id: int) -> list[int]:
        """Every island `trial_id` is a member of (home and migrations)."""
        home = self.home.get(trial_id)
        if home is None and trial_id in self.home:
            return list(range(self.count))
        found = {home} if home is not None else set()
        found.update(i for i, migrants in enumerate(self.migrants) if trial_id in migrants)
        return sorted(found)

    def members(self, trials: Sequence[Trial], island: int) -> Sequence[Trial]:
        """The trials of `trials` on `island`: roots, those at home there and migrants (the island's pool when
        following the loop's pool and caught up with it, else a scan in the order of `trials`)."""
        if trials is self._source and self._pools:
            return self._pools[island]
        return self._scan(trials, island)

    def _scan(self, trials: Sequence[Trial], island: int) -> list[Trial]:
        migrants = self.migrants[island]
        return [t for t in trials if t.id in migrants or (t.id in self.home and self.home[t.id] in (None, island))]

    def state(self) -> dict[str, Any]:
        """Membership and migrations as plain data (what a resumed run must find again)."""
        return {
            "home": dict(self.home), "migrants": [sorted(m) for m in self.migrants], "migrations": self.migrations,
            "events": list(self.events), "children": self.children, "picks": self.picks,
        }


class IslandSampler(Sampler):
    """Islands in turn; `inner` (a sampler, given only the island's members) picks the parent there."""

    name = "islands"

    def __init__(self, seed: int | None = None, *, islands: Archipelago, inner: Sampler) -> None:
        super().__init__(seed)
        self.islands = islands
        self.inner = inner

    def recorded_picks(self, trials: Sequence[Trial], direction: Direction) -> int:
        self.islands.update(trials, direction)
        return self.islands.picks

    def sample_parent(
        self, trials: Sequence[Trial], direction: Direction, pending: Mapping[int, int] | None = None
    ) -> Trial:
        self.islands.update(trials, direction)
        self.islands.due(trials, direction)
        island = self.islands.pick(trials, self.turn if self.turn is not None else self.islands.picks)
        self.inner.rng = self.rng
        parent = self.inner.sample_parent(self.islands.members(trials, island), direction, pending)
        self.why = {**self.inner.why, "island": island}
        return parent

    def pick_facts(self, parent: Trial) -> dict[str, Any]:
        migration = self.islands.unrecorded
        return {**self.why, **({"migration": migration} if migration is not None else {})}

    def sample_inspirations(
        self, trials: Sequence[Trial], parent: Trial, k: int, direction: Direction
    ) -> list[Trial]:
        self.islands.update(trials, direction)
        local = self.islands.members(trials, self.islands.last)
        chosen = super().sample_inspirations(local, parent, k, direction)
        chosen += fill(trials, parent, chosen, k - len(chosen), direction)
        return chosen

    def observe(self, trial: Trial, old: Trial | None) -> None:
        self.islands.observe(trial, old)

    def rebuild(self, trials: Sequence[Trial], direction: Direction) -> None:
        self.reset()
        if isinstance(trials, TrialPool) and trials.direction is direction:
            self.islands.attach(trials)
        else:
            self.islands.update(trials, direction)

    def reset(self) -> None:
        super().reset()
        self.islands.reset()

    def state(self, trials: Sequence[Trial] | None = None, direction: Direction | None = None) -> dict[str, Any]:
        if trials is not None and direction is not None:
            self.islands.update(trials, direction)  # caught up with the run first
        return {"islands": self.islands.state()}


def fill(
    trials: Sequence[Trial], parent: Trial, chosen: Sequence[Trial], k: int, direction: Direction
) -> list[Trial]:
    """Up to `k` more inspirations from the whole run, best first, skipping the parent and programs already shown."""
    if k <= 0:
        return []
    seen = {parent.code, *(t.code for t in chosen)}
    extra: list[Trial] = []
    for trial in pool_for(trials, direction).iter_best():
        if len(extra) >= k:
            break
        if trial.id != parent.id and trial.code not in seen:
            seen.add(trial.code)
            extra.append(trial)
    return extra
