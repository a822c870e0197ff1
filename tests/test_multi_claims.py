"""Several runners on one run, at the record (SQLite and a real PostgreSQL): two claimers racing for the same trials
each get a trial the other does not; a trial whose runner's lease ran out is taken over, and its first runner can no
longer finish it; the shared trial budget lets runners together add exactly the run's number of trials; a runner's
population learns the trials the others write."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import wait_until
from postgres import throwaway_cluster

from evoforge.memory.claims import ClaimLost, TrialBudgetFull
from evoforge.memory.population import Population
from evoforge.memory.record import Record
from evoforge.models import Direction, Outcome, Trial, TrialStatus
from evoforge.shared_run import SharedRun

TRIALS = 24


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    with throwaway_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database: a SQLite file, or a new database on the throw-away PostgreSQL cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'record.db'}"
    import psycopg

    base: str = request.getfixturevalue("cluster")
    name = f"claims_{request.node.name.split('[')[0][-30:]}".lower()
    with psycopg.connect(base.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + f"/{name}"


def _new_run(url: str, trials: int = TRIALS) -> int:
    with Record(url) as record:
        return record.create_run(task_name="claims", config={}, seed=0, task_snapshot={},
                                 stopping={"trials": trials})


def _runner(url: str, run_id: int, name: str, lease_s: float = 60.0) -> Record:
    record = Record(url, run_id=run_id)
    record.act_as(name, lease_s)
    return record


def _add(record: Record, budget: int | None = None) -> Trial:
    return record.add_trial(parent_ids=[], inspiration_ids=[], name="t", motivation="", code="x = 1\n", diff="",
                            proposer="offline", model=None, budget=budget)


def _race(workers: list[Callable[[], list[int]]]) -> list[list[int]]:
    """Run the workers at once (released together by a barrier); what each returned."""
    barrier = threading.Barrier(len(workers))
    results: list[list[int]] = [[] for _ in workers]
    errors: list[BaseException] = []

    def go(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            results[i] = workers[i]()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_two_claimers_never_get_the_same_trial(url: str) -> None:
    run_id = _new_run(url)
    with Record(url, run_id=run_id) as tool:  # trials no runner holds (as a record from before runners)
        ids = {_add(tool).id for _ in range(TRIALS)}
    a, b = _runner(url, run_id, "a"), _runner(url, run_id, "b")
    try:
        def adopt_all(record: Record) -> Callable[[], list[int]]:
            def work() -> list[int]:
                got = []
                for _ in range(TRIALS + 1):  # bounded: one more try than there are trials
                    trial = record.adopt()
                    if trial is None:
                        break
                    got.append(trial.id)
                return got
            return work

        got_a, got_b = _race([adopt_all(a), adopt_all(b)])
        assert not set(got_a) & set(got_b)
        assert set(got_a) | set(got_b) == ids
        held = {tr.id: tr for tr in a.trials()}
        assert all(held[i].status is TrialStatus.PROPOSED for i in ids)
        # what one runner holds the other can neither start nor finish
        with pytest.raises(ClaimLost):
            (b if got_a else a).mark_running((got_a or got_b)[0])
        with pytest.raises(ClaimLost):
            (b if got_a else a).fail_trial((got_a or got_b)[0], "crash", "not mine")
    finally:
        a.close()
        b.close()


def test_a_trial_whose_lease_ran_out_is_taken_over(url: str) -> None:
    run_id = _new_run(url)
    short, other = _runner(url, run_id, "short", lease_s=0.5), _runner(url, run_id, "other")
    try:
        trial = _add(short)
        short.mark_running(trial.id)
        assert other.adopt() is None  # held while its lease runs: nothing to take
        assert short.renew_leases() == 1 and other.held_elsewhere() == 1
        taken: list[Trial] = []

        def take() -> bool:
            trial = other.adopt()
            if trial is not None:
                taken.append(trial)
            return bool(taken)

        assert wait_until(take, timeout_s=60), "the lease never ran out"
        assert taken[0].id == trial.id and taken[0].status is TrialStatus.PROPOSED
        with pytest.raises(ClaimLost):  # its first runner comes back: the trial is not its own any more
            short.finish_trial(trial.id, Outcome(status=TrialStatus.SUCCEEDED, score=1.0))
        other.mark_running(trial.id)
        done = other.finish_trial(trial.id, Outcome(status=TrialStatus.SUCCEEDED, score=2.0))
        assert done.score == 2.0 and short.trial(trial.id).score == 2.0
        assert other.held_elsewhere() == 0
    finally:
        short.close()
        other.close()


def test_runners_together_add_exactly_the_run_budget(url: str) -> None:
    budget = 10
    run_id = _new_run(url, trials=budget)
    runners = [_runner(url, run_id, f"r{i}") for i in range(3)]
    try:
        def add_until_full(record: Record) -> Callable[[], list[int]]:
            def work() -> list[int]:
                added = []
                for _ in range(budget + 1):  # bounded
                    try:
                        added.append(_add(record, budget=budget).id)
                    except TrialBudgetFull:
                        break
                return added
            return work

        added = _race([add_until_full(r) for r in runners])
        assert sum(len(a) for a in added) == budget
        assert len(runners[0].trials()) == budget
        with pytest.raises(TrialBudgetFull):
            _add(runners[1], budget=budget)
        assert runners[0].list_runs()[0].total == budget
    finally:
        for record in runners:
            record.close()


def test_a_runner_sees_the_trials_the_others_write(tmp_path: Path) -> None:
    """The poll feeds another runner's trials (new, changed, finished) into this runner's population, where its
    samplers read them; a finished trial is never replaced, and the runner's own trials are not read back."""
    url = f"sqlite:///{tmp_path / 'record.db'}"
    run_id = _new_run(url)
    me, other = _runner(url, run_id, "me"), _runner(url, run_id, "other")
    try:
        mine = _add(me)
        population = Population(Direction.MAXIMIZE, me.trials())
        me.subscribe(population.put)
        finished: list[int] = []
        shared = SharedRun(me, population, on_finished=lambda trial: finished.append(trial.id))

        async def steps() -> None:
            shared.start([mine.id])
            try:
                theirs = _add(other)
                await shared.poll()
                assert population.get(theirs.id) is not None and shared.others_seen
                other.mark_running(theirs.id)
                other.finish_trial(theirs.id, Outcome(status=TrialStatus.SUCCEEDED, score=7.0))
                await shared.poll()
                assert population.get(theirs.id).score == 7.0 and finished == [theirs.id]
                assert population.best_trial is not None and population.best_trial.id == theirs.id
                await shared.poll()  # nothing new: nothing told twice
                assert finished == [theirs.id] and len(population) == 2
            finally:
                shared.stop()

        asyncio.run(steps())
    finally:
        me.close()
        other.close()
