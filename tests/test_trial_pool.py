"""The trial pool the loop keeps for samplers: its indexes agree with a rescan of the trials after every change
(new trials, a running trial that succeeds, a result turned suspect), and samplers pick the same on a pool kept up
to date as on a fresh list of the same trials."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

import pytest

from evoforge.config import FeatureSpec, IslandSettings, MapElitesSettings
from evoforge.memory.sampling import UCB1Sampler, make_sampler
from evoforge.memory.sampling._base import best_n, count_children, ranked
from evoforge.memory.sampling.pool import TrialPool
from evoforge.models import Direction, Trial, TrialStatus

STEPS = 300


def _random_run(rng: random.Random, steps: int) -> list[Trial]:
    """A run's history as a series of versions of trials: each entry replaces the trial with its id."""
    events: list[Trial] = [Trial(id=1, status=TrialStatus.SUCCEEDED, score=1.0, code="seed")]
    running: list[Trial] = []
    next_id = 2
    for _ in range(steps):
        roll = rng.random()
        if running and roll < 0.4:  # a running trial finishes: scored, failed or suspect
            trial = running.pop(rng.randrange(len(running)))
            outcome = rng.random()
            if outcome < 0.7:
                done = dataclasses.replace(trial, status=TrialStatus.SUCCEEDED, score=round(rng.uniform(-5, 5), 1))
            elif outcome < 0.9:
                done = dataclasses.replace(trial, status=TrialStatus.FAILED, error_class="crash")
            else:
                done = dataclasses.replace(trial, status=TrialStatus.SUCCEEDED, score=rng.uniform(-5, 5), suspect=True)
            events.append(done)
        elif roll < 0.45 and len(events) > 3:  # a scored trial is later found suspect
            victim = rng.choice(events)
            if victim.scored:
                events.append(dataclasses.replace(victim, suspect=True))
        else:
            scored_ids = [t.id for t in events if t.scored] or [1]
            parents = tuple(rng.sample(scored_ids, k=min(len(scored_ids), rng.choice((1, 1, 2)))))
            trial = Trial(id=next_id, status=TrialStatus.RUNNING, parent_ids=parents, code=f"p{next_id % 17}")
            next_id += 1
            running.append(trial)
            events.append(trial)
    return events


@pytest.mark.parametrize("direction", [Direction.MAXIMIZE, Direction.MINIMIZE])
def test_pool_indexes_match_a_rescan_after_every_change(direction: Direction) -> None:
    rng = random.Random(7)
    pool = TrialPool(direction)
    latest: dict[int, Trial] = {}
    for event in _random_run(rng, STEPS):
        pool.put(event)
        latest[event.id] = event
        trials = list(latest.values())
        assert list(pool) == trials and len(pool) == len(trials) and pool[-1] == trials[-1]
        assert pool.best() == ranked(trials, direction)
        assert pool.best(5) == best_n(trials, direction, 5)
        assert pool.children_counts() == count_children(trials)
        scored = [t for t in trials if t.scored]
        assert pool.scored_by_id() == sorted(scored, key=lambda t: t.id)
        for parent_id in {p for t in trials for p in t.parent_ids}:
            kids = [float(t.score) for t in scored if parent_id in t.parent_ids]
            total, n = pool.child_scores(parent_id)
            assert n == len(kids) and total == pytest.approx(sum(kids), abs=1e-9)
        if scored:
            assert pool.score_range() == (min(t.score for t in scored), max(t.score for t in scored))


def test_bulk_built_pool_equals_one_built_trial_by_trial() -> None:
    events = _random_run(random.Random(3), STEPS)
    one_by_one = TrialPool(Direction.MAXIMIZE)
    for event in events:
        one_by_one.put(event)
    latest = {e.id: e for e in events}
    bulk = TrialPool(Direction.MAXIMIZE, latest.values())
    assert bulk.best() == one_by_one.best() and bulk.children_counts() == one_by_one.children_counts()


ISLANDS = IslandSettings(count=3, migration_interval=7, migration_rate=0.3, policy="ucb1")
GRID = MapElitesSettings(features=[FeatureSpec(name="code_length", min=1.0, max=4.0, bins=3)])  # "p1".."p16", "seed"


@pytest.mark.parametrize(("name", "islands"), [
    ("ucb1", None), ("greedy", None), ("random", None), ("weighted", None), ("islands", ISLANDS),
    ("map_elites", None), ("map_elites", ISLANDS),
])
def test_sampler_picks_the_same_on_a_live_pool_as_on_fresh_lists(name: str, islands: IslandSettings | None) -> None:
    """The loop hands samplers one pool it updates in place; memos and island pools must follow each change (a
    stale view would silently pick from an old run)."""
    events = _random_run(random.Random(11), STEPS)
    on_pool, on_list = (make_sampler(name, seed=5, population=8, islands=islands, map_elites=GRID) for _ in range(2))
    pool, latest = TrialPool(Direction.MAXIMIZE), {}
    picks = Counter()
    for event in events:
        pool.put(event)
        latest[event.id] = event
        if not pool.n_scored:
            continue
        trials = list(latest.values())
        pending = {trials[-1].id: 1}
        a = on_pool.sample_parent(pool, Direction.MAXIMIZE, pending)
        b = on_list.sample_parent(trials, Direction.MAXIMIZE, pending)
        assert a == b
        assert on_pool.sample_inspirations(pool, a, 3, Direction.MAXIMIZE) == on_list.sample_inspirations(
            trials, b, 3, Direction.MAXIMIZE)
        picks[a.id] += 1
    assert len(picks) >= 5  # the run moved on: several different parents were picked


def test_ucb1_on_a_pool_uses_running_sums() -> None:
    pool = TrialPool(Direction.MAXIMIZE, [
        Trial(id=1, status=TrialStatus.SUCCEEDED, score=0.0, code="a"),
        Trial(id=2, status=TrialStatus.SUCCEEDED, score=10.0, parent_ids=(1,), code="b"),
        Trial(id=3, status=TrialStatus.SUCCEEDED, score=5.0, parent_ids=(1,), code="c"),
        Trial(id=4, status=TrialStatus.FAILED, parent_ids=(2,), code="d"),
    ])
    scores = UCB1Sampler(exploration=0.0).ucb_scores(pool, Direction.MAXIMIZE)
    # normalised: 1 → 0, 2 → 1, 3 → 0.5; arm 1's lineage {0, 1, 0.5}; arm 2 has a failed child only
    assert scores[1] == pytest.approx(0.5) and scores[2] == pytest.approx(1.0) and scores[3] == pytest.approx(0.5)
