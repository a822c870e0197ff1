"""The record's per-trial writes as prepared SQL (memory/prepared.py): the same rows as SQLAlchemy's own execution,
SQLAlchemy's errors, and `conn.execute` wherever a statement needs more than its values."""

from __future__ import annotations

import math
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, event, insert, select
from sqlalchemy.exc import IntegrityError

from evoforge.memory import claims as cl
from evoforge.memory import statements as st
from evoforge.memory import tables as t
from evoforge.memory.prepared import Prepared
from evoforge.memory.record import Record, make_engine
from evoforge.models import Digest, LLMCall, Outcome, StageResult, TelemetryPoint, TrialStatus

WHEN = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
TRANSITION = st.TrialStatements(list(t.trials.c)).transition(
    {TrialStatus.PROPOSED, TrialStatus.RUNNING}, True, returning=False, unless_repeat=True)


def _trial(i: int) -> dict[str, Any]:
    return dict(run_id=1, parent_ids=[1, 2] if i else [], inspiration_ids=(3,), status="proposed", name=f"n{i} é",
                motivation="m", code="x = 1\n", diff="", score=None if i else 2.5,
                metrics={"loss": math.nan, "pair": (1, 2), 7: 1.5}, error_class=None, error_message=None,
                seconds=0.0, seconds_saved=0, proposer="llm", model=None, digest="", fingerprint=f"f{i}",
                suspect=bool(i), reused_from=None, created_at=WHEN, started_at=None, finished_at=WHEN,
                facts={"cell": (1, 2), "why": None}, runner="me", lease_until=WHEN)


# each per-trial statement with its values: one row, or several
CASES: list[tuple[Any, Any]] = [
    (st.INSERT_TRIAL, _trial(0)), (st.INSERT_TRIAL, _trial(1)),
    (cl._COUNT, {"run": 1}), (cl._COUNT_WITHIN, {"run": 1, "budget": 10}),
    (TRANSITION, {"trial_": 1, "runner_": "me", "fingerprint_": "f2", "run_": 1, "status": "running",
                  "started_at": WHEN, "lease_until": WHEN}),
    (st.INSERT_LLM_CALLS, [dict(trial_id=1, run_id=1, role="researcher", model="m", tokens_in=1, tokens_out=2,
                                latency_s=0.5, prompt="p", response="r", error=None, cost_usd=0.0, temperature=None,
                                retries=0, created_at=WHEN)] * 2),
    (st.INSERT_STAGE_RESULTS, [dict(trial_id=1, position=0, stage="full", status="succeeded", score=1.0,
                                    metrics={"a": [1, 2]}, seconds=0.1, error_class=None, error_message=None)]),
    (st.INSERT_TELEMETRY, [dict(trial_id=1, stage="full", step=i, name="loss", value=None if i else 0.5,
                                elapsed_s=0.1) for i in range(3)]),
    (st.INSERT_GATE_DECISIONS, [dict(trial_id=1, stage=None, gate="median", action="prune", reason="slow",
                                     evidence={"q": math.inf}, created_at=WHEN)]),
    (st.INSERT_KNOWLEDGE_SHOWN, [dict(trial_id=1, item_id=4, rank=0, kind="lesson", title="t", score=None)]),
    (st.INSERT_ANALYSIS, {"trial_id": 1, "kind": "digest", "text": "d", "data": {}, "created_at": WHEN}),
    (st.INSERT_STATE, {"run_id": 1, "key": "wall", "value": {"seconds": 1.5}, "updated_at": WHEN}),
    (st.UPDATE_STATE, {"run_": 1, "key_": "wall", "value": {"seconds": 2.5}, "updated_at": WHEN}),
]


def _engine(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    t.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(t.runs).values(task_name="t", config={}, seed=0, task_snapshot={}, stopping={},
                                           created_at=WHEN, trial_count=0))
    return engine


def _dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows as SQLite holds them (text, numbers, NULLs: what the statements bound)."""
    with sqlite3.connect(path) as db:
        return {table: db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall() for table in t.metadata.tables}


def _clauses(engine: Engine) -> list[Any]:
    """The statements that go through SQLAlchemy's execution of a statement object (`before_execute`)."""
    seen: list[Any] = []
    event.listen(engine, "before_execute", lambda _conn, clause, *_a: seen.append(clause))
    return seen


def test_prepared_writes_store_what_sqlalchemys_execution_stores(tmp_path: Path) -> None:
    """Each per-trial statement, run prepared, binds what `conn.execute` binds (JSON of tuples, non-string keys,
    NaN and inf; timestamps as UTC; booleans; None; several rows), returns the same row counts and new ids, and
    leaves SQLAlchemy's execution of statement objects out (before: every one went through it)."""
    plain, prepared = _engine(tmp_path / "plain.db"), _engine(tmp_path / "prepared.db")
    clauses = _clauses(prepared)
    for statement, values in CASES:
        with plain.begin() as conn:
            expected = conn.execute(statement.statement, values)
            expected_count = expected.rowcount
            expected_id = expected.inserted_primary_key[0] if statement is st.INSERT_TRIAL else None
        with prepared.begin() as conn:
            if statement is st.INSERT_TRIAL:
                assert statement.new_id(conn, values) == expected_id
            else:
                assert statement.run(conn, values).rowcount == expected_count
    assert _dump(tmp_path / "prepared.db") == _dump(tmp_path / "plain.db")
    assert _dump(tmp_path / "plain.db")["trials"][0][10] == '{"loss": null, "pair": [1, 2], "7": 1.5}'
    assert not clauses, clauses


def test_prepared_writes_raise_sqlalchemys_errors_and_roll_back(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "record.db")
    with pytest.raises(IntegrityError), engine.begin() as conn:
        st.INSERT_STATE.run(conn, {"run_id": 1, "key": "wall", "value": {}, "updated_at": WHEN})
        st.INSERT_STATE.run(conn, {"run_id": 1, "key": "wall", "value": {}, "updated_at": WHEN})  # same key
    with engine.connect() as conn:
        assert conn.execute(select(t.run_state)).all() == []


def _leaves_it_to_sqlalchemy(engine: Engine, conn: Connection, statement: Prepared, values: Any) -> Any:
    clauses = _clauses(engine)
    result = statement.run(conn, values)
    assert clauses == [statement.statement]
    return result


def test_a_statement_that_needs_more_than_its_values_runs_as_before(tmp_path: Path) -> None:
    """A column default computed in Python, RETURNING, an expanding IN: `conn.execute`, with its result."""
    engine = _engine(tmp_path / "record.db")
    with engine.begin() as conn:
        trial_id = st.INSERT_TRIAL.new_id(conn, _trial(0))
        defaults = Prepared(insert(t.llm_calls))  # cost_usd, retries: column defaults SQLAlchemy computes
        _leaves_it_to_sqlalchemy(engine, conn, defaults, dict(
            trial_id=trial_id, run_id=1, role="r", model="m", tokens_in=0, tokens_out=0, latency_s=0.0, prompt="",
            response="", created_at=WHEN))
        returning = Prepared(insert(t.analyses).returning(t.analyses.c.id))
        row = _leaves_it_to_sqlalchemy(engine, conn, returning, dict(trial_id=trial_id, kind="k", text="",
                                                                     data={}, created_at=WHEN)).one()
        expanding = Prepared(t.trials.update().where(t.trials.c.id.in_([trial_id, 99])))
        assert _leaves_it_to_sqlalchemy(engine, conn, expanding, {"name": "renamed"}).rowcount == 1
        assert conn.execute(select(t.llm_calls.c.cost_usd, t.llm_calls.c.retries)).one() == (0.0, 0)
        assert row.id == 1 and conn.execute(select(t.trials.c.name)).scalar() == "renamed"


def test_a_trials_writes_skip_sqlalchemys_statement_execution(tmp_path: Path) -> None:
    """A trial's writes (added with its calls, started, finished with its digest, analysed; the run's wall time):
    none goes through SQLAlchemy's execution of a statement object but the gates' history read, and the trial
    reads back as written."""
    record = Record.for_run_dir(tmp_path, create=True)
    record.create_run(task_name="t", config={}, seed=0, task_snapshot={}, stopping={})
    record.act_as("me")
    call = LLMCall(role="researcher", model="m", prompt="p", response="r")
    seed = record.add_trial(parent_ids=[], inspiration_ids=[], name="seed", motivation="", code="x = 0\n", diff="",
                            proposer="seed", model=None)
    record.history(seed.id)
    record.finish_trial(seed.id, Outcome(status=TrialStatus.SUCCEEDED, score=0.0,
                                         stages=(StageResult("full", TrialStatus.SUCCEEDED, 0.0),)))
    record.history(seed.id)  # from here on: the new rows in one statement
    clauses = _clauses(record._engine)
    with record.batch():
        trial = record.add_trial(parent_ids=[seed.id], inspiration_ids=[], name="n", motivation="m", code="x = 1\n",
                                 diff="+x = 1\n", proposer="llm", model="m", fingerprint="f", facts={"k": (1,)},
                                 budget=10)
        record.add_llm_calls(trial.id, [call, call])
    with record.batch():
        assert record.mark_running_unless_repeat(trial.id, "f") is not None
        record.history(seed.id)
    outcome = Outcome(status=TrialStatus.SUCCEEDED, score=1.0, metrics={"loss": 0.5}, seconds=2.0,
                      stages=(StageResult("full", TrialStatus.SUCCEEDED, 1.0),),
                      telemetry=(TelemetryPoint("full", 1, "loss", 0.5, 0.1),))
    with record.batch():
        finished = record.finish_trial(trial.id, outcome, Digest("d", {"n": 1}))
        record.save_state("wall", {"seconds": 3.0})
    with record.batch():
        record.add_llm_calls(trial.id, [call])
        record.add_analyses(trial.id, [("analysis", "a", {"x": 1}), ("lesson", "l", None)])
    assert [type(c).__name__ for c in clauses] == ["CompoundSelect"], clauses  # the history's new rows
    assert finished == record.trial(trial.id) and finished.facts == {"k": [1]}
    assert [a.kind for a in record.analyses(trial.id)] == ["digest", "analysis", "lesson"]
    assert len(record.llm_calls(trial.id)) == 3 and record.load_state("wall") == {"seconds": 3.0}
    assert [s.score for s in record.stage_results(trial.id)] == [1.0] and len(record.telemetry(trial.id)) == 1
    record.close()


def test_each_engine_binds_with_its_own_processors(tmp_path: Path) -> None:
    """A statement prepared for one engine is prepared again for another (its JSON serializer, here one that writes
    NaN, is in the bind processors), not run with the first's."""
    strict = _engine(tmp_path / "strict.db")
    loose = create_engine(f"sqlite:///{tmp_path / 'loose.db'}")  # the json module's defaults: NaN as NaN
    t.metadata.create_all(loose)
    statement = Prepared(insert(t.run_state))
    for engine in (strict, loose):
        with engine.begin() as conn:
            statement.run(conn, {"run_id": 1, "key": "k", "value": {"x": math.nan}, "updated_at": WHEN})
    assert _dump(tmp_path / "strict.db")["run_state"][0][2] == '{"x": null}'
    assert _dump(tmp_path / "loose.db")["run_state"][0][2] == '{"x": NaN}'
