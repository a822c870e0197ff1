"""The record owns the trials: guarded state transitions, writes that return the new trial, facts on the trial row
(with the migration of an older record), and every sampler and bandit rebuilt from the record equal to the live one."""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from evoforge.config import BanditSettings, IslandSettings
from evoforge.errors import RunError
from evoforge.llm import Arm, Ensemble
from evoforge.memory import Record
from evoforge.memory.population import Population
from evoforge.memory.record import FinishedTrialError
from evoforge.memory.sampling import SAMPLERS, Sampler, make_sampler
from evoforge.models import Digest, Direction, Outcome, Trial, TrialStatus

MAX = Direction.MAXIMIZE


def _new(run_dir: Path) -> Record:
    record = Record.for_run_dir(run_dir, create=True)
    record.create_run(task_name="toy", config={}, seed=7, task_snapshot={}, stopping={})
    return record


def _add(record: Record, parents: tuple[int, ...] = (), facts: dict | None = None, code: str = "x = 1\n") -> Trial:
    return record.add_trial(parent_ids=parents, inspiration_ids=(), name="t", motivation="m", code=code, diff="",
                            proposer="llm", model="m", facts=facts)


# ---- guarded transitions ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("finish", ["succeeded", "failed", "pruned", "rejected"])
def test_a_finished_trial_cannot_change(tmp_path: Path, finish: str) -> None:
    record = _new(tmp_path)
    trial = _add(record)
    if finish == "failed":
        record.fail_trial(trial.id, "crash", "boom")
    elif finish == "rejected":
        record.reject_trial(trial.id, "rejected:not_novel", "too close")
    else:
        record.finish_trial(trial.id, Outcome(status=TrialStatus(finish), score=1.0))
    done = record.trial(trial.id)
    writes = [
        lambda: record.finish_trial(trial.id, Outcome(status=TrialStatus.SUCCEEDED, score=99.0)),
        lambda: record.fail_trial(trial.id, "late", "overwrite"),
        lambda: record.reject_trial(trial.id, "late", "overwrite"),
        lambda: record.mark_running(trial.id),
    ]
    for write in writes:
        with pytest.raises(FinishedTrialError, match=f"trial {trial.id} is {finish} already"):
            write()
    assert record.trial(trial.id) == done  # nothing was overwritten
    record.close()


def test_only_a_proposed_trial_starts_running_and_a_missing_one_is_named(tmp_path: Path) -> None:
    record = _new(tmp_path)
    trial = _add(record)
    running = record.mark_running(trial.id)
    assert running.status is TrialStatus.RUNNING
    with pytest.raises(RunError, match=f"trial {trial.id} is running: it cannot become running") as caught:
        record.mark_running(trial.id)
    assert not isinstance(caught.value, FinishedTrialError)
    with pytest.raises(RunError, match="no trial 99"):
        record.reject_trial(99, "x", "y")
    record.close()


def test_every_write_returns_the_trial_as_recorded_and_tells_the_listeners(tmp_path: Path) -> None:
    record = _new(tmp_path)
    heard: list[Trial] = []
    record.subscribe(heard.append)
    added = _add(record, facts={"island": 2, "why": "turn"})
    running = record.mark_running(added.id)
    finished = record.finish_trial(added.id, Outcome(status=TrialStatus.SUCCEEDED, score=2.0, metrics={"a": 1}),
                                   Digest("scored 2"))
    child = _add(record, (added.id,))
    failed = record.fail_trial(child.id, "crash", "boom")
    assert heard == [added, running, finished, child, failed]
    for trial in (finished, failed):
        assert record.trial(trial.id) == trial  # what a write returns is what a read gives
    assert finished.digest == "scored 2" and finished.facts == {"island": 2, "why": "turn"} and finished.scored
    with pytest.raises(AttributeError):
        finished.score = 3.0  # type: ignore[misc]  # frozen
    record.close()


def test_an_older_record_without_facts_is_read_and_migrated(tmp_path: Path) -> None:
    record = _new(tmp_path)
    old = _add(record)
    record.close()
    with sqlite3.connect(tmp_path / "record.db") as conn:  # the schema before facts existed
        conn.execute("ALTER TABLE trials DROP COLUMN facts")
    with Record.for_run_dir(tmp_path, read_only=True) as reader:  # `evoforge status` on it: reads, writes nothing
        assert reader.trial(old.id).facts == {} and [t.id for t in reader.trials()] == [old.id]
    with sqlite3.connect(tmp_path / "record.db") as conn:
        assert "facts" not in {row[1] for row in conn.execute("PRAGMA table_info(trials)")}
    with Record.for_run_dir(tmp_path) as writer:  # a resume migrates it
        assert writer.trial(old.id).facts == {}
        assert _add(writer, facts={"island": 1}).facts == {"island": 1}
        assert [t.facts for t in writer.trials()] == [{}, {"island": 1}]


# ---- every sampler and both bandits: the state rebuilt from the record equals the live state ---------------------

def _sampler(name: str) -> Sampler:
    return make_sampler(name, seed=5, islands=IslandSettings(count=3, migration_interval=4, migration_rate=0.5))


def _outcome(rng: random.Random) -> Outcome:
    if rng.random() < 0.2:
        return Outcome(status=TrialStatus.FAILED, error_class="crash")
    return Outcome(status=TrialStatus.SUCCEEDED, score=rng.uniform(0, 10))


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_sampler_rebuilt_from_the_record_equals_the_live_one(tmp_path: Path, name: str) -> None:
    record = _new(tmp_path)
    population = Population(MAX, record.trials())
    record.subscribe(population.put)
    sampler = _sampler(name)
    sampler.rebuild(population, MAX)
    population.follow(sampler.observe)
    seed = _add(record)
    record.finish_trial(seed.id, Outcome(status=TrialStatus.SUCCEEDED, score=1.0))
    rng = random.Random(3)
    for round_ in range(12):  # three picks in flight at a time, as the loop's workers make them
        pending: Counter[int] = Counter()
        picks = []
        for _ in range(3):
            pick = sampler.pick(population, MAX, pending, 2)
            pending[pick.parent.id] += 1
            picks.append(pick)
        for n, pick in enumerate(picks):
            child = _add(record, (pick.parent.id,), pick.facts, code=f"x = {round_}.{n}\n" + "#" * rng.randrange(90))
            pending[pick.parent.id] -= 1
            record.finish_trial(child.id, _outcome(rng))
    live = sampler.state(population, MAX)
    assert live.get("picks", live.get("islands", {}).get("picks")) == 36
    record.close()
    del sampler, population, record  # killed: nothing but the record survives

    with Record.for_run_dir(tmp_path) as again:
        resumed_population = Population(MAX, again.trials())
        resumed = _sampler(name)
        resumed.rebuild(resumed_population, MAX)
        assert resumed.state(resumed_population, MAX) == live
        assert all(t.facts["sampler"] == name and t.facts["turn"] == i for i, t in enumerate(again.trials()[1:]))
        scanned = _sampler(name)  # the indexes kept trial by trial equal what a scan of a plain list finds
        scanned.rebuild(again.trials(), MAX)
        assert scanned.state(again.trials(), MAX) == live


def _live_bandit(run_dir: Path, arms: list[Arm], policy: str) -> tuple[dict, list[str]]:
    """Run a bandit through a record (two picks in flight, one released per round); its state and next picks."""
    record = _new(run_dir)
    population = Population(MAX, record.trials())
    record.subscribe(population.put)
    ensemble = Ensemble(arms, bandit=BanditSettings(policy=policy, cost_aware=True), seed=2)
    population.follow(lambda trial, old: ensemble.observe(trial, old, population.reward(trial)))
    seed = _add(record)
    record.finish_trial(seed.id, Outcome(status=TrialStatus.SUCCEEDED, score=0.0))
    rng = random.Random(4)
    for _ in range(15):
        chosen = [ensemble.choose() for _ in range(2)]  # two in flight
        facts = [{**ensemble.facts(arm), "cost_usd": 0.01 if arm.model == "good" else 0.002} for arm in chosen]
        released = ensemble.choose()
        ensemble.release(released)  # a pick whose proposal reached no model: no trial
        for arm, fact in zip(chosen, facts, strict=True):
            child = _add(record, (seed.id,), fact)
            better = arm.model == "good" and rng.random() < 0.7
            record.finish_trial(child.id, Outcome(status=TrialStatus.SUCCEEDED, score=1.0 if better else -1.0))
    live, next_live = ensemble.state(), [ensemble.choose().key for _ in range(5)]
    record.close()
    return live, next_live  # killed: the ensemble and the population are dropped, the record survives


@pytest.mark.parametrize("policy", ["ucb1", "thompson"])
def test_a_bandit_rebuilt_from_the_record_equals_the_live_one(tmp_path: Path, policy: str) -> None:
    arms = [Arm("good", 0.3), Arm("good", 0.9), Arm("bad", 0.7)]
    live, next_live = _live_bandit(tmp_path, arms, policy)
    with Record.for_run_dir(tmp_path) as again:
        resumed_population = Population(MAX, again.trials())
        resumed = Ensemble(arms, bandit=BanditSettings(policy=policy, cost_aware=True), seed=2)
        resumed.rebuild((t, resumed_population.reward(t)) for t in resumed_population)
        assert resumed.state() == live
        assert [resumed.choose().key for _ in range(5)] == next_live
        assert sum(s["pulls"] for s in live["arms"].values()) == 30 and live["in_flight"] == {a.key: 0 for a in arms}
        assert {t.facts["arm"] for t in again.trials()[1:]} <= {a.key for a in arms}


# ---- record I/O: batched, off the event loop --------------------------------------------------------------------

def test_a_batch_commits_all_its_writes_or_none_and_tells_listeners_after_the_commit(tmp_path: Path) -> None:
    record = _new(tmp_path)
    heard: list[tuple[int, int]] = []  # (trial id, trials committed when told)

    def committed() -> int:  # as another process sees the record
        with Record.for_run_dir(tmp_path, read_only=True) as reader:
            return len(reader.trials())

    record.subscribe(lambda trial: heard.append((trial.id, committed())))
    with pytest.raises(RuntimeError, match="broke midway"), record.batch():
        trial = _add(record)
        record.fail_trial(trial.id, "crash", "boom")
        raise RuntimeError("broke midway")
    assert record.trials() == [] and heard == []  # rolled back: nothing written, nobody told
    with record.batch():
        trial = _add(record)
        record.add_analysis(trial.id, "analysis", "why", {})
        record.fail_trial(trial.id, "crash", "boom")
        assert heard == []  # not yet committed
    assert heard == [(trial.id, 1), (trial.id, 1)] and record.trial(trial.id).status is TrialStatus.FAILED
    record.close()


def test_io_runs_on_the_records_thread_and_the_caller_hears_before_it_returns(tmp_path: Path) -> None:
    import asyncio
    import threading

    record = _new(tmp_path)
    threads: list[str] = []
    heard: list[tuple[int, str]] = []
    record.subscribe(lambda trial: heard.append((trial.id, threading.current_thread().name)))

    def write() -> Trial:
        threads.append(threading.current_thread().name)
        trial = _add(record)
        return record.mark_running(trial.id)

    async def main() -> tuple[Trial, list[tuple[int, str]]]:
        trial = await record.io(write)
        return trial, list(heard)  # what the listeners had heard when `io` returned

    trial, heard_then = asyncio.run(main())
    here = threading.current_thread().name
    assert threads and threads[0].startswith("record") and threads[0] != here
    assert heard_then == [(trial.id, here), (trial.id, here)] and trial.status is TrialStatus.RUNNING
    record.close()


# ---- the loop: one population, fed by the record ----------------------------------------------------------------

def test_the_loop_keeps_one_population_fed_by_the_record_and_saves_no_sampler_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskfactory import make_task

    import evoforge
    import evoforge.runs
    from evoforge.config import RunSettings

    made: list = []
    assemble = evoforge.runs._assemble

    def capture(*args: object, **kwargs: object) -> object:
        conductor = assemble(*args, **kwargs)  # type: ignore[arg-type]
        seen: list[bool] = []
        pick = conductor.sampler.pick

        def spy(trials: object, *rest: object) -> object:
            seen.append(trials is conductor.population)
            return pick(trials, *rest)  # type: ignore[arg-type]

        conductor.sampler.pick = spy  # type: ignore[method-assign]
        made.append((conductor, seen))
        return conductor

    monkeypatch.setattr(evoforge.runs, "_assemble", capture)
    run_dir = tmp_path / "run"
    settings = RunSettings(trials=8, concurrency=2, prefetch=1, seed=3, sampler="islands")
    evoforge.run(make_task(tmp_path / "task"), run_dir=run_dir, settings=settings)
    conductor, seen = made[0]
    assert seen and all(seen)  # every pick read the one population
    with Record.for_run_dir(run_dir, read_only=True) as record:
        trials = record.trials()
        assert list(conductor.population) == trials  # every trial as the record last wrote it, nothing else
        assert record.load_state("sampler") is None and record.load_state("bandit") is None
    resumed = make_sampler("islands", seed=3)
    resumed.rebuild(trials, MAX)
    assert resumed.state(trials, MAX) == conductor.sampler.state(trials, MAX)
