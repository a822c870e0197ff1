"""The research review: the deterministic agenda, the LLM's agenda against the fake server, and what a run's
review is given (from the population's indexes)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_llm import FakeLLM, Reply
from taskfactory import make_task

import evoforge
import evoforge.learning as learning_module
from evoforge.analysis import Agenda, write_agenda
from evoforge.analysis.review import parse_agenda
from evoforge.config import LLMSettings, RunSettings
from evoforge.learning import Learning
from evoforge.llm.client import LLMClient
from evoforge.memory.population import Population
from evoforge.models import Direction, Trial, TrialStatus

BEST = [
    Trial(id=7, status=TrialStatus.SUCCEEDED, name="wider margin", motivation="room at the border", score=2.61),
    Trial(id=4, status=TrialStatus.SUCCEEDED, name="hex grid", score=2.5),
    Trial(id=9, status=TrialStatus.FAILED, name="broken", error_class="timeout"),
]
LESSONS = [
    ("raising N 10→12 led to timeout", "Trial #5 timed out", 2),
    ("raising MARGIN_X 0.30→0.34 improved score by +0.021 (+1.7%)", "measured once", 3),
    ("hex start beats random start", "two runs agree", 1),
]
FAILURES = {"crash:ValueError": 1, "timeout": 4}


def agenda(client: LLMClient | None, previous: str | None = None) -> Agenda:
    return asyncio.run(
        write_agenda(client=client, problem="Pack 26 circles.", best=BEST, lessons=LESSONS,
                     failure_classes=FAILURES, previous=previous)
    )


def client_for(fake: FakeLLM) -> LLMClient:
    return LLMClient(model="fake", base_url=fake.base_url, api_key=None, settings=LLMSettings(max_retries=0))


def test_offline_agenda_from_the_data() -> None:
    result = agenda(None)
    assert result.source == "offline" and result.llm_calls == ()
    assert result.directions == [
        "build on #7 'wider margin' (score 2.61)",
        "build on #4 'hex grid' (score 2.5)",
        "raising MARGIN_X 0.30→0.34 improved score by +0.021 (+1.7%) (seen 3×)",
        "hex start beats random start",
    ]
    assert result.dead_ends == [
        "avoid: raising N 10→12 led to timeout (seen 2×)",
        "changes that cause timeout (4 trials so far)",
        "changes that cause crash:ValueError (1 trial so far)",
    ]
    assert result.text.startswith("## Directions\n- build on #7") and "## Dead ends\n- avoid: raising N" in result.text
    assert agenda(None) == result  # deterministic


def test_offline_agenda_with_no_data() -> None:
    empty = asyncio.run(write_agenda(client=None, problem="p", best=[], lessons=[], failure_classes={}, previous=None))
    assert empty.directions == [] and empty.dead_ends == [] and empty.text.count("(none yet)") == 2


def test_llm_agenda(fake_llm: FakeLLM) -> None:
    fake_llm.push(
        "Here is the agenda.\n\n## Directions\n- push MARGIN_X to 0.36\n2. combine hex start with wider margins\n\n"
        "**Dead ends:**\n* larger N: it times out\n"
    )
    result = agenda(client_for(fake_llm), previous="## Directions\n- try hex grids")
    assert result.source == "llm" and len(result.llm_calls) == 1 and result.llm_calls[0].role == "review"
    assert result.directions == ["push MARGIN_X to 0.36", "combine hex start with wider margins"]
    assert result.dead_ends == ["larger N: it times out"]
    assert result.text == (
        "## Directions\n- push MARGIN_X to 0.36\n- combine hex start with wider margins\n\n"
        "## Dead ends\n- larger N: it times out"
    )
    prompt = fake_llm.requests[0]["messages"][0]["content"]
    for part in ("Pack 26 circles.", "#7 \"wider margin\" (score 2.61)", "[3×] raising MARGIN_X", "timeout: 4",
                 "- try hex grids"):
        assert part in prompt, part
    assert "broken" not in prompt  # unscored trials are not shown as best


def test_llm_agenda_falls_back_when_unusable(fake_llm: FakeLLM) -> None:
    fake_llm.push("I cannot help with that.", Reply.error(400))
    offline = agenda(None)
    garbled = agenda(client_for(fake_llm))
    assert garbled.source == "offline" and garbled.text == offline.text and len(garbled.llm_calls) == 1
    failed = agenda(client_for(fake_llm))
    assert failed.source == "offline" and failed.directions == offline.directions
    assert failed.llm_calls[0].error and "400" in failed.llm_calls[0].error


def test_parse_agenda_caps_items() -> None:
    text = "## Directions\n" + "\n".join(f"- idea {i}" for i in range(20)) + "\n## Avoid\n- x"
    directions, dead_ends = parse_agenda(text)
    assert len(directions) == 6 and dead_ends == ["x"]


def test_the_population_counts_failure_classes_as_trials_are_written() -> None:
    population = Population(Direction.MAXIMIZE)
    population.put(Trial(id=1, status=TrialStatus.SUCCEEDED, name="seed", score=1.0))
    population.put(Trial(id=2, status=TrialStatus.FAILED, name="a", error_class="timeout"))
    population.put(Trial(id=3, status=TrialStatus.FAILED, name="b"))
    population.put(Trial(id=4, status=TrialStatus.RUNNING, name="c"))
    assert +population.failure_classes == {"timeout": 1, "unknown": 1}
    population.put(Trial(id=2, status=TrialStatus.FAILED, name="a", error_class="crash:ValueError"))  # rewritten
    population.put(Trial(id=4, status=TrialStatus.FAILED, name="c", error_class="timeout"))
    assert +population.failure_classes == {"crash:ValueError": 1, "unknown": 1, "timeout": 1}


def test_a_review_reads_the_populations_indexes_not_every_trial(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The review's best trials and failure classes come from the population's indexes: a review does not walk
    the whole population (a walk, and a sort of every scored trial, made the review's cost grow with the run).
    What it is given is what a walk would have found."""
    walks: list[int] = []
    reviewing: list[Population] = []
    given: list[tuple[list[int], dict[str, int], list[int], dict[str, int]]] = []
    iterate = Population.__iter__
    review = Learning.maybe_review
    real_write = learning_module.write_agenda

    def counted_iter(self: Population) -> Iterator[Trial]:
        if reviewing:
            walks.append(1)
        return iterate(self)

    async def watched_review(self: Learning, trials: Population, last_trial_id: int) -> None:
        reviewing.append(trials)
        try:
            await review(self, trials, last_trial_id)
        finally:
            reviewing.pop()

    async def seen_write(**kwargs: Any) -> Agenda:
        population = reviewing[-1]
        everyone = list(iterate(population))
        scored = sorted((t for t in everyone if t.scored), key=lambda t: (-float(t.score or 0.0), t.id))
        failed = Counter(t.error_class or "unknown" for t in everyone if t.status is TrialStatus.FAILED)
        given.append(([t.id for t in kwargs["best"]], dict(kwargs["failure_classes"]), [t.id for t in scored[:5]],
                      dict(failed)))
        return await real_write(**kwargs)

    monkeypatch.setattr(Population, "__iter__", counted_iter)
    monkeypatch.setattr(Learning, "maybe_review", watched_review)
    monkeypatch.setattr(learning_module, "write_agenda", seen_write)
    task = make_task(tmp_path / "task", extra_yaml="analysis: {review_every: 2}\n")
    evoforge.run(task, run_dir=tmp_path / "run", settings=RunSettings(trials=9, concurrency=1, llm="offline"))
    assert len(given) >= 3  # reviews were written
    assert walks == []
    for best, failures, expected_best, expected_failures in given:
        assert best == expected_best and failures == expected_failures
