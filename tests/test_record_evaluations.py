"""The record's evaluation detail: stages, telemetry and gate decisions round-trip; history and savings follow."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import event

from evoforge.memory import history
from evoforge.memory.history import build_history
from evoforge.memory.record import Record
from evoforge.models import EvaluationHistory, GateDecision, Outcome, StageResult, TelemetryPoint, TrialStatus

T = TypeVar("T")


@pytest.fixture
def record(tmp_path: Path) -> Record:
    rec = Record.for_run_dir(tmp_path, create=True)
    rec.create_run(task_name="t", config={}, seed=0, task_snapshot={}, stopping={})
    return rec


def _add(record: Record, parent: int | None = None, fingerprint: str | None = None) -> int:
    return record.add_trial(parent_ids=[parent] if parent else [], inspiration_ids=[], name="n", motivation="m",
                            code="c", diff="", proposer="offline", model=None, fingerprint=fingerprint).id


def _curve(stage: str, values: list[float]) -> tuple[TelemetryPoint, ...]:
    return tuple(TelemetryPoint(stage=stage, step=10 * i, name="loss", value=v, t=0.1 * i)
                 for i, v in enumerate(values))


def _succeeded(score: float, seconds: float, values: list[float]) -> Outcome:
    stages = (StageResult("smoke", TrialStatus.SUCCEEDED, score=score / 2, seconds=1.0),
              StageResult("full", TrialStatus.SUCCEEDED, score=score, seconds=seconds - 1.0))
    return Outcome(status=TrialStatus.SUCCEEDED, score=score, seconds=seconds, stages=stages,
                   telemetry=_curve("full", values))



def _selects(record: Record, needle: str, call: Callable[[], T]) -> tuple[T, list[tuple[str, object]]]:
    """What `call()` returns, and the SELECT statements (with their parameters) naming `needle` it ran."""
    statements: list[tuple[str, object]] = []

    def grab(conn: object, cursor: object, statement: str, parameters: object, *_: object) -> None:
        if needle in statement and statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(record._engine, "before_cursor_execute", grab)
    try:
        return call(), statements
    finally:
        event.remove(record._engine, "before_cursor_execute", grab)

def test_stages_telemetry_and_decisions_round_trip(record: Record) -> None:
    tid = _add(record)
    decision = GateDecision(gate="median", stage="full", action="prune", reason="loss 3.0 > median 2.0 at step 20",
                            evidence={"step": 20, "value": 3.0, "reference": 2.0})
    outcome = Outcome(
        status=TrialStatus.PRUNED, error_class="pruned:median", seconds=2.0, seconds_saved=8.0, suspect=True,
        stages=(StageResult("smoke", TrialStatus.SUCCEEDED, score=1.0, seconds=1.0),
                StageResult("full", TrialStatus.PRUNED, seconds=1.0)),
        telemetry=(*_curve("full", [4.0, 3.5]), TelemetryPoint("full", 20, "loss", math.nan, 0.2)),
        decisions=(decision,),
    )
    record.finish_trial(tid, outcome)
    trial = record.trial(tid)
    assert trial.status is TrialStatus.PRUNED and trial.suspect and trial.seconds_saved == 8.0
    assert [s.name for s in record.stage_results(tid)] == ["smoke", "full"]
    points = record.telemetry(tid)
    assert [p.value for p in points[:2]] == [4.0, 3.5] and math.isnan(points[2].value)
    assert record.decisions(tid)[0].decision == decision
    savings = record.savings()
    assert savings["saved_by_gate"] == {"median": 8.0} and savings["stopped_by_gate"] == {"median": 1}
    assert savings["evaluation_seconds"] == 2.0


def test_history_holds_completed_curves_parent_and_costs(record: Record) -> None:
    first = _add(record)
    record.finish_trial(first, _succeeded(2.0, 10.0, [5.0, 4.0, 3.0]))
    second = _add(record, parent=first)
    record.finish_trial(second, _succeeded(3.0, 12.0, [5.0, 3.5, 2.5]))
    pruned = _add(record, parent=first)
    record.finish_trial(pruned, Outcome(status=TrialStatus.PRUNED, seconds=1.0,
                                        stages=(StageResult("smoke", TrialStatus.PRUNED, score=0.1),),
                                        telemetry=_curve("full", [9.0])))
    history = record.history(parent_id=second)
    assert history.stage_scores == {"smoke": [1.0, 1.5], "full": [2.0, 3.0]}
    assert history.parent_stage_scores == {"smoke": 1.5, "full": 3.0}
    assert len(history.curves["full"]["loss"]) == 2  # the pruned trial's curve is not a reference
    assert [v for _, v, _ in history.parent_curves["full"]["loss"]] == [5.0, 3.5, 2.5]
    assert sorted(history.full_seconds) == [10.0, 12.0]


def test_fingerprint_finds_the_original_evaluation(record: Record) -> None:
    original = _add(record, fingerprint="abc")
    assert record.find_fingerprint("abc") is None  # not finished yet
    record.finish_trial(original, Outcome(status=TrialStatus.SUCCEEDED, score=1.0, seconds=3.0))
    copy = _add(record, fingerprint="abc")
    record.finish_trial(copy, Outcome(status=TrialStatus.SUCCEEDED, score=1.0, reused_from=original,
                                      seconds_saved=3.0))
    found = record.find_fingerprint("abc")
    assert found is not None and found.id == original
    assert record.trial(copy).reused_from == original
    assert record.savings()["saved_by_gate"] == {"duplicate": 3.0}


def test_knowledge_shown_and_agendas(record: Record) -> None:
    tid = _add(record)
    record.add_knowledge_shown(tid, [(7, "heuristic", "hexagonal rows", 0.9), (3, "lesson", "margins", None)])
    assert [k["item_id"] for k in record.knowledge_shown(tid)] == [7, 3]
    record.add_agenda(5, "try rings", {"directions": ["rings"]})
    record.add_agenda(10, "try lattices")
    assert [a["after_trial"] for a in record.agendas()] == [5, 10]


def test_loop_state_round_trips_and_survives_reopen(record: Record, tmp_path: Path) -> None:
    assert record.load_state("sampler") is None
    record.save_state("sampler", {"islands": [[1, 2], [3]], "generation": 4})
    record.save_state("sampler", {"islands": [[1, 2, 5], [3]], "generation": 5})
    record.close()
    again = Record.for_run_dir(tmp_path)
    assert again.load_state("sampler") == {"islands": [[1, 2, 5], [3]], "generation": 5}


def test_the_history_of_a_run_reads_only_the_recent_rows(record: Record) -> None:
    """The gates' history is read at every evaluation: in a record of many trials its queries must not list the run's
    trials or sort all their stage results (SQLite's plan: no list subquery, no sort of its own)."""
    tid = _add(record)
    record.mark_running(tid)
    record.finish_trial(tid, _succeeded(2.0, 3.0, [3.0, 2.0]))
    history, statements = _selects(record, "stage_results", lambda: record.history(tid))
    assert history.stage_scores["full"] == [2.0]
    ordered = [(s, p) for s, p in statements if "ORDER BY stage_results.id DESC" in s]
    assert ordered, statements
    with record._engine.connect() as conn:
        for statement, parameters in ordered:
            plan = " | ".join(row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters))
            assert "LIST SUBQUERY" not in plan and "TEMP B-TREE" not in plan, plan


def _history_in_full(record: Record, parent: int | None) -> EvaluationHistory:
    with record._engine.connect() as conn:
        return build_history(conn, parent, record.run_id)


def test_the_history_kept_between_builds_is_the_history_read_in_full(
        tmp_path: Path, record: Record, monkeypatch: pytest.MonkeyPatch) -> None:
    """The record keeps the gates' history and reads only what was committed since: whoever wrote it (a second
    runner on the run), with old trials falling out of the newest stage results and curves as they should."""
    monkeypatch.setattr(history, "HISTORY_STAGE_RESULTS", 7)
    monkeypatch.setattr(history, "HISTORY_TRIALS", 3)
    other = Record(record.url, run_id=record.run_id)
    other.act_as("other")
    trials: list[int] = []
    pending: int | None = None  # added before the last build, finished after it (an older id finishing late)
    try:
        for i in range(12):
            writer = other if i % 3 == 2 else record
            tid = _add(writer, parent=trials[-1] if trials else None)
            if i % 4 == 3:
                outcome = Outcome(status=TrialStatus.PRUNED, seconds=1.0, telemetry=_curve("full", [9.0]),
                                  stages=(StageResult("smoke", TrialStatus.SUCCEEDED, score=0.1),
                                          StageResult("full", TrialStatus.PRUNED)))
            else:
                outcome = _succeeded(float(i), 2.0 + i, [5.0 - i, 4.0 - i])
            writer.finish_trial(tid, outcome)
            trials.append(tid)
            if pending is not None:
                record.finish_trial(pending, _succeeded(-float(i), 1.5, [7.0]) if i % 2 else
                                    Outcome(status=TrialStatus.FAILED, seconds=0.5))
                trials.append(pending)
            pending = _add(record)
            for parent in (None, trials[0], trials[-1], trials[len(trials) // 2], pending):
                assert record.history(parent) == _history_in_full(record, parent), (i, parent)
    finally:
        other.close()


def test_a_build_reads_only_the_stage_results_committed_since_the_last(record: Record) -> None:
    """Each evaluation's history reads the stage results added since the previous one, not the newest thousands
    again (a cost that grew with the record up to 2,000 rows per trial)."""
    for _ in range(5):
        tid = _add(record)
        record.finish_trial(tid, _succeeded(2.0, 3.0, [3.0, 2.0]))
    record.history(tid)
    new = _add(record, parent=tid)
    record.finish_trial(new, _succeeded(3.0, 3.0, [3.0, 1.0]))
    kept, statements = _selects(record, "FROM stage_results", lambda: record.history(tid))
    assert kept == _history_in_full(record, tid) and len(kept.stage_scores["full"]) == 6
    with record._engine.connect() as conn:
        read = [len(conn.exec_driver_sql(s, p).all()) for s, p in statements]  # type: ignore[arg-type]
    assert sum(read) <= 2 + 2, (read, statements)  # the new trial's two stages (and the parent's, if read again)


def test_the_lookup_of_an_earlier_evaluation_uses_the_fingerprints_index(record: Record) -> None:
    """At every evaluation the record looks for an earlier trial with the same program: by its fingerprint's index,
    not a walk over all the run's trials (a cost that grew with the record)."""
    statements: list[tuple[str, object]] = []

    def grab(conn: object, cursor: object, statement: str, parameters: object, *_: object) -> None:
        statements.append((statement, parameters))

    event.listen(record._engine, "before_cursor_execute", grab)
    try:
        assert record.find_fingerprint("abc") is None
    finally:
        event.remove(record._engine, "before_cursor_execute", grab)
    with record._engine.connect() as conn:
        plans = [" | ".join(row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + s, p))  # type: ignore[arg-type]
                 for s, p in statements if "fingerprint" in s]
    assert plans and all("ix_trials_fingerprint" in plan for plan in plans), plans
