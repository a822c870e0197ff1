"""Issue 5 through `evoforge run`: two fake models with a bandit, islands and a dollar budget; a 30% fault rate;
crossover proposals with two parents. Everything against the loopback fake LLM."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from fake_llm import FakeLLM, Reply
from taskfactory import make_task

import evoforge
from evoforge.config import RunSettings
from evoforge.memory.record import Record
from evoforge.models import TrialStatus

CLI = [sys.executable, "-m", "evoforge.cli"]
SCORE = re.compile(r"score = (-?[0-9.]+)")


def edit(step: float, tag: str) -> str:
    return (f"NAME: step {step} ({tag})\nMOTIVATION: move x by {step} because {tag} {random.random():.9f}\n"
            f"<<<<<<< SEARCH\n# knob\n=======\n# knob\nx = x + {step}\n>>>>>>> REPLACE\n")


def research_or_other(body: dict[str, Any]) -> str | None:
    """Answers for the non-researcher roles (analysis JSON, judge, review), None for a researcher prompt."""
    text = " ".join(m["content"] for m in body["messages"])
    if "VERDICT" in text:
        return "VERDICT: NOVEL"
    if "SEARCH" not in text and "JSON" in text:
        return json.dumps({"what_changed": "x moved", "what_happened": "the score moved", "why": "hypothesis: x",
                           "lesson": "", "trigger": "", "lessons": []})
    return None


def test_two_models_islands_and_a_dollar_budget(tmp_path: Path, fake_llm: FakeLLM) -> None:
    def answer(body: dict[str, Any]) -> str:
        other = research_or_other(body)
        if other is not None:
            return other
        good = body["model"].endswith("good")
        return edit(0.2 if good else -0.7, body["model"])

    fake_llm.set_handler(answer)
    url = fake_llm.base_url
    task = make_task(tmp_path / "task", extra_yaml=(
        "analysis: {novelty_threshold: 1.0, review_every: 0}\n"
        "research: {sampler: islands, islands: {count: 2, migration_interval: 4, migration_rate: 0.5}}\n"
        f"llm:\n  max_retries: 0\n  bandit: {{policy: ucb1}}\n  models:\n"
        f"    - {{name: fake/good, base_url: '{url}', price_in: 100.0, price_out: 200.0}}\n"
        f"    - {{name: fake/bad, base_url: '{url}', price_in: 100.0, price_out: 200.0}}\n"
    ))
    cap = 0.6
    out = subprocess.run([*CLI, "run", str(task), "--run-dir", str(tmp_path / "run"), "--trials", "60",
                          "--concurrency", "1", "--prefetch", "0", "--budget-usd", str(cap)],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert "dollar budget" in out.stdout
    status = json.loads(subprocess.run([*CLI, "status", str(tmp_path / "run"), "--json"], capture_output=True,
                                       text=True, check=True).stdout)
    spent = status["llm_cost_usd"]
    priced = [c for c in Record.for_run_dir(tmp_path / "run").llm_calls() if c.cost_usd > 0]
    largest = max(c.cost_usd for c in priced)
    assert spent <= cap + largest, f"spent {spent} over the cap {cap} by more than one call ({largest})"
    assert status["total"] < 60 and "dollar budget" in status["stopped_because"]
    assert set(status["spend_by_model"]) >= {"fake/good", "fake/bad"}
    assert status["spend_by_role"]["researcher"]["calls"] >= status["total"] - 1
    good, bad = status["models"]["fake/good"], status["models"]["fake/bad"]
    assert good["improved"] > 0 and bad["improved"] == 0
    assert good["proposed"] > bad["proposed"], status["models"]  # the bandit moved traffic to the good model
    with Record.for_run_dir(tmp_path / "run") as record:
        picked = [t for t in record.trials() if t.facts.get("sampler") == "islands"]
        assert len(picked) >= status["total"] - 1  # every trial but the seed carries its pick's facts
        assert all(t.facts["island"] in (0, 1) and t.facts["arm"] == f"{t.model}@{t.facts['temperature']:g}"
                   and isinstance(t.facts["turn"], int) and isinstance(t.facts["arm_turn"], int)
                   for t in picked if t.model)  # the sampler's turn and the bandit's, side by side
        assert record.load_state("sampler") is None and record.load_state("bandit") is None  # no blob beside them
    table = subprocess.run([*CLI, "status", str(tmp_path / "run")], capture_output=True, text=True, check=True).stdout
    assert "model fake/good" in table and "improved on their parent" in table and "dollar budget" in table


class Faulty:
    """A fake that fails 30% of researcher calls in rotating ways: 429 with Retry-After, 500, a timeout,
    truncated JSON, an empty answer."""

    def __init__(self) -> None:
        self.rng, self.lock, self.faults = random.Random(7), threading.Lock(), 0

    def __call__(self, body: dict[str, Any]) -> str | Reply:
        other = research_or_other(body)
        if other is not None:
            return other
        with self.lock:
            fault = self.rng.random() < 0.3
            kind = self.rng.randrange(5)
            self.faults += fault
        if not fault:
            return edit(round(self.rng.uniform(0.05, 0.4), 3), "steady")
        return [
            Reply.error(429, retry_after="0"),
            Reply.error(500),
            Reply.text("too late", delay_s=3.0),  # beyond llm.timeout_s
            Reply(status=200, body='{"id": "x", "choices": [{"message": {"content": "NAME'),  # truncated JSON
            Reply.text(""),  # an empty answer
        ][kind]


def test_thirty_percent_faults_still_account_for_every_trial(tmp_path: Path, fake_llm: FakeLLM) -> None:
    faulty = Faulty()
    fake_llm.set_handler(faulty)
    task = make_task(tmp_path / "task", extra_yaml=(
        "analysis: {novelty_threshold: 1.0, review_every: 0}\n"
        f"llm: {{base_url: '{fake_llm.base_url}', max_retries: 2, timeout_s: 1.0, deadline_s: 20}}\n"
    ))
    summary = evoforge.run(task, run_dir=tmp_path / "run", settings=RunSettings(trials=16, concurrency=2,
                                                                              llm="fake-model"))
    assert faulty.faults >= 3
    with Record.for_run_dir(tmp_path / "run") as record:
        trials = record.trials()
        assert [t.id for t in trials] == list(range(1, 17)) and all(t.status.finished for t in trials)
        for trial in trials[1:]:
            assert record.llm_calls(trial.id), f"trial {trial.id} has no recorded call"
            if trial.status is TrialStatus.FAILED:
                assert trial.error_class and trial.error_message
        recorded = record.llm_calls()
    # faults were absorbed by retries (more requests reached the server than calls were recorded) or recorded
    # as failed calls; either way no trial went missing
    assert len(fake_llm.requests) > len(recorded) or any(c.error for c in recorded)
    assert sum(c.retries for c in recorded) > 0  # the absorbed faults are on the record
    assert sum(summary.counts.values()) == 16 and summary.best is not None and summary.best.score > -4.0


def test_crossover_proposals_record_both_parents(tmp_path: Path, fake_llm: FakeLLM) -> None:
    def answer(body: dict[str, Any]) -> str:
        other = research_or_other(body)
        return other if other is not None else edit(round(random.uniform(0.05, 0.3), 4), "cross")

    fake_llm.set_handler(answer)
    task = make_task(tmp_path / "task", extra_yaml=(
        "analysis: {novelty_threshold: 1.0, review_every: 0}\n"
        "research: {patch_types: {diff: 0.0, crossover: 1.0}, num_inspirations: 1}\n"
        f"llm: {{base_url: '{fake_llm.base_url}', max_retries: 0}}\n"
    ))
    evoforge.run(task, run_dir=tmp_path / "run", settings=RunSettings(trials=8, concurrency=1, llm="fake-model"))
    with Record.for_run_dir(tmp_path / "run") as record:
        crossed = [t for t in record.trials() if len(t.parent_ids) == 2]
    assert crossed, "no trial recorded two parents"
    assert all(t.parent_ids[1] in t.inspiration_ids for t in crossed)
    prompts = [" ".join(m["content"] for m in r["messages"]) for r in fake_llm.requests]
    assert any("rossover" in p or "combine" in p.lower() for p in prompts)
