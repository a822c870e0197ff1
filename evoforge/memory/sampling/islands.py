"""Island sampling: the run's trials live on N islands (sub-populations) that evolve apart and exchange their best
on a ring, so the search keeps several lines of attack instead of collapsing onto one.

Membership. A root trial (the seed: no parent) belongs to every island. A child joins the island its parent was
sampled from: the sampler notes each pick as a claim (parent, inspirations, island) and the first recorded trial
with that parent (and those inspirations) takes it. Without a claim (e.g. a run resumed from an older record) the
child joins its parent's home island, and a child of a root joins island `id % N`: membership is derivable from
lineage, and only the exceptions are kept in the state.

Migration. Each time the run gains `migration_interval` more non-root trials (any status), every island i copies
its best `ceil(migration_rate * scored members)` trials into island (i + 1) % N, as members, not new trials.
Parents are picked island by island in turn (round robin); inside the island an inner policy (greedy, random,
ucb1, weighted) chooses. Inspirations come from the same island first, then from the others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evoforge.memory.sampling._base import Sampler, pool_for, ranked, require_scored
from evoforge.memory.sampling.pool import TrialPool
from evoforge.models import Direction, Trial

MAX_CLAIMS = 256  # picks whose child never reached the record (a proposer crash) are forgotten after this many
MAX_EVENTS = 50  # migration events kept in the state (for status displays); membership is kept whole


@dataclass(frozen=True)
class Migration:
    """One ring migration: after `after` non-root trials, `trials` of island `source` joined island `target`."""

    after: int
    source: int
    target: int
    trials: tuple[int, ...]


class Archipelago:
    """Island membership and ring migration over a run's trials (no parent choice: see `IslandSampler`)."""

    def __init__(self, count: int = 1, migration_interval: int = 10, migration_rate: float = 0.1) -> None:
        if count < 1 or migration_interval < 1 or not 0.0 <= migration_rate <= 1.0:
            raise ValueError(
                "islands: need count >= 1, migration_interval >= 1 and 0 <= migration_rate <= 1, got "
                f"{count}, {migration_interval}, {migration_rate}"
            )
        self.count, self.interval, self.rate = count, migration_interval, migration_rate
        self.home: dict[int, int | None] = {}  # trial id -> island (None: a root, on every island)
        self.overrides: dict[int, int] = {}  # children whose island differs from the lineage rule
        self.claims: list[tuple[int, tuple[int, ...], int]] = []
        self.migrants: list[set[int]] = [set() for _ in range(count)]
        self.migrations = 0
        self.events: list[Migration] = []
        self.children = 0  # non-root trials seen
        self.placed_upto = 0  # highest trial id placed so far
        self.replay_upto = 0  # trials up to this id were placed before a resume: they take no claim
        self.cursor = 0  # the island whose turn is next
        self.last = 0  # the island of the latest pick
        # Following the loop's pool: one pool per island, caught up from the run pool's log on each update, so a
        # pick costs the same at 100 or 100,000 trials. (Given plain lists, members are found by a scan instead.)
        self._source: TrialPool | None = None
        self._seen = 0
        self._pools: list[TrialPool] = []

    # ---- membership ---------------------------------------------------------------------------------------
    def update(self, trials: Sequence[Trial], direction: Direction) -> None:
        """Place trials not seen before, then apply the migrations that are due."""
        source = self._source
        if trials is source and source is not None and source.direction is direction:
            changed = list(dict.fromkeys(source.changes(self._seen)))
            self._seen = source.log_size
            self._place_new(sorted((t for t in map(source.get, changed) if t is not None and t.id not in self.home),
                                   key=lambda t: t.id))
            for trial_id in changed:
                trial = source.get(trial_id)
                if trial is not None:
                    for island in self.islands_of(trial_id):
                        self._pools[island].put(trial)
        else:
            self._place_new(sorted((t for t in trials if t.id not in self.home), key=lambda t: t.id))
            self._source = None
            if isinstance(trials, TrialPool):
                self._pools = [TrialPool(direction, self._scan(trials, island)) for island in range(self.count)]
                self._source, self._seen = trials, trials.log_size
        while self.count > 1 and self.children >= (self.migrations + 1) * self.interval:
            self.migrations += 1
            self._migrate(trials, direction)

    def _place_new(self, new: Sequence[Trial]) -> None:
        for trial in new:
            self.home[trial.id] = self._place(trial)
            self.children += bool(trial.parent_ids)
            self.placed_upto = max(self.placed_upto, trial.id)

    def _place(self, trial: Trial) -> int | None:
        if not trial.parent_ids:
            return None
        if trial.id in self.overrides:
            return self.overrides[trial.id]
        parent = trial.parent_ids[0]
        default = self.home.get(parent)
        if default is None:
            default = trial.id % self.count
        if trial.id <= self.replay_upto:
            return default
        claim = self._take_claim(parent, tuple(trial.inspiration_ids))
        if claim is not None and claim != default:
            self.overrides[trial.id] = claim
            return claim
        return default

    def _take_claim(self, parent: int, inspirations: tuple[int, ...]) -> int | None:
        same_parent = [i for i, claim in enumerate(self.claims) if claim[0] == parent]
        if not same_parent:
            return None
        exact = [i for i in same_parent if self.claims[i][1] == inspirations]
        return self.claims.pop((exact or same_parent)[0])[2]

    def pick(self, trials: Sequence[Trial]) -> int:
        """The next island in turn that has a scored member (ValueError when no trial is scored)."""
        require_scored(trials)
        for step in range(self.count):
            island = (self.cursor + step) % self.count
            members = self.members(trials, island)
            if members.n_scored if isinstance(members, TrialPool) else any(t.scored for t in members):
                self.cursor, self.last = (island + 1) % self.count, island
                return island
        raise ValueError("no island has a scored trial")

    def claim(self, parent: Trial, island: int, inspirations: Sequence[Trial] = ()) -> None:
        """Note that `parent` was picked on `island`: its next child joins that island."""
        self.claims.append((parent.id, tuple(t.id for t in inspirations), island))
        del self.claims[:-MAX_CLAIMS]

    def set_claim_inspirations(self, parent: Trial, inspirations: Sequence[Trial]) -> None:
        """Attach the inspirations shown with the latest pick of `parent` (they make the claim's match exact)."""
        for i in range(len(self.claims) - 1, -1, -1):
            if self.claims[i][0] == parent.id:
                self.claims[i] = (parent.id, tuple(t.id for t in inspirations), self.claims[i][2])
                return

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
        if trials is self._source and self._seen == self._source.log_size:
            return self._pools[island]
        return self._scan(trials, island)

    def _scan(self, trials: Sequence[Trial], island: int) -> list[Trial]:
        migrants = self.migrants[island]
        return [t for t in trials if t.id in migrants or (t.id in self.home and self.home[t.id] in (None, island))]

    def _migrate(self, trials: Sequence[Trial], direction: Direction) -> None:
        moving: list[tuple[int, list[int]]] = []
        for island in range(self.count):
            best = ranked(self.members(trials, island), direction)
            share = math.ceil(self.rate * len(best)) if self.rate > 0 else 0
            moving.append((island, [t.id for t in best[:share]]))
        for source, ids in moving:
            target = (source + 1) % self.count
            new = [i for i in ids if target not in self.islands_of(i)]
            self.migrants[target].update(new)
            if trials is self._source:
                for trial_id in new:
                    self._pools[target].put(self._source.get(trial_id))  # type: ignore[arg-type]
            self.events.append(Migration(self.children, source, target, tuple(new)))
        del self.events[:-MAX_EVENTS]

    # ---- state --------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "overrides": {str(k): v for k, v in self.overrides.items()},
            "claims": [[p, list(insp), island] for p, insp, island in self.claims],
            "migrants": [sorted(m) for m in self.migrants],
            "migrations": self.migrations,
            "placed_upto": self.placed_upto,
            "cursor": self.cursor,
            "last": self.last,
            "events": [[e.after, e.source, e.target, list(e.trials)] for e in self.events],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a `state_dict()`; placements are re-derived from the trials on the next `update`."""
        self.home.clear()
        self._source = None
        self.children = 0
        self.placed_upto = self.replay_upto = int(state.get("placed_upto", 0))
        self.overrides = {int(k): int(v) for k, v in state.get("overrides", {}).items()}
        self.claims = [(int(p), tuple(insp), int(island)) for p, insp, island in state.get("claims", [])]
        migrants = state.get("migrants", [])
        self.migrants = [set(migrants[i]) if i < len(migrants) else set() for i in range(self.count)]
        self.migrations = int(state.get("migrations", 0))
        self.cursor = int(state.get("cursor", 0)) % self.count
        self.last = int(state.get("last", 0)) % self.count
        self.events = [Migration(a, s, t, tuple(ids)) for a, s, t, ids in state.get("events", [])]


class IslandSampler(Sampler):
    """Islands in turn; `inner` (a sampler, given only the island's members) picks the parent there."""

    def __init__(self, seed: int | None = None, *, islands: Archipelago, inner: Sampler) -> None:
        super().__init__(seed)
        self.islands = islands
        self.inner = inner

    def sample_parent(
        self, trials: Sequence[Trial], direction: Direction, pending: Mapping[int, int] | None = None
    ) -> Trial:
        self.islands.update(trials, direction)
        island = self.islands.pick(trials)
        parent = self.inner.sample_parent(self.islands.members(trials, island), direction, pending)
        self.islands.claim(parent, island)
        return parent

    def sample_inspirations(
        self, trials: Sequence[Trial], parent: Trial, k: int, direction: Direction
    ) -> list[Trial]:
        self.islands.update(trials, direction)
        local = self.islands.members(trials, self.islands.last)
        chosen = super().sample_inspirations(local, parent, k, direction)
        chosen += fill(trials, parent, chosen, k - len(chosen), direction)
        self.islands.set_claim_inspirations(parent, chosen)
        return chosen

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "islands": self.islands.state_dict(),
            "inner": self.inner.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.islands.load_state_dict(state.get("islands", {}))
        self.inner.load_state_dict(state.get("inner", {}))


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
