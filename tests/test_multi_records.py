"""Many runs in one database: a version-3 record (one run, its state kept globally) is upgraded to version 4 and
keeps working; two runs of two tasks in one PostgreSQL database each show only their own trials in status, best,
show, export, report and the dashboard; `evoforge runs --record URL` lists them, plain `evoforge runs` the folders."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import knob_task
from postgres import throwaway_cluster
from recordfactory import make_record
from typer.testing import CliRunner

from evoforge.cli import app
from evoforge.config import RunSettings
from evoforge.dashboard.queries import trial_summaries
from evoforge.dashboard.sources import resolve_sources
from evoforge.errors import RunError
from evoforge.memory.claims import TrialBudgetFull
from evoforge.memory.record import Record, write_run_file
from evoforge.models import LLMCall, Outcome, TrialStatus
from evoforge.runs import resume, run
from evoforge.views import run_overview

V3 = """
CREATE TABLE loop_state (key VARCHAR(128) NOT NULL PRIMARY KEY, value JSON NOT NULL, updated_at DATETIME NOT NULL);
INSERT INTO loop_state SELECT key, value, updated_at FROM run_state;
DROP TABLE run_state;
ALTER TABLE agendas DROP COLUMN run_id;
ALTER TABLE llm_calls DROP COLUMN run_id;
ALTER TABLE runs DROP COLUMN trial_count;
ALTER TABLE trials DROP COLUMN runner;
ALTER TABLE trials DROP COLUMN lease_until;
DELETE FROM schema_version;
INSERT INTO schema_version (version) VALUES (3);
"""


def _versions(run_dir: Path) -> list[int]:
    with sqlite3.connect(run_dir / "record.db") as db:
        return [row[0] for row in db.execute("SELECT version FROM schema_version")]


def test_a_version_3_record_is_upgraded_and_keeps_working(tmp_path: Path) -> None:
    run_dir = make_record(tmp_path / "run")
    with Record.for_run_dir(run_dir) as record:
        record.save_state("stopped", {"reason": "reached 5 trials"})
        record.add_agenda(5, "try larger x")
        record.add_llm_calls(None, [LLMCall(role="review", model="m", prompt="p", response="r", tokens_in=3,
                                            tokens_out=4, latency_s=0.1)])
    with sqlite3.connect(run_dir / "record.db") as db:  # as version 3 wrote it: one run, its state kept globally
        db.executescript(V3)
    overview = run_overview(run_dir)  # read-only: read as it is, nothing changed
    assert (overview["total"], overview["stopped_because"], overview["llm_calls"]) == (5, "reached 5 trials", 3)
    assert _versions(run_dir) == [3]
    with Record.for_run_dir(run_dir) as record:  # opened for writing: upgraded to version 4
        assert record.load_state("stopped") == {"reason": "reached 5 trials"}
        assert [a["text"] for a in record.agendas()] == ["try larger x"] and len(record.llm_calls()) == 3
        assert record.list_runs()[0].total == 5
        extra = record.add_trial(parent_ids=[1], inspiration_ids=[], name="six", motivation="", code="x = 2\n",
                                 diff="", proposer="offline", model=None, budget=6)  # the count carried over: 5
        with pytest.raises(TrialBudgetFull):
            record.add_trial(parent_ids=[1], inspiration_ids=[], name="seven", motivation="", code="x = 3\n",
                             diff="", proposer="offline", model=None, budget=6)
        second = Record(record.url)
        second.create_run(task_name="other", config={}, seed=1, task_snapshot={}, stopping={"trials": 2})
        assert second.trials() == [] and second.load_state("stopped") is None and second.agendas() == []
        assert second.llm_calls() == [] and second.champion_decisions() == []
        second.close()
        assert [tr.id for tr in record.trials()][-1] == extra.id and len(record.trials()) == 6
    assert max(_versions(run_dir)) == 4
    assert run_overview(run_dir)["total"] == 6  # the folder still reads its own run, the first


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with throwaway_cluster() as url:
        yield url


def _run_folder(folder: Path, url: str, task: str, scores: list[float], direction: str) -> list[int]:
    """A run of `task` in the database at `url`, its folder naming it (record.url, run.json); its trial ids."""
    with Record.for_run_dir(folder, create=True, url=url) as record:
        run_id = record.create_run(task_name=task, config={"task_config": {"objective": {"direction": direction}}},
                                   seed=0, task_snapshot={}, stopping={"trials": len(scores)})
        write_run_file(folder, run_id)
        ids = []
        for i, score in enumerate(scores):
            trial = record.add_trial(parent_ids=ids[:1], inspiration_ids=[], name=f"{task}-{i}", motivation="",
                                     code=f"x = {score}\n", diff="", proposer="offline", model=None)
            record.finish_trial(trial.id, Outcome(status=TrialStatus.SUCCEEDED, score=score, seconds=0.1))
            record.save_state("stopped", {"reason": f"{task} done"})
            ids.append(trial.id)
    return ids


def test_two_runs_of_two_tasks_in_one_database(pg_url: str, tmp_path: Path) -> None:
    alpha_dir, beta_dir = tmp_path / "runs" / "alpha", tmp_path / "runs" / "beta"
    alpha = _run_folder(alpha_dir, pg_url, "alpha", [1.0, 5.0, 3.0], "maximize")
    beta = _run_folder(beta_dir, pg_url, "beta", [4.0, -1.0], "minimize")
    cli = CliRunner()

    def evoforge(*args: str, code: int = 0) -> str:
        done = cli.invoke(app, list(args))
        assert done.exit_code == code, done.output
        return done.output

    for folder, ids, task, best in ((alpha_dir, alpha, "alpha", 5.0), (beta_dir, beta, "beta", -1.0)):
        status = json.loads(evoforge("status", str(folder), "--json"))
        assert (status["task"], status["total"], status["best_score"]) == (task, len(ids), best)
        assert status["stopped_because"] == f"{task} done"
        assert json.loads(evoforge("best", str(folder), "--json"))["id"] in ids
        exported = [json.loads(line) for line in evoforge("export", str(folder)).splitlines() if line.strip()]
        assert [row["id"] for row in exported] == ids
        other = beta[0] if task == "alpha" else alpha[0]
        assert f"no trial {other}" in evoforge("show", str(folder), str(other), code=2)
        evoforge("report", str(folder))
        assert task in (folder / "report.html").read_text()
    listed = json.loads(evoforge("runs", "--record", pg_url, "--json"))
    assert [(r["task"], r["total"], r["best_score"], r["state"]) for r in listed] == [
        ("alpha", 3, 5.0, "finished"), ("beta", 2, -1.0, "finished")]
    assert "alpha" in evoforge("runs", "--record", pg_url) and "beta" in evoforge("runs", "--record", pg_url)
    folders = json.loads(evoforge("runs", str(tmp_path / "runs"), "--json"))
    assert [(Path(r["folder"]).name, r["task"], r["total"]) for r in folders] == [("alpha", "alpha", 3),
                                                                                  ("beta", "beta", 2)]
    sources = resolve_sources([pg_url, str(beta_dir)])  # a database: one source per run; a folder: its run
    assert len(sources) == 3
    for source, ids in zip(sources, (alpha, beta, beta), strict=True):
        with source.record() as record:
            assert [s["id"] for s in trial_summaries(record)] == ids


def test_a_joined_runner_has_its_own_folder_and_resumes_from_it(tmp_path: Path) -> None:
    """`run --join` on a record (here a SQLite URL): the joiner's folder names the run, its runner and its own task
    folder, so it resumes even when the first runner's task folder is not on its machine; the joined run takes the
    run's rule (its --trials is not the joiner's to set) and a task of another name is refused."""
    first_task, own_task = knob_task(tmp_path / "task"), knob_task(tmp_path / "copy" / "task")
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    offline = RunSettings(llm="offline", trials=3, concurrency=1)
    run(first_task, run_dir=tmp_path / "a", settings=offline, record_url=url)
    run_id = json.loads((tmp_path / "a" / "run.json").read_text())["run_id"]
    joined = run(own_task, run_dir=tmp_path / "b", settings=RunSettings(llm="offline", trials=50), record_url=url,
                 join=run_id)
    assert sum(joined.counts.values()) == 3  # the run held its 3 trials already: the joiner added none
    b_file = json.loads((tmp_path / "b" / "run.json").read_text())
    assert b_file["run_id"] == run_id and b_file["task_path"] == str(own_task.resolve())
    assert b_file["runner"] != json.loads((tmp_path / "a" / "run.json").read_text())["runner"]
    shutil.rmtree(first_task)  # on the joiner's machine only its own copy exists
    more = resume(tmp_path / "b", more=2)
    assert sum(more.counts.values()) == 5
    with Record(url, read_only=True, run_id=run_id) as record:
        assert len(record.trials()) == 5 and all(tr.status.finished for tr in record.trials())
    other = knob_task(tmp_path / "other")
    (other / "task.yaml").write_text((other / "task.yaml").read_text().replace("name: knob", "name: other"))
    with pytest.raises(RunError, match="is a run of task 'knob', not of 'other'"):
        run(other, run_dir=tmp_path / "c", settings=offline, record_url=url, join=run_id)
    with pytest.raises(RunError, match="holds no run 99"):
        run(own_task, run_dir=tmp_path / "d", settings=offline, record_url=url, join=99)
    with pytest.raises(RunError, match="--join RUN_ID needs --record URL"):
        run(own_task, run_dir=tmp_path / "e", settings=offline, join=run_id)


def test_runs_says_in_one_line_what_it_cannot_list(tmp_path: Path) -> None:
    cli = CliRunner()
    missing = tmp_path / "missing.db"
    done = cli.invoke(app, ["runs", "--record", f"sqlite:///{missing}"])
    assert done.exit_code == 2 and "no such file" in done.output and not missing.exists()
    (tmp_path / "empty.db").touch()
    done = cli.invoke(app, ["runs", "--record", f"sqlite:///{tmp_path / 'empty.db'}"])
    assert done.exit_code == 2 and "cannot read its runs" in done.output and "is it an evoforge record?" in done.output
    done = cli.invoke(app, ["runs", str(tmp_path / "nowhere")])
    assert done.exit_code == 2 and "no such folder" in done.output
