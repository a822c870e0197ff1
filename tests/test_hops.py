"""Hand-offs from the event loop to another thread (the record's and the cognition base's `HandOff`s, any
executor) per trial: each costs the loop a put, a wake-up and a turn. Calls that follow each other in one step go in
one hand-off: a trial's lessons together, a review's agenda with its LLM calls."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from taskfactory import make_task

import evoforge
from evoforge.analysis import Lesson
from evoforge.analysis.offline import OfflineAnalyzer
from evoforge.config import RunSettings
from evoforge.hand_off import HandOff
from evoforge.memory.record import Record

TRIALS = 13  # the seed and 12 proposals: two or three reviews at review_every 4


def _handed(fn: Callable[..., Any]) -> str:
    """What a hand-off runs: the record call inside `Record.io`'s wrapper, the function of a partial."""
    fn = getattr(fn, "func", fn)
    code = getattr(fn, "__code__", None)
    if code is not None and "fn" in code.co_freevars and fn.__closure__:  # Record.io's `work`
        fn = fn.__closure__[code.co_freevars.index("fn")].cell_contents
    return getattr(fn, "__name__", repr(fn))


def hops_of_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Counter[str], Counter[str], int, int]:
    """An offline run (concurrency 1, a review every 4 trials, two lessons per analysis): its hand-offs by thread,
    and by thread and function; the trials analysed (a reused duplicate is not) and the reviews written."""
    by_thread: Counter[str] = Counter()
    by_call: Counter[str] = Counter()
    submit = ThreadPoolExecutor.submit

    def counting(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        thread = self._thread_name_prefix or "executor"  # type: ignore[attr-defined]
        by_thread[thread] += 1
        by_call[f"{thread}:{_handed(fn)}"] += 1
        return submit(self, fn, *args, **kwargs)

    analyze = OfflineAnalyzer.analyze

    async def two_lessons(self: OfflineAnalyzer, inp: Any) -> Any:
        analysis = await analyze(self, inp)
        extra = Lesson(title=f"trial {inp.trial.id} note", content=f"x moved at trial {inp.trial.id}",
                       trigger="always", effect_sign=0)
        return dataclasses.replace(analysis, lessons=(*analysis.lessons, extra)[-2:] if analysis.lessons
                                   else (extra, dataclasses.replace(extra, title=f"{extra.title} again")))

    call = HandOff.call

    async def counting_call(self: HandOff, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        by_thread[self.name] += 1
        by_call[f"{self.name}:{_handed(fn)}"] += 1
        return await call(self, fn, *args, **kwargs)

    monkeypatch.setattr(OfflineAnalyzer, "analyze", two_lessons)
    monkeypatch.setattr(ThreadPoolExecutor, "submit", counting)
    monkeypatch.setattr(HandOff, "call", counting_call)
    try:
        evoforge.run(make_task(tmp_path / "task", extra_yaml="analysis: {review_every: 4}\n"),
                     run_dir=tmp_path / "run", settings=RunSettings(trials=TRIALS, concurrency=1, llm="offline"))
    finally:
        monkeypatch.undo()
    with Record.for_run_dir(tmp_path / "run") as record:
        trials = record.trials()
        kinds = Counter(a.kind for t in trials for a in record.analyses(t.id))
        reviews = len(record.agendas())
    assert len(trials) == TRIALS and all(t.status.finished for t in trials)
    assert kinds["lesson"] == 2 * kinds["analysis"] and kinds["analysis"] >= 8 and reviews >= 2  # all done
    return by_thread, by_call, kinds["analysis"], reviews


def test_hand_offs_per_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    by_thread, by_call, analysed, reviews = hops_of_a_run(tmp_path, monkeypatch)
    # a trial's lessons go to the cognition base in one hand-off (one per lesson before), and a review's agenda
    # and its calls to the record in one (two before)
    assert by_call["cognition:_add_lessons"] == analysed and by_call["cognition:add_lesson"] == 0
    assert by_call["record:_write_agenda"] == reviews and by_call["record:add_agenda"] == 0
    # a parent's analysis is not read back in a run of one runner: written by it (and kept), or yet to be written
    assert by_call["record:latest_analysis"] == 0, by_call
    # per trial: the record's proposal write, start, commit and analysis write; the base's retrieval and lessons
    per_trial = ("record:_write_proposal", "record:_start", "record:_commit", "record:_write_analysis",
                 "cognition:_retrieve", "cognition:_add_lessons")
    assert sum(by_call[name] for name in per_trial) <= 6 * TRIALS, by_call
    # the rest: once a run (its start and end), once a review, once a new best (the champion's decision): a hand-off
    # added to every trial would show here
    rest = {name: n for name, n in by_call.items() if name not in per_trial and name != "record:add_champion_decision"}
    assert sum(rest.values()) <= 8 + 2 * reviews, rest
    assert sum(by_thread.values()) - by_call["record:add_champion_decision"] <= 6.5 * TRIALS, by_call
