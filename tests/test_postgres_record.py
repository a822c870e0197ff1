"""The record and the cognition base on a real PostgreSQL (a throw-away cluster, tests/postgres.py): what a run
writes reads back the same as on SQLite — guarded transitions, facts, batches through the record's thread, champion
decisions — and a second opener sees it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres import throwaway_cluster
from taskfactory import make_task

from evoforge.memory.champion_log import ChampionDecision
from evoforge.memory.record import FinishedTrialError, Record
from evoforge.models import Direction, Outcome, TrialStatus


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with throwaway_cluster() as url:
        yield url


def _run(record: Record) -> None:
    record.create_run(task_name="pg", config={"settings": {}, "task_config": {"objective": {"direction": "maximize"}}},
                      seed=0, task_snapshot={"task.yaml": "name: pg\n"}, stopping={"trials": 3})


def test_a_run_on_postgresql_reads_back_as_written(pg_url: str) -> None:
    record = Record(pg_url)
    try:
        _run(record)
        seed = record.add_trial(parent_ids=[], inspiration_ids=[], name="seed", motivation="the seed",
                                code="x = 1\n", diff="", proposer="offline", model=None, facts={"sampler": "greedy"})
        record.mark_running(seed.id)
        done = record.finish_trial(seed.id, Outcome(status=TrialStatus.SUCCEEDED, score=-4.0,
                                                    metrics={"score": -4.0, "note": "ünïcode ✓"}, seconds=0.5))
        assert done.status is TrialStatus.SUCCEEDED and done.metrics["note"] == "ünïcode ✓"
        with pytest.raises(FinishedTrialError):
            record.fail_trial(seed.id, "crash", "too late")

        async def batched() -> int:
            def write() -> int:
                child = record.add_trial(parent_ids=[seed.id], inspiration_ids=[], name="child", motivation="m",
                                         code="x = 2\n", diff="", proposer="offline", model=None,
                                         facts={"island": 1, "reason": "best score"})
                record.add_champion_decision(ChampionDecision(seed.id, -4.0, 0.0, 1, True, "first champion"))
                return child.id
            return await record.io(write)

        child_id = asyncio.run(batched())
    finally:
        record.close()
    reader = Record(pg_url, read_only=True)
    try:
        trials = reader.trials()
        assert [t.id for t in trials] == [seed.id, child_id]
        assert trials[1].facts == {"island": 1, "reason": "best score"} and trials[1].parent_ids == (seed.id,)
        assert reader.best(Direction.MAXIMIZE).id == seed.id
        counts = reader.counts()
        assert counts["succeeded"] == 1 and counts["proposed"] == 1 and sum(counts.values()) == 2
        champion = reader.champion()
        assert champion is not None and champion.trial_id == seed.id and champion.reason == "first champion"
    finally:
        reader.close()


def _database(pg_url: str, name: str) -> str:
    """A new empty database on the cluster; its URL."""
    import psycopg

    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_url.rsplit("/", 1)[0] + f"/{name}"


def test_a_run_with_its_record_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    """`evoforge run --record URL` as a user runs it: the run folder keeps the trials and names the database in
    record.url (owner-only); status, best, resume and report find the record through it; no record.db is made."""
    url = _database(pg_url, "run_cli")
    task = make_task(tmp_path / "task")
    run_dir = tmp_path / "run"
    cli = [sys.executable, "-m", "evoforge.cli"]

    def evoforge(*args: str) -> str:
        proc = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    evoforge("run", str(task), "--run-dir", str(run_dir), "--record", url, "--llm", "offline", "--trials", "5",
             "--concurrency", "1")
    assert not (run_dir / "record.db").exists() and (run_dir / "record.url").read_text().strip() == url
    assert (run_dir / "record.url").stat().st_mode & 0o077 == 0
    status = json.loads(evoforge("status", str(run_dir), "--json"))
    assert status["total"] == 5 and status["best_score"] is not None
    evoforge("resume", str(run_dir), "--more", "2")
    assert json.loads(evoforge("status", str(run_dir), "--json"))["total"] == 7
    with Record(url, read_only=True) as record:  # the database itself holds it all
        assert len(record.trials()) == 7
    evoforge("report", str(run_dir))
    assert (run_dir / "report.html").exists()
