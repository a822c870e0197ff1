"""The Database of Record: round trips of every method, durability under SIGKILL, requeue, counts, best."""

from __future__ import annotations

import math
import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest

from evoforge.errors import RunError
from evoforge.memory import Record, RunInfo
from evoforge.models import Digest, Direction, LLMCall, Outcome, Trial, TrialStatus


def _new(run_dir: Path) -> Record:
    record = Record.for_run_dir(run_dir, create=True)
    record.create_run(
        task_name="toy", config={"sampler": "ucb1", "nested": {"k": [1, 2]}}, seed=7,
        task_snapshot={"task.yaml": "name: toy\n", "program.py": "x = 1\n"}, stopping={"max_trials": 10},
    )
    return record


def _add(record: Record, parents: tuple[int, ...] = (), code: str = "x = 1", **kw: object) -> int:
    return record.add_trial(
        parent_ids=parents, inspiration_ids=kw.pop("inspirations", ()), name=str(kw.pop("name", "t")),
        motivation="because", code=code, diff="--- a\n+++ b\n", proposer="offline", model=None, **kw,
    ).id


def _succeed(record: Record, score: float | None, **kw: object) -> int:
    trial_id = _add(record)
    record.finish_trial(trial_id, Outcome(status=TrialStatus.SUCCEEDED, score=score, **kw))
    return trial_id


@pytest.fixture()
def record(tmp_path: Path) -> Iterator[Record]:
    rec = _new(tmp_path / "run")
    yield rec
    rec.close()


def test_run_round_trip_and_update_stopping(record: Record) -> None:
    info = record.run_info()
    assert isinstance(info, RunInfo)
    assert (info.task_name, info.seed) == ("toy", 7)
    assert info.config == {"sampler": "ucb1", "nested": {"k": [1, 2]}}
    assert info.task_snapshot["program.py"] == "x = 1\n"
    assert info.stopping == {"max_trials": 10}
    assert info.created_at.tzinfo is not None and info.created_at.utcoffset().total_seconds() == 0
    record.update_stopping({"max_trials": 20, "target": 1.5})
    assert record.run_info().stopping == {"max_trials": 20, "target": 1.5}


def test_run_errors(tmp_path: Path, record: Record) -> None:
    empty = Record(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(RunError, match="no run"):
        empty.run_info()
    with pytest.raises(RunError, match="no run"):
        _add(empty)
    empty.close()


def test_trial_life_cycle_round_trip(record: Record) -> None:
    trial_id = _add(record, parents=(3, 1), inspirations=(2,), name="wider", code="x = 2")
    trial = record.trial(trial_id)
    assert isinstance(trial, Trial)
    assert trial.status is TrialStatus.PROPOSED
    assert (trial.parent_ids, trial.inspiration_ids) == ((3, 1), (2,))
    assert (trial.name, trial.motivation, trial.code, trial.proposer, trial.model) == (
        "wider", "because", "x = 2", "offline", None)
    assert trial.diff.startswith("--- a")
    assert trial.created_at is not None and trial.created_at.tzinfo is not None and trial.finished_at is None

    record.mark_running(trial_id)
    assert record.trial(trial_id).status is TrialStatus.RUNNING
    outcome = Outcome(status=TrialStatus.SUCCEEDED, score=0.75, metrics={"loss": 0.25, "steps": [1, 2]},
                      seconds=3.5, seconds_saved=1.25)
    record.finish_trial(trial_id, outcome, Digest("scored 0.75", {"delta": 0.1}))
    done = record.trial(trial_id)
    assert done.status is TrialStatus.SUCCEEDED and done.scored
    assert (done.score, done.seconds, done.seconds_saved, done.digest) == (0.75, 3.5, 1.25, "scored 0.75")
    assert done.metrics == {"loss": 0.25, "steps": [1, 2]}
    assert done.finished_at is not None and done.finished_at >= done.created_at
    assert done.finished_at.tzinfo == UTC


def test_pruned_outcome_keeps_error_fields(record: Record) -> None:
    trial_id = _add(record)
    record.finish_trial(trial_id, Outcome(status=TrialStatus.PRUNED, score=0.1, error_class="stage_threshold",
                                          error_message="smoke score 0.1 < 0.5", seconds=2.0))
    trial = record.trial(trial_id)
    assert trial.status is TrialStatus.PRUNED and not trial.scored
    assert (trial.error_class, trial.error_message) == ("stage_threshold", "smoke score 0.1 < 0.5")
    assert trial.seconds == 2.0


def test_finish_trial_refuses_unfinished_outcome(record: Record) -> None:
    trial_id = _add(record)
    with pytest.raises(ValueError, match="finished outcome"):
        record.finish_trial(trial_id, Outcome(status=TrialStatus.RUNNING))


def test_fail_trial_and_failed_at_birth(record: Record) -> None:
    trial_id = _add(record)
    record.fail_trial(trial_id, "timeout", "ran past 300 s", seconds=300.0)
    trial = record.trial(trial_id)
    assert trial.status is TrialStatus.FAILED
    assert (trial.error_class, trial.error_message, trial.seconds) == ("timeout", "ran past 300 s", 300.0)
    assert trial.finished_at is not None
    born_failed = _add(record, status=TrialStatus.FAILED)
    assert record.trial(born_failed).status is TrialStatus.FAILED
    assert record.trial(born_failed).finished_at is not None


def test_latest_analysis_is_kept_once_committed(tmp_path: Path, record: Record) -> None:
    trial_id = _add(record)
    assert record.latest_analysis(trial_id) == "" and record.known_analysis(trial_id) is None  # none yet: not kept
    record.add_analysis(trial_id, "analysis", "first")
    record.add_analysis(trial_id, "lesson", "a lesson")
    assert record.known_analysis(trial_id) == "first"
    with pytest.raises(RuntimeError), record.batch():  # rolled back: neither kept nor in the record
        record.add_analysis(trial_id, "analysis", "lost")
        raise RuntimeError("boom")
    assert record.latest_analysis(trial_id) == "first"
    with record.batch():
        record.add_analysis(trial_id, "analysis", "second")
        assert record.known_analysis(trial_id) is None  # not until the batch commits
    assert record.known_analysis(trial_id) == "second"
    other = Record.for_run_dir(tmp_path / "run")  # another runner reads it from the record, once
    try:
        assert other.known_analysis(trial_id) is None
        assert other.latest_analysis(trial_id) == "second" == other.known_analysis(trial_id)
    finally:
        other.close()


def test_set_digest_replaces_the_digest_analysis(record: Record) -> None:
    trial_id = _succeed(record, 1.0)
    record.set_digest(trial_id, Digest("first", {"n": 1}))
    record.add_analysis(trial_id, "lesson", "wider helps", {"confidence": 0.8})
    record.set_digest(trial_id, Digest("second", {"n": 2}))
    assert record.trial(trial_id).digest == "second"
    rows = record.analyses(trial_id)
    assert [(r.kind, r.text, r.data) for r in rows] == [
        ("lesson", "wider helps", {"confidence": 0.8}), ("digest", "second", {"n": 2})]
    assert all(r.trial_id == trial_id and r.created_at.tzinfo is not None for r in rows)
    assert record.analyses(trial_id + 100) == []


def test_missing_trial_raises_run_error(record: Record) -> None:
    with pytest.raises(RunError, match="no trial 99"):
        record.trial(99)
    with pytest.raises(RunError, match="no trial 99"):
        record.mark_running(99)
    with pytest.raises(RunError, match="no trial 99"):
        record.fail_trial(99, "x", "y")
    with pytest.raises(RunError, match="no trial 99"):
        record.finish_trial(99, Outcome(status=TrialStatus.SUCCEEDED, score=1.0))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_score_is_never_stored(record: Record, bad: float) -> None:
    trial_id = _succeed(record, bad, metrics={"loss": bad, "ok": 1.0})
    trial = record.trial(trial_id)
    assert trial.score is None and not trial.scored
    assert trial.metrics == {"loss": None, "ok": 1.0}
    assert record.best(Direction.MAXIMIZE) is None
    assert record.best(Direction.MINIMIZE) is None


def test_trials_filters_and_order(record: Record) -> None:
    a = _succeed(record, 1.0)
    b = _add(record)
    c = _add(record)
    record.fail_trial(c, "crash:ValueError", "boom")
    assert [t.id for t in record.trials()] == [a, b, c]
    assert [t.id for t in record.trials(newest_first=True)] == [c, b, a]
    assert [t.id for t in record.trials(limit=2, newest_first=True)] == [c, b]
    assert [t.id for t in record.trials([TrialStatus.SUCCEEDED, TrialStatus.FAILED])] == [a, c]
    assert record.trials([TrialStatus.RUNNING]) == []


def test_best_direction_ties_and_status(record: Record) -> None:
    assert record.best(Direction.MAXIMIZE) is None
    low = _succeed(record, -2.0)
    high = _succeed(record, 5.0)
    tie = _succeed(record, 5.0)
    _succeed(record, None)
    pruned = _add(record)
    record.finish_trial(pruned, Outcome(status=TrialStatus.PRUNED, score=100.0))
    failed = _add(record)
    record.finish_trial(failed, Outcome(status=TrialStatus.FAILED, score=-100.0))
    assert record.best(Direction.MAXIMIZE).id == high and tie > high
    assert record.best(Direction.MINIMIZE).id == low


def test_counts_include_zeros(record: Record) -> None:
    assert record.counts() == {s.value: 0 for s in TrialStatus}
    _succeed(record, 1.0)
    _succeed(record, 2.0)
    running = _add(record)
    record.mark_running(running)
    assert record.counts() == {"proposed": 0, "running": 1, "succeeded": 2, "failed": 0, "pruned": 0, "rejected": 0}


def test_requeue_in_flight(record: Record) -> None:
    done = _succeed(record, 1.0)
    queued = _add(record)
    flying = [_add(record), _add(record)]
    for trial_id in flying:
        record.mark_running(trial_id)
    assert record.requeue_in_flight() == [queued, *flying]
    assert record.trial(done).status is TrialStatus.SUCCEEDED
    assert {record.trial(i).status for i in flying} == {TrialStatus.PROPOSED}
    assert record.counts()["running"] == 0
    assert record.requeue_in_flight() == [queued, *flying]


def test_llm_calls_round_trip(record: Record) -> None:
    trial_id = _add(record)
    calls = [LLMCall("researcher", "gpt-x", "prompt 1", "answer 1", 120, 40, 1.5),
             LLMCall("repair", "gpt-x", "prompt 2", "", error="RateLimitError: slow down")]
    record.add_llm_calls(trial_id, calls)
    record.add_llm_calls(None, [LLMCall("analyzer", "small", "p", "r")])
    record.add_llm_calls(trial_id, [])
    rows = record.llm_calls(trial_id)
    assert [(r.role, r.prompt, r.tokens_in, r.tokens_out, r.latency_s, r.error) for r in rows] == [
        ("researcher", "prompt 1", 120, 40, 1.5, None),
        ("repair", "prompt 2", 0, 0, 0.0, "RateLimitError: slow down"),
    ]
    assert all(r.trial_id == trial_id and r.created_at.tzinfo is not None for r in rows)
    everything = record.llm_calls()
    assert [r.role for r in everything] == ["researcher", "repair", "analyzer"]
    assert everything[-1].trial_id is None


def test_for_run_dir_missing_and_reopen(tmp_path: Path) -> None:
    missing = tmp_path / "not_a_run"
    with pytest.raises(RunError, match=r"no record at .*record\.db: is this a run directory\?"):
        Record.for_run_dir(missing)
    assert not missing.exists()
    with _new(tmp_path / "deep" / "run") as first:
        trial_id = _succeed(first, 3.0)
    with Record.for_run_dir(tmp_path / "deep" / "run") as again:
        assert again.trial(trial_id).score == 3.0
        assert again.run_info().task_name == "toy"
    raw = sqlite3.connect(tmp_path / "deep" / "run" / "record.db")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    raw.close()


def test_bad_url_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="not a database URL"):
        Record("definitely not a url")
    garbage = tmp_path / "run"
    garbage.mkdir()
    (garbage / "record.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RunError, match="cannot open the record"):
        Record.for_run_dir(garbage)


def test_in_memory_url_works() -> None:
    with Record("sqlite://") as rec:
        rec.create_run(task_name="mem", config={}, seed=0, task_snapshot={}, stopping={})
        assert rec.trial(_succeed(rec, 1.0)).score == 1.0


def test_second_reader_sees_every_commit(record: Record, tmp_path: Path) -> None:
    reader = Record.for_run_dir(tmp_path / "run")
    try:
        for n in range(1, 4):
            _succeed(record, float(n))
            assert len(reader.trials()) == n
        assert reader.best(Direction.MAXIMIZE).score == 3.0
    finally:
        reader.close()


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from evoforge.memory import Record
    from evoforge.models import Outcome, TrialStatus
    rec = Record.for_run_dir(Path(sys.argv[1]), create=True)
    rec.create_run(task_name="kill", config={}, seed=0, task_snapshot={}, stopping={})
    for n in range(100_000):
        tid = rec.add_trial(parent_ids=[], inspiration_ids=[], name=f"t{n}", motivation="", code="c" * 5000,
                            diff="", proposer="offline", model=None).id
        rec.mark_running(tid)
        rec.finish_trial(tid, Outcome(status=TrialStatus.SUCCEEDED, score=float(n), metrics={"n": n}))
        print(f"finished {tid} {n}", flush=True)
    """
)


def _read_finished(proc: subprocess.Popen[str], wanted: int, deadline_s: float) -> list[tuple[int, int]]:
    finished: list[tuple[int, int]] = []
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + deadline_s
    while len(finished) < wanted and time.monotonic() < deadline:
        if selector.select(timeout=0.5):
            line = proc.stdout.readline()
            if not line:
                break
            _, tid, n = line.split()
            finished.append((int(tid), int(n)))
    selector.close()
    return finished


def test_sigkill_loses_no_finished_trial(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(run_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        finished = _read_finished(proc, wanted=20, deadline_s=90.0)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        stderr = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(finished) == 20, f"writer did not report 20 finished trials: {stderr[-2000:]}"
    with Record.for_run_dir(run_dir) as rec:
        for tid, n in finished:
            trial = rec.trial(tid)
            assert (trial.status, trial.score, trial.metrics) == (TrialStatus.SUCCEEDED, float(n), {"n": n})
        counts = rec.counts()
        assert counts["succeeded"] >= 20
        assert counts["running"] + counts["proposed"] <= 1  # at most the one trial in flight at the kill


def test_dumps_json_is_strict_on_both_paths() -> None:
    import json

    import numpy as np

    from evoforge.memory.tables import dumps_json

    plain = {"rng": [3, [1, 2, 3], None], "cursor": 2, "name": "x", "score": 1.5, "pair": (1, 2)}
    assert json.loads(dumps_json(plain)) == {**plain, "pair": [1, 2]}
    odd = {"nan": float("nan"), "inf": [float("inf")], "ids": {7}, "np": np.int64(4), "f": np.float64(0.25)}
    assert json.loads(dumps_json(odd)) == {"nan": None, "inf": [None], "ids": [7], "np": 4, "f": 0.25}
