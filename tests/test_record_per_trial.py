"""The record's SQL per trial: no statement for what the record knows already (an outcome it committed, a digest an
unfinished trial cannot have), statements whose SQL is never rewritten, and one kept connection for the batches of
the record's thread instead of a pool checkout per transaction."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import test_record_evaluations as evaluations
from sqlalchemy import event
from test_loop_cost import counted_run

from evoforge.errors import RunError
from evoforge.memory import history
from evoforge.memory.claims import ClaimLost
from evoforge.memory.history import build_history
from evoforge.memory.record import FinishedTrialError, Record
from evoforge.models import Digest, EvaluationHistory, Outcome, StageResult, TelemetryPoint, Trial, TrialStatus


@pytest.fixture
def record(tmp_path: Path) -> Record:
    rec = Record.for_run_dir(tmp_path, create=True)
    rec.create_run(task_name="t", config={}, seed=0, task_snapshot={}, stopping={})
    return rec


def _add(record: Record, parent: int | None = None) -> int:
    return record.add_trial(parent_ids=[parent] if parent else [], inspiration_ids=[], name="n", motivation="m",
                            code="c", diff="", proposer="offline", model=None).id


def _in_full(record: Record, parent: int | None) -> EvaluationHistory:
    with record._engine.connect() as conn:
        return build_history(conn, parent, record.run_id)


@contextmanager
def _statements(record: Record) -> Iterator[list[str]]:
    """The SQL the record's engine runs inside the block."""
    seen: list[str] = []

    def grab(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(record._engine, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        event.remove(record._engine, "before_cursor_execute", grab)


def test_a_trial_reads_back_nothing_the_record_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's trials: the gates' history takes the curves and stage scores of the outcomes the record committed
    from those outcomes (before: a telemetry read and a read of the parent's stage results per trial), finishing a
    trial deletes no earlier digest (an unfinished trial has none; before: one DELETE per trial), an analysis is
    written with its lessons in one statement, and a start looks for an earlier evaluation inside its UPDATE."""
    statements, _calls, done = counted_run(tmp_path, monkeypatch, 10)
    record_thread = [s for thread, s in statements.seen if thread.startswith("record")]
    assert not [s for s in record_thread if s.startswith("DELETE")]
    assert not [s for s in record_thread if re.search(r"^SELECT .* FROM telemetry", s)]
    assert not [s for s in record_thread if re.search(r"FROM stage_results WHERE stage_results.trial_id = ", s)]
    with Record.for_run_dir(tmp_path / "run", read_only=True) as record:  # each has its one digest all the same
        analyses = {trial.id: record.analyses(trial.id) for trial in done}
    for trial in done:
        assert [a.text for a in analyses[trial.id] if a.kind == "digest"] == [trial.digest]
    # an analysis and its lessons are one INSERT (before: one per lesson), beside the digest's with the outcome
    assert sum(a.kind == "lesson" for rows in analyses.values() for a in rows) >= 3
    assert len([s for s in record_thread if s.startswith("INSERT INTO analyses")]) <= 2 * len(done)
    # a trial is marked running unless it repeats an evaluation in one statement: the original is looked up only
    # for a repeat (before: a lookup at every start)
    lookups = [s for s in record_thread if s.startswith("SELECT") and "trials.fingerprint = " in s]
    assert len(lookups) <= 2 * sum(trial.reused_from is not None for trial in done), lookups
    # 10 trials: ~11 statements each now on the record's thread (~15.5 before), besides the run's start and end
    assert len(record_thread) <= 11 * len(done) + 10, len(record_thread)


def _outcomes() -> list[Outcome]:
    """Outcomes whose curves and stage scores are not stored as given: non-finite values and scores, points
    without a step, a boolean score, a stage run twice, no stages at all."""
    nan, inf = math.nan, math.inf
    return [
        Outcome(status=TrialStatus.SUCCEEDED, score=1.0, stages=(
            StageResult("smoke", TrialStatus.SUCCEEDED, score=0.5), StageResult("full", TrialStatus.SUCCEEDED, 1.0)),
            telemetry=(TelemetryPoint("full", 2, "loss", 3.0, 0.2), TelemetryPoint("full", 1, "loss", 4.0, 0.1),
                       TelemetryPoint("full", 3, "loss", nan, 0.3), TelemetryPoint("full", None, "loss", 1.0, 0.4),
                       TelemetryPoint("smoke", 1, "acc", inf, 0.1), TelemetryPoint("smoke", 0, "acc", 0.25, 0.05))),
        Outcome(status=TrialStatus.SUCCEEDED, score=2.0, stages=(
            StageResult("smoke", TrialStatus.SUCCEEDED, score=nan), StageResult("full", TrialStatus.SUCCEEDED, inf),
            StageResult("full", TrialStatus.SUCCEEDED, score=2.0)), telemetry=()),
        Outcome(status=TrialStatus.PRUNED, stages=(
            StageResult("smoke", TrialStatus.SUCCEEDED, score=True),  # type: ignore[arg-type]  # a bool is no score
            StageResult("full", TrialStatus.PRUNED, score=0.1)),
            telemetry=(TelemetryPoint("full", 5, "loss", 9.0, 1.0),)),
        Outcome(status=TrialStatus.FAILED, error_class="crash:ValueError"),
        Outcome(status=TrialStatus.SUCCEEDED, score=3.0, seconds=4.0, stages=(
            StageResult("full", TrialStatus.SUCCEEDED, score=3),),  # an int: read back as a float
            telemetry=(TelemetryPoint("full", 1, "loss", 2, 1),)),
    ]


def test_the_history_told_by_the_records_writes_is_the_history_read(
        record: Record, monkeypatch: pytest.MonkeyPatch) -> None:
    """The curves and stage scores the record keeps from the outcomes it committed are those a read gives, for each
    trial as a parent and among the recent ones; the build reads neither telemetry nor a parent's stage results."""
    monkeypatch.setattr(history, "HISTORY_TRIALS", 3)
    record.history(None)  # the kept history exists from here on: later outcomes are told to it
    trials: list[int] = []
    for outcome in _outcomes() * 2:
        tid = _add(record, parent=trials[-1] if trials else None)
        record.finish_trial(tid, outcome, Digest("d"))
        trials.append(tid)
        with _statements(record) as seen:
            built = {parent: record.history(parent) for parent in (None, *trials)}
        for parent, kept in built.items():
            assert kept == _in_full(record, parent), (tid, parent)
        assert not [s for s in seen if "FROM telemetry" in s or "stage_results.trial_id = " in s], seen


def test_a_rolled_back_outcome_is_not_told_to_the_history(record: Record) -> None:
    """An outcome whose transaction rolled back is not in the record, so the history does not hold it either."""
    parent = _add(record)
    record.finish_trial(parent, _outcomes()[0])
    record.history(parent)
    child = _add(record, parent=parent)
    with pytest.raises(RuntimeError, match="broke"), record.batch():
        record.finish_trial(child, _outcomes()[1])
        raise RuntimeError("broke midway")
    assert record.trial(child).status is TrialStatus.PROPOSED
    assert record.history(child) == _in_full(record, child) and record.history(child).parent_stage_scores == {}


def test_only_a_finished_trial_gets_a_new_digest(record: Record) -> None:
    """An unfinished trial gets its digest with its outcome (so finishing one never has a digest to delete)."""
    tid = _add(record)
    with pytest.raises(RunError, match=rf"trial {tid} is proposed: its digest can be set once it is finished"):
        record.set_digest(tid, Digest("early"))
    record.finish_trial(tid, Outcome(status=TrialStatus.SUCCEEDED, score=1.0), Digest("first", {"n": 1}))
    record.set_digest(tid, Digest("second", {"n": 2}))
    assert [(a.kind, a.text, a.data) for a in record.analyses(tid)] == [("digest", "second", {"n": 2})]
    assert record.trial(tid).digest == "second"


def test_the_per_trial_statements_are_not_rewritten_at_each_execution(record: Record) -> None:
    """A trial's start (mark running unless it repeats an earlier evaluation, the gates' history) is two statements
    (before: four) and none with an "expanding" IN, whose SQL SQLAlchemy rewrites at every execution (before: three
    per trial); a fixed list of statuses is one parameter per value."""
    record.act_as("me")
    executed: list[object] = []  # statement objects SQLAlchemy executes (a prepared one has no expanding IN)

    def grab(_conn: object, clause: object, *_args: object) -> None:
        executed.append(clause)

    parent, started = None, 0
    for _ in range(4):
        proposed = [_add(record, parent) for _ in range(3)]  # in flight: proposed ahead of their start
        for tid in proposed:
            executed.clear()
            event.listen(record._engine, "before_execute", grab)
            try:
                with _statements(record) as seen, record.batch():  # as the loop starts a trial
                    assert record.mark_running_unless_repeat(tid, "f" * 64) is not None
                    record.history(parent)
            finally:
                event.remove(record._engine, "before_execute", grab)
            rewritten = [str(c) for c in executed if "POSTCOMPILE" in str(c.compile(record._engine))]  # type: ignore[attr-defined]
            assert executed and not rewritten, rewritten
            if started >= 2:  # once stage results were read: the UPDATE, and the history's new rows in one SELECT
                assert len(seen) == 2, seen
            started += 1
            record.finish_trial(tid, _outcomes()[0])
            parent = tid


def test_the_batches_of_one_thread_keep_one_connection(record: Record) -> None:
    """The record's thread runs every trial's transactions on one connection it keeps (no pool checkout and return,
    with its reset, per transaction); one the database dropped is let go and the next batch takes a fresh one."""
    checkouts: list[object] = []
    event.listen(record._engine.pool, "checkout", lambda *args: checkouts.append(args))
    for _ in range(5):
        with record.batch():
            _add(record)
    assert len(checkouts) <= 1
    kept = record._kept
    with pytest.raises(Exception, match="rollback"), record.batch():
        _add(record)
        assert record._batch is not None
        record._batch.invalidate()  # as after the server dropped it
        _add(record)
    with record.batch():
        _add(record)
    assert record._kept is not None and record._kept is not kept
    assert len(record.trials()) == 6  # the batch that failed wrote nothing
    record.close()
    assert record._kept is None


def _fields(trial: Trial) -> dict[str, object]:
    return {f.name: getattr(trial, f.name) for f in dataclasses.fields(trial)}


def test_a_transition_returns_the_trial_as_a_read_gives_it_without_reading_it(record: Record) -> None:
    """Marking running and finishing a trial the record added run no RETURNING of the whole row (code, diff, JSON
    columns decoded again, twice a trial), and return exactly the trial a read gives: JSON columns as stored
    (tuples as lists, keys as strings, NaN as null), numbers as stored."""
    record.act_as("me")
    facts = {"cell": (1, 2), 3: "three", "temperature": 0.7, "why": None}
    outcomes = [Outcome(status=TrialStatus.SUCCEEDED, score=2, metrics={"loss": math.nan, "pair": (1, 2), 7: 1.5},
                        seconds=3, seconds_saved=1, suspect=True, reused_from=None),
                Outcome(status=TrialStatus.PRUNED, score=math.inf, error_class="pruned:median", error_message="slow"),
                Outcome(status=TrialStatus.FAILED, error_class="crash:ValueError", error_message="bad")]
    for outcome in outcomes:
        tid = record.add_trial(parent_ids=[1] if record.trials() else [], inspiration_ids=[], name="n", motivation="m",
                               code="x = 1\n", diff="+x = 1\n", proposer="llm", model="m", facts=facts).id
        with _statements(record) as seen:
            running = record.mark_running(tid)
            finished = record.finish_trial(tid, outcome, Digest("d", {"n": 1}))
        assert not [s for s in seen if "RETURNING" in s], seen
        assert running.status is TrialStatus.RUNNING and running.facts == {"cell": [1, 2], "3": "three",
                                                                           "temperature": 0.7, "why": None}
        assert _fields(finished) == _fields(record.trial(tid))
    failed = _add(record)
    assert _fields(record.fail_trial(failed, "proposal_error", "none")) == _fields(record.trial(failed))


def test_a_rolled_back_trial_is_not_known_as_written(tmp_path: Path, record: Record) -> None:
    """A trial added in a transaction that rolled back is not taken for the record's: the id it had may be another
    runner's trial next, whose row a transition then returns."""
    with pytest.raises(RuntimeError, match="broke"), record.batch():
        lost = record.add_trial(parent_ids=[], inspiration_ids=[], name="lost", motivation="", code="lost = 1\n",
                                diff="", proposer="llm", model=None).id
        raise RuntimeError("broke midway")
    other = Record(record.url, run_id=record.run_id)
    try:
        taken = other.add_trial(parent_ids=[], inspiration_ids=[], name="other's", motivation="",
                                code="theirs = 2\n", diff="", proposer="llm", model=None).id
    finally:
        other.close()
    assert taken == lost  # SQLite hands the id out again
    running = record.mark_running(taken)
    assert (running.name, running.code) == ("other's", "theirs = 2\n")
    assert _fields(running) == _fields(record.trial(taken))


def test_a_trial_another_runner_moved_is_still_returned_as_it_stands(tmp_path: Path, record: Record) -> None:
    """A trial this runner added, requeued by a tool or adopted meanwhile: the transition that still applies returns
    the row as it stands; one that no longer does raises as before."""
    record.act_as("me", lease_s=0.0)
    first = _add(record)
    tool = Record(record.url, run_id=record.run_id)  # no runner: requeues every unfinished trial
    other = Record(record.url, run_id=record.run_id)
    other.act_as("other")
    try:
        record.mark_running(first)
        assert tool.requeue_in_flight() == [first]
        running = record.mark_running(first)
        assert _fields(running) == _fields(record.trial(first))
        finished = record.finish_trial(first, Outcome(status=TrialStatus.SUCCEEDED, score=1.0))
        assert _fields(finished) == _fields(record.trial(first))
        with pytest.raises(FinishedTrialError):
            record.finish_trial(first, Outcome(status=TrialStatus.SUCCEEDED, score=2.0))
        second = _add(record)  # its lease (0 s) runs out at once: the other runner adopts it
        adopted = other.adopt()
        assert adopted is not None and adopted.id == second
        with pytest.raises(ClaimLost):
            record.mark_running(second)
    finally:
        tool.close()
        other.close()


@pytest.mark.parametrize("span", [0, 2])
def test_the_history_reads_a_trial_left_unfinished_long_ago_by_its_id(
        span: int, tmp_path: Path, record: Record, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kept history reads the trials from the oldest one unfinished, or (one left unfinished far behind the
    newest) that one by its id and the new ones: both as a read in full gives it."""
    monkeypatch.setattr(history, "OPEN_SPAN", span)
    evaluations.test_the_history_kept_between_builds_is_the_history_read_in_full(tmp_path, record, monkeypatch)


def test_a_trial_starts_in_one_statement_unless_it_repeats_an_evaluation(record: Record) -> None:
    """Marking a trial running checks in the same UPDATE that the run holds no original evaluation of its program
    (before: a lookup, then the update), by the fingerprint's index; with one, the trial is left proposed and the
    original is the one `find_fingerprint` gives; a claim another runner holds is still refused."""
    record.act_as("me")
    original = record.add_trial(parent_ids=[], inspiration_ids=[], name="n", motivation="", code="x = 1\n",
                                diff="", proposer="llm", model=None, fingerprint="same").id
    executed: list[tuple[str, object]] = []

    def grab(_conn: object, _cursor: object, statement: str, parameters: object, *_args: object) -> None:
        executed.append((statement, parameters))

    event.listen(record._engine, "before_cursor_execute", grab)
    try:
        running = record.mark_running_unless_repeat(original, "same")
    finally:
        event.remove(record._engine, "before_cursor_execute", grab)
    assert running is not None and running.status is TrialStatus.RUNNING
    assert len(executed) == 1 and executed[0][0].startswith("UPDATE trials"), executed
    with record._engine.connect() as conn:
        plan = " | ".join(row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + executed[0][0],
                                                                  executed[0][1]))  # type: ignore[arg-type]
    assert "original USING INDEX ix_trials_fingerprint" in plan, plan
    record.finish_trial(original, Outcome(status=TrialStatus.SUCCEEDED, score=1.0))
    repeat = record.add_trial(parent_ids=[original], inspiration_ids=[], name="n", motivation="", code="x = 1\n",
                              diff="", proposer="llm", model=None, fingerprint="same").id
    assert record.mark_running_unless_repeat(repeat, "same") is None
    assert record.trial(repeat).status is TrialStatus.PROPOSED
    found = record.find_fingerprint("same")
    assert found is not None and found.id == original
    other = Record(record.url, run_id=record.run_id)
    other.act_as("other")
    try:
        theirs = other.add_trial(parent_ids=[], inspiration_ids=[], name="n", motivation="", code="y = 2\n",
                                 diff="", proposer="llm", model=None, fingerprint="new").id
        with pytest.raises(ClaimLost):
            record.mark_running_unless_repeat(theirs, "new")
    finally:
        other.close()
