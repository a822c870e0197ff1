"""The novelty gate as one object: a near-duplicate goes back to the researcher once with the trial it repeats,
and comes out NOT_NOVEL if it still is one; the loop records what the proposal's status says, never its text."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from taskfactory import make_task

import evoforge
from evoforge.config import RunSettings
from evoforge.learning import NoveltyGate
from evoforge.memory.record import Record
from evoforge.models import Proposal, ProposalStatus, Trial, TrialStatus
from evoforge.research import ResearchContext
from evoforge.research.offline import OfflineProposer

SEEN = Trial(id=7, status=TrialStatus.SUCCEEDED, score=1.0, name="seen", motivation="raise x by one",
             code="x = 1\ny = 2 * x\nprint(x + y)\n")


class Scripted:
    """A proposer answering from a list; records the contexts it was given."""

    name = "llm"
    tunes_constants = False

    def __init__(self, *answers: Proposal) -> None:
        self.answers, self.contexts, self.discarded = list(answers), [], []

    async def propose(self, ctx: Any) -> Proposal:
        self.contexts.append(ctx)
        return self.answers.pop(0)

    def discard(self, proposal: Proposal) -> None:
        self.discarded.append(proposal)


def _gate() -> NoveltyGate:
    task = SimpleNamespace(config=SimpleNamespace(analysis=SimpleNamespace(novelty_threshold=0.9)))

    async def off_loop(fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    return NoveltyGate(task, SimpleNamespace(encoder=None), None, off_loop)  # type: ignore[arg-type]


def _ctx() -> ResearchContext:
    return ResearchContext(problem="p", program_name="program.py", metric="score", direction="maximize",
                           parent=SEEN)  # type: ignore[arg-type]


def _same(error: str | None = None) -> Proposal:
    return Proposal(name="again", motivation=SEEN.motivation, code=SEEN.code, proposer="llm", error=error)


def test_a_repeat_is_shown_the_trial_once_then_refused_with_a_status() -> None:
    proposer = Scripted(_same(), _same())
    proposal = asyncio.run(_gate().screen(proposer, _ctx(), [SEEN]))  # type: ignore[arg-type]
    assert proposal.status is ProposalStatus.NOT_NOVEL and "trial #7" in (proposal.error or "")
    assert [c.near_duplicate for c in proposer.contexts] == [None, SEEN]
    assert proposer.discarded == [_same()]  # the first answer becomes no trial: its pick is forgotten
    fresh = Proposal(name="new", motivation="something else", code="print('different')\n", proposer="llm")
    second_try = Scripted(_same(), fresh)
    assert asyncio.run(_gate().screen(second_try, _ctx(), [SEEN])) == fresh  # type: ignore[arg-type]


def test_failed_proposals_and_constant_tuners_pass_unchecked() -> None:
    failed = _same(error="unparseable answer")
    assert failed.status is ProposalStatus.FAILED  # an error without a status is a failure
    assert asyncio.run(_gate().screen(Scripted(failed), _ctx(), [SEEN])) == failed  # type: ignore[arg-type]
    tuner = Scripted(_same())
    tuner.tunes_constants = True
    assert asyncio.run(_gate().screen(tuner, _ctx(), [SEEN])).status is ProposalStatus.READY  # type: ignore[arg-type]
    assert OfflineProposer.tunes_constants


def test_the_loop_records_the_status_not_the_text(tmp_path: Path, monkeypatch: Any) -> None:
    """A NOT_NOVEL proposal whose message says nothing of novelty is still a rejected trial, and a FAILED one
    whose message starts with "not novel" a failed one."""
    answers = iter([ProposalStatus.NOT_NOVEL, ProposalStatus.FAILED])

    async def screen(self: NoveltyGate, proposer: Any, ctx: Any, evaluated: Any) -> Proposal:
        status = next(answers)
        return Proposal(name="x", motivation="m", code="x = 5.0\n", proposer="llm", status=status,
                        error="not novel: a message that lies" if status is ProposalStatus.FAILED else "refused")

    monkeypatch.setattr(NoveltyGate, "screen", screen)
    run_dir = tmp_path / "run"
    evoforge.run(make_task(tmp_path / "task"), run_dir=run_dir,
                 settings=RunSettings(trials=3, concurrency=1, prefetch=0, seed=0))
    with Record.for_run_dir(run_dir, read_only=True) as record:
        trials = record.trials()
    assert [(t.status, t.error_class) for t in trials[1:]] == [
        (TrialStatus.REJECTED, "rejected:not_novel"), (TrialStatus.FAILED, "proposal_error")]
