"""The loop end to end through the public API, against the loopback fake LLM: every trial, call and digest recorded."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest
from fake_llm import FakeLLM, Reply
from taskfactory import make_task

import evoforge
from evoforge.config import RunSettings
from evoforge.errors import RunError
from evoforge.memory.record import Record
from evoforge.models import Direction, TrialStatus


def _edit(step: float) -> str:
    return (
        f"NAME: nudge x by {step}\nMOTIVATION: moving x toward 3 should raise the score\n"
        f"<<<<<<< SEARCH\n# knob\n=======\n# knob\nx = x + {step}\n>>>>>>> REPLACE\n"
    )


BAD_EDIT = (
    "NAME: bad\nMOTIVATION: an edit whose SEARCH text is not in the program\n"
    "<<<<<<< SEARCH\ny = 42\n=======\ny = 43\n>>>>>>> REPLACE\n"
)


class ScriptedResearcher:
    """Answers by the request: a repair prompt gets a good edit; otherwise a fixed rotation of answer kinds.
    Until two requests have been in flight at once, a request waits (at most `overlap_wait_s`) for another to
    arrive: proposals that can overlap then do, however busy the machine; ones that cannot leave max_in_flight at 1.
    (The run's first proposal and its repair come alone: they wait in full, once.)"""

    def __init__(self, overlap_wait_s: float = 5.0) -> None:
        self.n = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.overlap_wait_s = overlap_wait_s
        self.overlapped = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> str | Reply:
        with self.lock:
            self.n += 1
            n = self.n
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.in_flight >= 2:
                self.overlapped.set()
        try:
            self.overlapped.wait(self.overlap_wait_s)  # the server thread, not the test
            text = " ".join(m["content"] for m in body["messages"])
            if re.search(r"did not apply|not found|no match|could not", text, re.I) and n % 7 != 0:
                return _edit(0.25)
            kind = n % 5
            if kind == 1:
                return BAD_EDIT  # needs the repair round
            if kind == 2:
                return "I am not sure what to do here."  # garbage: repair, then maybe garbage again
            return _edit(0.5 if kind == 3 else 0.1)
        finally:
            with self.lock:
                self.in_flight -= 1


def test_llm_run_records_every_trial_call_and_digest(tmp_path: Path, fake_llm: FakeLLM) -> None:
    task = make_task(tmp_path / "task", extra_yaml=f"llm: {{base_url: '{fake_llm.base_url}', max_retries: 3}}\n")
    fake_llm.push(Reply.error(429, retry_after="0"))  # the very first call is rate limited, then succeeds
    researcher = ScriptedResearcher()
    fake_llm.set_handler(researcher)
    settings = RunSettings(trials=12, concurrency=3, llm="fake-model", seed=1)
    summary = evoforge.run(task, run_dir=tmp_path / "run", settings=settings)

    assert summary.proposer.startswith("llm")
    record = Record.for_run_dir(tmp_path / "run")
    trials = record.trials()
    assert [t.id for t in trials] == list(range(1, 13))
    assert all(t.status.finished for t in trials)
    seed = trials[0]
    assert seed.proposer == "seed" and seed.score == pytest.approx(-4.0)
    for trial in trials[1:]:
        assert trial.parent_ids and trial.model == "fake-model"
        calls = record.llm_calls(trial.id)
        assert calls, f"trial {trial.id} has no recorded LLM call"
        assert all(c.tokens_in > 0 for c in calls if c.error is None)
        if trial.status is TrialStatus.FAILED and trial.error_class == "proposal_error":
            assert trial.error_message and [c.role for c in calls][-1] == "repair"
        else:
            assert trial.status is TrialStatus.SUCCEEDED and trial.digest and trial.diff.startswith("---")
    assert any(c.role == "repair" for c in record.llm_calls())
    best = record.best(Direction.MAXIMIZE)
    assert best is not None and best.score is not None and best.score > -4.0
    assert researcher.max_in_flight >= 2, "proposals never overlapped although concurrency is 3"
    assert len(fake_llm.requests) == len(record.llm_calls()) + 1  # + the 429 answer, which was retried
    record.close()


def test_offline_run_improves_and_resume_extends(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task")
    settings = RunSettings(trials=15, concurrency=2, llm="offline")
    summary = evoforge.run(task, run_dir=tmp_path / "run", settings=settings)
    assert summary.proposer.startswith("offline")
    assert summary.best is not None and summary.best.score > -4.0
    assert sum(summary.counts.values()) == 15
    more = evoforge.resume(tmp_path / "run", trials=20)
    assert sum(more.counts.values()) == 20
    assert more.best is not None and more.best.score >= summary.best.score


def test_target_score_stops_early(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task")
    summary = evoforge.run(
        task, run_dir=tmp_path / "run",
        settings=RunSettings(trials=200, concurrency=1, llm="offline", target_score=-3.9),
    )
    assert "target" in summary.stop_reason
    assert sum(summary.counts.values()) < 200


def test_existing_run_dir_is_refused(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task")
    evoforge.run(task, run_dir=tmp_path / "run", settings=RunSettings(trials=2, llm="offline"))
    with pytest.raises(RunError, match="already holds a run"):
        evoforge.run(task, run_dir=tmp_path / "run", settings=RunSettings(trials=2, llm="offline"))
