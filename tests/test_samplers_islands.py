"""Island and weighted samplers: membership, ring migration, per-island parents, and state that survives resume."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from evoforge.config import IslandSettings, ResearchSettings, WeightedSettings
from evoforge.memory.sampling import SAMPLERS, IslandSampler, Migration, Sampler, WeightedSampler, make_sampler
from evoforge.models import Direction, Trial, TrialStatus

MAX, MIN = Direction.MAXIMIZE, Direction.MINIMIZE


def ok(tid: int, score: float, parents: tuple[int, ...] = (), inspirations: tuple[int, ...] = (),
       facts: dict[str, Any] | None = None) -> Trial:
    return Trial(id=tid, status=TrialStatus.SUCCEEDED, score=score, parent_ids=parents,
                 inspiration_ids=inspirations, code=f"prog{tid}", facts=dict(facts or {}))


def step(sampler: Sampler, trials: list[Trial], score: Callable[[int, Trial], float], k: int = 1) -> Trial:
    """One loop pass: pick a parent and inspirations, then record the child (id = next id) with the pick's facts."""
    pick = sampler.pick(trials, MAX, {}, k)
    tid = len(trials) + 1
    child = ok(tid, score(tid, pick.parent), (pick.parent.id,), tuple(t.id for t in pick.inspirations), pick.facts)
    trials.append(child)
    sampler.observe(child, None)
    return child


def islands(
    count: int = 2, interval: int = 4, rate: float = 0.5, policy: str = "greedy", seed: int = 0
) -> IslandSampler:
    settings = IslandSettings(count=count, migration_interval=interval, migration_rate=rate, policy=policy)
    sampler = make_sampler("islands", seed=seed, islands=settings)
    assert isinstance(sampler, IslandSampler)
    return sampler


def test_registry_and_config_accept_the_new_samplers() -> None:
    assert {"weighted", "islands", "map_elites"} <= set(SAMPLERS)
    for name in ("weighted", "islands", "map_elites"):
        assert ResearchSettings(sampler=name).sampler == name
    assert isinstance(make_sampler("weighted"), WeightedSampler)
    with pytest.raises(ValueError, match="islands"):
        ResearchSettings.model_validate({"islands": {"count": 0}})


def test_children_join_their_parents_island_and_migrate_on_a_ring() -> None:
    sampler = islands()
    trials = [ok(1, 0.0)]
    for _ in range(4):  # islands take turns: 0, 1, 0, 1; greedy in an island picks its newest (best) trial
        step(sampler, trials, lambda tid, _parent: float(tid))
    arch = sampler.islands
    assert [t.parent_ids[0] for t in trials[1:]] == [1, 1, 2, 3]
    # each child is placed as soon as it is recorded (observed); the migration now due is made by the next pick
    assert {tid: arch.islands_of(tid) for tid in range(1, 6)} == {1: [0, 1], 2: [0], 3: [1], 4: [0], 5: [1]}
    assert arch.migrations == 0 and arch.events == []
    child = step(sampler, trials, lambda tid, _parent: float(tid))  # 4 new trials: the migration comes first
    assert arch.migrations == 1
    # island 0 = {1, 2, 4}: its best ceil(0.5 * 3) = 2 go to island 1; island 1 = {1, 3, 5}: its best 2 go to island 0
    assert arch.events == [Migration(4, 0, 1, (4, 2)), Migration(4, 1, 0, (5, 3))]
    assert arch.islands_of(4) == [0, 1] and arch.islands_of(3) == [0, 1] and arch.islands_of(5) == [0, 1]
    assert arch.islands_of(2) == [0, 1]
    assert child.parent_ids == (5,)  # island 0 now holds migrant 5, its best
    assert child.facts["migration"] == {"number": 1, "after": 4, "moves": [[0, 1, [4, 2]], [1, 0, [5, 3]]]}
    arch.update(trials, MAX)
    assert arch.islands_of(child.id) == [0]  # the child joins the island it was picked on, not 5's home
    resumed = islands()
    resumed.rebuild(trials, MAX)  # the migration is replayed from the facts of the trial that made it
    assert resumed.state(trials, MAX) == sampler.state(trials, MAX)


def test_each_island_builds_on_its_own_best() -> None:
    sampler = islands(count=3, interval=1000)
    trials = [ok(1, 0.0)]
    for _ in range(12):
        step(sampler, trials, lambda tid, parent: float(parent.score or 0.0) + 1.0)
    arch = sampler.islands
    arch.update(trials, MAX)
    for island in range(3):
        lineage = [t for t in trials[1:] if arch.islands_of(t.id) == [island]]
        assert len(lineage) == 4
        assert all(t.parent_ids[0] in (1, *(p.id for p in lineage)) for t in lineage)  # no parent from elsewhere
        assert [t.score for t in lineage] == [1.0, 2.0, 3.0, 4.0]  # greedy climbs within the island


def test_inspirations_come_from_the_same_island_first() -> None:
    sampler = islands(count=2, interval=1000)
    trials = [ok(1, 0.0), ok(2, 5.0, (1,)), ok(3, 9.0, (1,)), ok(4, 6.0, (2,))]  # 2, 4 on island 0; 3 on 1
    parent = sampler.sample_parent(trials, MAX, {})
    assert sampler.islands.last == 0 and parent.id == 4
    assert [t.id for t in sampler.sample_inspirations(trials, parent, 1, MAX)] == [2]
    assert [t.id for t in sampler.sample_inspirations(trials, parent, 3, MAX)] == [2, 1, 3]


@pytest.mark.parametrize("policy", ["ucb1", "weighted", "random"])
def test_state_rebuilt_from_the_trials_gives_the_same_next_picks(policy: str) -> None:
    def run(sampler: Sampler, trials: list[Trial], n: int) -> list[int]:
        return [step(sampler, trials, lambda tid, parent: (tid * 7919) % 101 / 10.0, k=2).parent_ids[0]
                for _ in range(n)]

    original = islands(count=3, interval=5, rate=0.3, policy=policy, seed=11)
    trials = [ok(1, 1.0)]
    run(original, trials, 17)
    resumed = islands(count=3, interval=5, rate=0.3, policy=policy, seed=11)  # the run's seed, from its config
    resumed.rebuild(trials, MAX)
    assert resumed.state(trials, MAX) == original.state(trials, MAX)
    ahead, again = list(trials), list(trials)
    assert run(original, ahead, 15) == run(resumed, again, 15)
    assert ahead == again
    assert original.state(ahead, MAX) == resumed.state(again, MAX)


def test_picks_in_flight_take_the_next_turns_and_keep_their_island_after_a_resume() -> None:
    sampler = islands(count=2, interval=1000)
    trials = [ok(1, 0.0), ok(2, 3.0, (1,)), ok(3, 1.0, (1,))]  # no facts: 2 on island 0, 3 on island 1 (id % 2)
    first = sampler.pick(trials, MAX, {}, 0)
    second = sampler.pick(trials, MAX, {first.parent.id: 1}, 0)  # the first is in flight: the next island's turn
    assert (first.facts["island"], second.facts["island"]) == (0, 1) and (first.parent.id, second.parent.id) == (2, 3)
    assert (first.facts["turn"], second.facts["turn"]) == (0, 1)
    trials += [ok(4, 5.0, (first.parent.id,), facts=first.facts), ok(5, 4.0, (second.parent.id,), facts=second.facts)]
    resumed = islands(count=2, interval=1000)
    resumed.rebuild(trials, MAX)
    assert resumed.islands.islands_of(4) == [0] and resumed.islands.islands_of(5) == [1]
    assert resumed.islands.picks == 2


def test_children_of_the_seed_follow_their_picks_island_not_the_id_rule() -> None:
    sampler = islands(count=2, interval=1000)
    trials = [ok(1, 0.0), Trial(id=2, status=TrialStatus.FAILED, parent_ids=(1,))]  # 2: an internal error, no facts
    picks = [sampler.pick(trials, MAX, {1: n}, 0) for n in range(2)]  # both the seed: island 0, then 1
    assert [(p.parent.id, p.facts["island"]) for p in picks] == [(1, 0), (1, 1)]
    trials += [ok(3, 1.0, (1,), facts=picks[0].facts), ok(4, 1.0, (1,), facts=picks[1].facts)]
    sampler.islands.update(trials, MAX)  # by id alone 3 -> island 1, 4 -> island 0
    assert sampler.islands.islands_of(3) == [0] and sampler.islands.islands_of(4) == [1]
    assert sampler.islands.islands_of(2) == [0]  # no facts: the id rule


def test_migrations_due_at_once_are_made_as_one_and_then_keep_their_interval() -> None:
    sampler = islands(count=2, interval=2)
    trials = [ok(1, 0.0), *(ok(i, float(i), (1,)) for i in range(2, 11))]  # 9 children, no facts: 4 migrations due
    first = sampler.pick(trials, MAX, {}, 0)
    again = sampler.pick(trials, MAX, {first.parent.id: 1}, 0)  # before the first is recorded: the same migration
    assert first.facts["migration"]["number"] == again.facts["migration"]["number"] == 4
    assert sampler.islands.migrations == 4 and len(sampler.islands.events) == 2  # one ring migration, two moves
    trials.append(ok(11, 1.0, (first.parent.id,), facts=first.facts))
    sampler.observe(trials[-1], None)
    resumed = islands(count=2, interval=2)
    resumed.rebuild(trials, MAX)  # migration 4 replayed from trial 11's facts
    assert resumed.state(trials, MAX) == sampler.state(trials, MAX) and resumed.islands.migrations == 4
    assert sampler.pick(trials, MAX, {}, 0).facts["migration"]["number"] == 5  # 10 children now: the next one


def test_weighted_penalises_prolific_parents() -> None:
    trials = [ok(1, 1.0), ok(2, 1.0)] + [
        Trial(id=i, status=TrialStatus.FAILED, parent_ids=(1,)) for i in range(3, 8)
    ]
    sampler = WeightedSampler(seed=4)
    weights = sampler.weights(trials, MAX)
    assert weights[2] == pytest.approx(6 * weights[1])  # 5 children: 1 / (1 + 5)
    picks = Counter(sampler.sample_parent(trials, MAX).id for _ in range(700))
    assert picks[2] > 4 * picks[1] > 0
    assert sampler.weights(trials, MAX, pending={2: 5}) == pytest.approx({1: weights[1], 2: weights[1]})


def test_weighted_favours_good_scores_in_the_objectives_direction() -> None:
    trials = [ok(1, 1.0), ok(2, 2.0), ok(3, 3.0)]
    up = WeightedSampler(seed=0).weights(trials, MAX)
    down = WeightedSampler(seed=0).weights(trials, MIN)
    assert up[3] > up[2] > up[1] and down[1] > down[2] > down[3]
    assert up[2] == pytest.approx(0.5)  # the median sits at the sigmoid's middle
    sharp = make_sampler("weighted", weighted=WeightedSettings(sharpness=4.0))
    assert isinstance(sharp, WeightedSampler) and sharp.weights(trials, MAX)[3] > up[3]
    one = [ok(1, 2.0)]
    assert WeightedSampler(seed=0).sample_parent(one, MAX).id == 1  # a single trial: spread 0 handled


def test_weighted_picks_are_seeded() -> None:
    trials = [ok(i, float(i % 4)) for i in range(1, 12)]
    picks = [[WeightedSampler(seed=s).sample_parent(trials, MAX).id for _ in range(1)] for s in (1, 1)]
    assert picks[0] == picks[1]
    a, b = WeightedSampler(seed=5), WeightedSampler(seed=5)
    assert [a.sample_parent(trials, MAX).id for _ in range(30)] == [b.sample_parent(trials, MAX).id for _ in range(30)]
