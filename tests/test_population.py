"""The population's novelty pool: the parent, its newest evaluated children and the newest evaluated trials, each
once, in that order, bounded, as trials arrive, finish and fall out of the window."""

from __future__ import annotations

import random

from evoforge.memory.population import NOVELTY_WINDOW, Population
from evoforge.models import Direction, Trial, TrialStatus

FINISHED = [TrialStatus.SUCCEEDED, TrialStatus.FAILED, TrialStatus.PRUNED, TrialStatus.REJECTED]


def expected_pool(population: Population, parent: Trial, finished_order: list[int]) -> list[Trial]:
    """The rule written out plainly: the family first (finished, with code, not rejected), then the newest evaluated
    trials (as the population last saw them finish), each id once."""
    children = [t for t in population if t.parent_ids[:1] == (parent.id,)][-NOVELTY_WINDOW:]
    pool: dict[int, Trial] = {}
    for trial in [parent, *children]:
        if trial.status.finished and trial.code and trial.status is not TrialStatus.REJECTED:
            pool[trial.id] = trial
    evaluated = [population.get(i) for i in reversed(finished_order)]
    window = [t for t in evaluated if t is not None and t.code and t.status is not TrialStatus.REJECTED
              and t.reused_from is None][:NOVELTY_WINDOW]
    for trial in window:
        pool[trial.id] = trial
    return list(pool.values())


def test_the_novelty_pool_follows_the_rule_as_trials_arrive_and_finish() -> None:
    rng = random.Random(3)
    population = Population(Direction.MAXIMIZE)
    finished_order: list[int] = []
    open_ids: list[int] = []
    for step in range(3 * NOVELTY_WINDOW):
        if open_ids and rng.random() < 0.6:  # finish one in flight
            trial_id = open_ids.pop(rng.randrange(len(open_ids)))
            old = population.get(trial_id)
            assert old is not None
            status = rng.choice(FINISHED)
            population.put(Trial(id=trial_id, status=status, parent_ids=old.parent_ids, code=old.code,
                                 score=rng.random() if status is TrialStatus.SUCCEEDED else None,
                                 reused_from=1 if rng.random() < 0.1 else None))
            finished_order.append(trial_id)
        else:  # a new proposal on a parent among the first few trials (big families)
            trial_id = len(population) + 1
            parents = (rng.randint(1, min(5, trial_id - 1)),) if trial_id > 1 else ()
            population.put(Trial(id=trial_id, status=TrialStatus.PROPOSED, parent_ids=parents,
                                 code="" if rng.random() < 0.05 else f"x = {step}\n"))
            open_ids.append(trial_id)
        if step % 7 == 0 and len(population):
            parent = population[rng.randrange(min(5, len(population)))]
            pool = population.novelty_pool(parent)
            assert [t.id for t in pool] == [t.id for t in expected_pool(population, parent, finished_order)]
            assert len(pool) <= 2 * NOVELTY_WINDOW + 1
