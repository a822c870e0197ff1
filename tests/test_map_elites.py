"""MAP-Elites: binning and clamping of real features, one elite per cell, neighbour inspirations, islands, resume."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace

import pytest

from evoforge.config import FeatureSpec, IslandSettings, MapElitesSettings, ResearchSettings
from evoforge.memory.sampling import MapElitesSampler, make_sampler
from evoforge.memory.sampling.map_elites import bin_index
from evoforge.models import Direction, Trial, TrialStatus

MAX, MIN = Direction.MAXIMIZE, Direction.MINIMIZE
AXES = [FeatureSpec(name="speed", bins=4, min=0.0, max=1.0), FeatureSpec(name="code_lines", bins=3, min=1, max=4)]


def ok(tid: int, score: float, speed: float | None = 0.5, lines: int = 1, parents: tuple[int, ...] = ()) -> Trial:
    metrics = {} if speed is None else {"speed": speed}
    code = "\n".join(f"line{tid}_{i}" for i in range(lines)) + "\n"
    return Trial(id=tid, status=TrialStatus.SUCCEEDED, score=score, metrics=metrics, code=code, parent_ids=parents)


def sampler(seed: int = 0, islands: IslandSettings | None = None) -> MapElitesSampler:
    made = make_sampler("map_elites", seed=seed, map_elites=MapElitesSettings(features=AXES), islands=islands)
    assert isinstance(made, MapElitesSampler)
    return made


def test_binning_clamps_values_outside_the_bounds() -> None:
    speed = AXES[0]
    assert [bin_index(v, speed) for v in (-3.0, 0.0, 0.24, 0.25, 0.74, 0.99, 1.0, 50.0)] == [0, 0, 0, 1, 2, 3, 3, 3]
    me = sampler()
    assert me.cell(ok(1, 0.0, speed=0.3, lines=1)) == (1, 0)
    assert me.cell(ok(2, 0.0, speed=7.0, lines=9)) == (3, 2)  # both clamped to the edge bins
    assert me.cell(ok(3, 0.0, speed=-1, lines=2)) == (0, 1)
    with pytest.raises(ValueError, match="min < max"):
        FeatureSpec(name="x", min=1.0, max=1.0)
    with pytest.raises(ValueError):
        ResearchSettings.model_validate({"map_elites": {"features": []}})


def test_a_better_trial_replaces_the_cells_elite() -> None:
    me = sampler()
    trials = [ok(1, 1.0, speed=0.1), ok(2, 5.0, speed=0.9)]
    assert {cell: t.id for cell, t in me.grid(trials, MAX).items()} == {(0, 0): 1, (3, 0): 2}
    trials.append(ok(3, 2.0, speed=0.2))  # same cell as 1, better score: replaces it
    trials.append(ok(4, 0.5, speed=0.95))  # same cell as 2, worse: does not
    assert {cell: t.id for cell, t in me.grid(trials, MAX).items()} == {(0, 0): 3, (3, 0): 2}
    assert {cell: t.id for cell, t in me.grid(trials, MIN).items()} == {(0, 0): 1, (3, 0): 4}
    failed = Trial(id=5, status=TrialStatus.FAILED, metrics={"speed": 0.1}, code="x\n")
    assert me.grid([*trials, failed], MAX)[(0, 0)].id == 3  # unscored trials never become elites


def test_parents_are_elites_of_random_occupied_cells_seeded() -> None:
    trials = [ok(1, 1.0, speed=0.1), ok(2, 9.0, speed=0.15), ok(3, 2.0, speed=0.6), ok(4, 3.0, speed=0.9)]
    me = sampler(seed=3)
    many = [me.sample_parent(trials, MAX).id for _ in range(300)]
    counts = Counter(many)
    assert set(counts) == {2, 3, 4}  # trial 1 lost its cell to trial 2
    assert min(counts.values()) > 60  # uniform over the three cells, not greedy
    again = sampler(seed=3)
    assert [again.sample_parent(trials, MAX).id for _ in range(300)] == many


def test_inspirations_are_the_nearest_cells_elites() -> None:
    trials = [
        ok(1, 1.0, speed=0.1, lines=1),  # (0, 0): the parent
        ok(2, 2.0, speed=0.3, lines=1),  # (1, 0): distance 1
        ok(3, 9.0, speed=0.9, lines=3),  # (3, 2): distance 3, best score
        ok(4, 3.0, speed=0.6, lines=2),  # (2, 1): distance 2
        ok(5, 4.0, speed=0.3, lines=2),  # (1, 1): distance 1, better than 2
    ]
    me = sampler()
    parent = trials[0]
    assert [t.id for t in me.sample_inspirations(trials, parent, 3, MAX)] == [5, 2, 4]
    assert [t.id for t in me.sample_inspirations(trials, parent, 5, MAX)] == [5, 2, 4, 3]
    assert me.sample_inspirations(trials, parent, 0, MAX) == []


def test_a_missing_feature_keeps_the_trial_off_the_grid_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    me = sampler()
    trials = [ok(1, 1.0, speed=None), ok(2, 2.0, speed=None), ok(3, 0.5, speed=0.5)]
    trials.append(Trial(id=4, status=TrialStatus.SUCCEEDED, score=8.0, metrics={"speed": float("nan")}, code="x"))
    with caplog.at_level(logging.WARNING):
        assert {t.id for t in me.grid(trials, MAX).values()} == {3}
        me.grid(trials, MAX)
    warnings = [r.getMessage() for r in caplog.records if "MAP-Elites" in r.getMessage()]
    assert len(warnings) == 1
    assert "'speed'" in warnings[0] and "research.map_elites.features" in warnings[0]
    assert me.sample_parent(trials, MAX).id == 3
    lonely = sampler()
    assert lonely.sample_parent(trials[:2], MAX).id == 2  # nothing placed: the best scored trial meanwhile


def test_per_island_grids_and_resume() -> None:
    settings = IslandSettings(count=2, migration_interval=100)
    me = sampler(seed=1, islands=settings)
    trials = [ok(1, 0.0, speed=0.5), ok(2, 3.0, speed=0.1, parents=(1,)), ok(3, 1.0, speed=0.1, parents=(1,))]
    me.islands.update(trials, MAX)  # 2 -> island 0, 3 -> island 1 (children of the seed: id % 2)
    assert {c: t.id for c, t in me.island_grid(trials, MAX, 0).items()} == {(2, 0): 1, (0, 0): 2}
    assert {c: t.id for c, t in me.island_grid(trials, MAX, 1).items()} == {(2, 0): 1, (0, 0): 3}  # 3 keeps its cell
    for _ in range(3):  # as the loop does: each pick's facts on the child it makes
        pick = me.pick(trials, MAX, {}, 1)
        tid = len(trials) + 1
        trials.append(replace(ok(tid, float(tid % 5), speed=(tid * 0.37) % 1.0, parents=(pick.parent.id,)),
                              facts=pick.facts))
        me.observe(trials[-1], None)
    assert [t.facts["island"] for t in trials[3:]] == [0, 1, 0] and all("cell" in t.facts for t in trials[3:])
    resumed = sampler(seed=1, islands=settings)
    resumed.rebuild(trials, MAX)  # a resumed run: the state is the record's trials and their facts
    assert resumed.state(trials, MAX) == me.state(trials, MAX)
    assert [me.pick(trials, MAX, {}, 1).parent.id for _ in range(20)] == [resumed.pick(trials, MAX, {}, 1).parent.id
                                                                           for _ in range(20)]

