"""Parent samplers: greedy, random and UCB1 picks, inspirations, seeding, directions and the empty case."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from evoforge.memory.sampling import (
    SAMPLERS,
    GreedySampler,
    RandomSampler,
    Sampler,
    UCB1Sampler,
    make_sampler,
)
from evoforge.models import Direction, Trial, TrialStatus

MAX, MIN = Direction.MAXIMIZE, Direction.MINIMIZE


def ok(tid: int, score: float, parents: tuple[int, ...] = (), code: str | None = None) -> Trial:
    return Trial(id=tid, status=TrialStatus.SUCCEEDED, score=score, parent_ids=parents,
                 code=f"prog{tid}" if code is None else code)


def failed(tid: int, parents: tuple[int, ...] = ()) -> Trial:
    return Trial(id=tid, status=TrialStatus.FAILED, parent_ids=parents, error_class="crash:ValueError")


def test_make_sampler_by_name() -> None:
    assert isinstance(make_sampler("greedy"), GreedySampler)
    assert isinstance(make_sampler("random", seed=1), RandomSampler)
    ucb = make_sampler("UCB1", exploration=0.3)
    assert isinstance(ucb, UCB1Sampler) and ucb.exploration == 0.3
    assert set(SAMPLERS) >= {"greedy", "random", "ucb1", "weighted", "islands", "map_elites"}
    with pytest.raises(ValueError, match="unknown sampler 'tpe'.*greedy, random, ucb1"):
        make_sampler("tpe")
    with pytest.raises(ValueError, match="exploration"):
        make_sampler("ucb1", exploration=-1.0)


@pytest.mark.parametrize("name", SAMPLERS)
def test_nothing_scored_raises(name: str) -> None:
    trials = [failed(1), Trial(id=2, status=TrialStatus.SUCCEEDED, score=math.nan),
              Trial(id=3, status=TrialStatus.PRUNED, score=5.0), Trial(id=4, status=TrialStatus.RUNNING)]
    sampler = make_sampler(name, seed=0)
    for given in ([], trials):
        with pytest.raises(ValueError, match="no scored trial"):
            sampler.sample_parent(given, MAX)


@pytest.mark.parametrize("name", SAMPLERS)
def test_only_scored_trials_are_picked(name: str) -> None:
    trials = [failed(1), ok(2, 0.5), Trial(id=3, status=TrialStatus.PRUNED, score=99.0), ok(4, 0.1, (2,))]
    sampler = make_sampler(name, seed=3)
    picks = {sampler.sample_parent(trials, MAX).id for _ in range(30)}
    assert picks <= {2, 4}


def test_greedy_best_with_ties_and_direction() -> None:
    trials = [ok(1, 0.2), ok(2, 0.9), ok(3, 0.9), ok(4, -1.0), failed(5)]
    greedy = GreedySampler()
    assert greedy.sample_parent(trials, MAX).id == 2
    assert greedy.sample_parent(trials, MIN).id == 4
    assert greedy.sample_parent(trials, MAX, pending={2: 10}).id == 2


def test_random_is_uniform_ish_and_seeded() -> None:
    trials = [ok(i, float(i)) for i in range(1, 6)] + [failed(6)]
    a, b = RandomSampler(seed=42), RandomSampler(seed=42)
    seq_a = [a.sample_parent(trials, MAX).id for _ in range(200)]
    seq_b = [b.sample_parent(list(reversed(trials)), MAX).id for _ in range(200)]
    assert seq_a == seq_b  # same seed, same picks, whatever the order trials come in
    counts = Counter(seq_a)
    assert set(counts) == {1, 2, 3, 4, 5} and min(counts.values()) >= 20
    assert [RandomSampler(seed=7).sample_parent(trials, MAX).id for _ in range(20)] != seq_a[:20]


def test_inspirations_exclude_parent_and_duplicate_code() -> None:
    trials = [ok(1, 1.0, code="same"), ok(2, 0.9, code="same"), ok(3, 0.8, code="other"),
              ok(4, 0.7, code="other"), ok(5, 0.1), failed(6)]
    sampler = GreedySampler(seed=0)
    parent = trials[0]
    got = sampler.sample_inspirations(trials, parent, k=5, direction=MAX)
    assert [t.id for t in got] == [3, 5]  # 2 has the parent's code, 4 repeats 3's code, 6 is unscored
    assert sampler.sample_inspirations(trials, parent, k=0, direction=MAX) == []
    assert [t.id for t in sampler.sample_inspirations(trials, parent, k=1, direction=MAX)] == [3]
    assert [t.id for t in sampler.sample_inspirations(trials, parent, k=1, direction=MIN)] == [5]


def test_inspirations_mix_top_and_a_seeded_random_one() -> None:
    trials = [ok(i, float(i)) for i in range(1, 21)]
    parent = trials[-1]
    draws = []
    for seed in range(30):
        got = RandomSampler(seed=seed).sample_inspirations(trials, parent, k=3, direction=MAX)
        again = RandomSampler(seed=seed).sample_inspirations(trials, parent, k=3, direction=MAX)
        assert [t.id for t in got] == [t.id for t in again]
        assert len(got) == 3 and parent not in got
        assert [t.id for t in got[:2]] == [19, 18]
        assert got[2].id <= 17
        draws.append(got[2].id)
    assert len(set(draws)) >= 5  # the third one really is drawn, not fixed


def test_ucb1_unvisited_first_best_score_first() -> None:
    trials = [ok(1, 0.1), ok(2, 0.9), ok(3, 0.5), ok(4, 0.9)]
    ucb = UCB1Sampler()
    assert ucb.sample_parent(trials, MAX).id == 2  # all unvisited: best, ties lowest id
    trials.append(failed(5, (2,)))
    assert ucb.sample_parent(trials, MAX).id == 4
    trials.append(failed(6, (4,)))
    assert ucb.sample_parent(trials, MAX).id == 3
    assert ucb.sample_parent(trials, MIN).id == 1  # minimize: lowest score among the unvisited


def test_ucb1_values_and_bonus_by_hand() -> None:
    # 1 (score 0) has a failed child, 2 (score 10) has one scored child 3 (score 5); 3 is a leaf.
    trials = [ok(1, 0.0), ok(2, 10.0), ok(3, 5.0, (2,)), failed(4, (1,))]
    ucb = UCB1Sampler(exploration=1.5)
    scores = ucb.ucb_scores(trials, MAX)
    n_total = 2 + 2 + 1
    assert scores[1] == pytest.approx(0.0 + 1.5 * math.sqrt(math.log(n_total) / 2))
    assert scores[2] == pytest.approx((1.0 + 0.5) / 2 + 1.5 * math.sqrt(math.log(n_total) / 2))
    assert scores[3] == pytest.approx(0.5 + 1.5 * math.sqrt(math.log(n_total) / 1))
    assert ucb.sample_parent(trials, MAX).id == 3  # leaf 3 was never expanded
    mirrored = [Trial(id=t.id, status=t.status, score=None if t.score is None else -t.score,
                      parent_ids=t.parent_ids) for t in trials]
    assert ucb.ucb_scores(mirrored, MIN) == pytest.approx(scores)


def test_ucb1_equal_scores_normalise_to_half() -> None:
    trials = [ok(1, 3.0), ok(2, 3.0), failed(3, (1,)), failed(4, (2,))]
    scores = UCB1Sampler(exploration=0.0).ucb_scores(trials, MAX)
    assert scores == {1: 0.5, 2: 0.5}
    assert UCB1Sampler(exploration=0.0).sample_parent(trials, MAX).id == 1


def test_ucb1_bonus_shrinks_as_children_are_added() -> None:
    trials = [ok(1, 1.0), ok(2, 0.0), failed(3, (2,))]
    ucb = UCB1Sampler(exploration=1.0)
    for k in range(1, 8):
        trials.append(failed(100 + k, (1,)))
        n_total = (1 + k) + 2
        bonus = ucb.ucb_scores(trials, MAX)[1] - 1.0
        assert bonus == pytest.approx(math.sqrt(math.log(n_total) / (1 + k)))


def test_ucb1_honours_pending() -> None:
    never = [ok(1, 1.0), ok(2, 0.0)]
    ucb = UCB1Sampler()
    assert ucb.sample_parent(never, MAX).id == 1
    assert ucb.sample_parent(never, MAX, pending={1: 1}).id == 2  # 1 is already being expanded
    tried = [ok(1, 1.0), ok(2, 0.9), ok(3, 0.0), failed(4, (1,)), failed(5, (2,)), failed(6, (3,))]
    assert ucb.sample_parent(tried, MAX).id == 1
    assert ucb.sample_parent(tried, MAX, pending={1: 3}).id == 2
    with_pending = ucb.ucb_scores(tried, MAX, pending={1: 3})
    assert with_pending[1] == pytest.approx(1.0 + math.sqrt(math.log(9) / 5))


def _simulate(exploration: float, picks: int = 50) -> Counter[int]:
    trials: list[Trial] = [ok(i + 1, s) for i, s in enumerate([0.1, 0.5, 0.9, 0.3, 0.7])]
    sampler = UCB1Sampler(seed=0, exploration=exploration)
    chosen: Counter[int] = Counter()
    for _ in range(picks):
        parent = sampler.sample_parent(trials, MAX)
        chosen[parent.id] += 1
        trials.append(failed(len(trials) + 1, (parent.id,)))  # the child fails: arms stay fixed
    return chosen


def test_ucb1_loop_of_50_picks_no_arm_starves() -> None:
    chosen = _simulate(exploration=1.0)
    assert sum(chosen.values()) == 50
    assert set(chosen) == {1, 2, 3, 4, 5}
    assert min(chosen.values()) >= 2  # every arm picked again after its first, unvisited pick
    best = chosen[3]
    assert best > sum(chosen.values()) - best  # the best arm gets more picks than all others together
    by_score = [chosen[i] for i in (1, 4, 2, 5, 3)]  # arms in increasing score
    assert by_score == sorted(by_score)
    assert min(_simulate(exploration=2.0).values()) > min(_simulate(exploration=0.25).values())


def test_ucb1_growing_tree_loop() -> None:
    trials: list[Trial] = [ok(1, 0.5)]
    sampler = UCB1Sampler(seed=0, exploration=1.0)
    rng_scores = [0.3, 0.7, 0.55, 0.2, 0.9, 0.4, 0.65, 0.1, 0.8, 0.6]
    for step in range(50):
        parent = sampler.sample_parent(trials, MAX)
        tid = len(trials) + 1
        child = failed(tid, (parent.id,)) if step % 3 == 2 else ok(tid, rng_scores[step % 10] * parent.score,
                                                                     (parent.id,))
        trials.append(child)
    children = Counter(p for t in trials for p in t.parent_ids)
    assert sum(children.values()) == 50
    assert children[1] >= 2
    assert len(children) >= 5  # the search spread to descendants, not only the root


def test_sampler_is_abstract() -> None:
    with pytest.raises(TypeError):
        Sampler()  # type: ignore[abstract]


def test_ucb1_arms_are_the_elite_only() -> None:
    sampler = UCB1Sampler(seed=0, population=2)
    trials = [ok(1, 5.0), ok(2, 9.0, (1,)), ok(3, 8.0, (1,)), ok(4, 0.0, (2,)), ok(5, 0.5, (3,))]
    assert [arm.id for arm in sampler.arms(trials, MAX)] == [2, 3]
    # trials 4 and 5 are unvisited but weak: they are not arms, so the elite keeps being expanded
    picks = {sampler.sample_parent(trials, MAX).id for _ in range(5)}
    assert picks <= {2, 3}
    assert sampler.sample_parent([*trials, ok(6, 10.0, (2,))], MAX).id == 6  # a new elite is tried first
