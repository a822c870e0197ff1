"""The offline proposer: tunes numeric literals only, never repeats the parent, seeded, adaptive steps."""

from __future__ import annotations

import ast
import asyncio
import io
import tokenize
from collections import Counter
from collections.abc import Sequence

import pytest

from evoforge.models import Direction, Proposal, Trial, TrialStatus
from evoforge.programs import find_literals
from evoforge.research import OfflineProposer, ResearchContext
from evoforge.research.offline import BASE_SCALE, step_scale

PARENT = """#!/usr/bin/env python
import math

ALPHA = 0.35
BETA = 2.5e-3
STEPS = 10


def run(lr=0.0):
    total = 0.0
    for i in range(STEPS):
        total += ALPHA * math.sin(i * 1.5) - BETA + lr
    return total


print(run())
"""


def trial(id: int, code: str = PARENT, score: float | None = 1.0, **kw: object) -> Trial:
    status = TrialStatus.SUCCEEDED if score is not None else TrialStatus.FAILED
    return Trial(id=id, status=status, code=code, score=score, **kw)  # type: ignore[arg-type]


def ctx(
    parent: Trial | None = None,
    inspirations: Sequence[Trial] = (),
    recent: Sequence[Trial] = (),
    direction: Direction = Direction.MAXIMIZE,
) -> ResearchContext:
    return ResearchContext(
        problem="p",
        program_name="program.py",
        metric="score",
        direction=direction,
        parent=parent or trial(1),
        inspirations=inspirations,
        recent=recent,
    )


def proposals(proposer: OfflineProposer, context: ResearchContext, n: int) -> list[Proposal]:
    async def go() -> list[Proposal]:
        return [await proposer.propose(context) for _ in range(n)]

    return asyncio.run(go())


def skeleton(code: str) -> list[tuple[int, str]]:
    """The token stream with every number blanked out."""
    tokens = tokenize.generate_tokens(io.StringIO(code).readline)
    return [(t.type, "N" if t.type == tokenize.NUMBER else t.string) for t in tokens]


def test_changes_only_literals_and_never_the_parents_code() -> None:
    results = proposals(OfflineProposer(seed=0), ctx(), 200)
    for proposal in results:
        assert proposal.error is None and proposal.proposer == "offline"
        assert proposal.code != PARENT
        ast.parse(proposal.code)
        assert skeleton(proposal.code) == skeleton(PARENT)
        pairs = zip(find_literals(PARENT), find_literals(proposal.code), strict=True)
        changed = sum(a.text != b.text for a, b in pairs)
        assert 1 <= changed <= 3
        assert proposal.name.startswith("tune: ") and "→" in proposal.name
        assert "design changes need an LLM" in proposal.motivation
    assert len({p.code for p in results}) > 150


def test_ints_move_rarely_by_one_and_stay_positive() -> None:
    results = proposals(OfflineProposer(seed=1), ctx(), 300)
    int_changes = 0
    for proposal in results:
        new = {lit.label: lit for lit in find_literals(proposal.code) if not lit.is_float}
        old = {lit.label: lit for lit in find_literals(PARENT) if not lit.is_float}
        assert new.keys() == old.keys()
        if new["STEPS"].value != old["STEPS"].value:
            int_changes += 1
            assert new["STEPS"].value in (9, 11)
    assert 5 <= int_changes <= 60  # about 10% of proposals (crossover aside)


def test_only_ints_and_one_stays_positive() -> None:
    parent = trial(1, code="N = 1\nprint(N)\n")
    results = proposals(OfflineProposer(seed=2), ctx(parent), 20)
    assert {p.code for p in results} == {"N = 2\nprint(N)\n"}


@pytest.mark.parametrize(
    ("code", "message"),
    [("print('hello')\n", "no numeric literals"), ("def f(:\n  x = (1.5\n", "not tokenizable")],
)
def test_nothing_to_tune_is_an_error(code: str, message: str) -> None:
    (proposal,) = proposals(OfflineProposer(seed=0), ctx(trial(1, code=code)), 1)
    assert proposal.error is not None and message in proposal.error and proposal.code == ""


def test_reproducible_with_a_seed() -> None:
    first = [p.code for p in proposals(OfflineProposer(seed=42), ctx(), 30)]
    again = [p.code for p in proposals(OfflineProposer(seed=42), ctx(), 30)]
    other = [p.code for p in proposals(OfflineProposer(seed=43), ctx(), 30)]
    assert first == again
    assert first != other


def test_crossover_takes_literals_from_an_inspiration() -> None:
    mate_code = PARENT.replace("0.35", "0.9").replace("2.5e-3", "0.125")
    mate = trial(5, code=mate_code, score=2.0)
    wrong_shape = trial(6, code="X = 1.0\n")
    results = proposals(OfflineProposer(seed=3), ctx(inspirations=(wrong_shape, mate)), 100)
    crossed = [p for p in results if p.name.startswith("crossover with #5")]
    assert 8 <= len(crossed) <= 40  # about 20%
    for proposal in crossed:
        assert proposal.code in {
            PARENT.replace("0.35", "0.9"),
            PARENT.replace("2.5e-3", "0.125"),
            mate_code,
        }
    assert not any("#6" in p.name for p in results)


def test_step_scale_follows_the_one_fifth_rule() -> None:
    parent = trial(1, score=1.0)

    def child(id: int, score: float | None, proposer: str = "offline") -> Trial:
        return trial(id, score=score, parent_ids=(1,), proposer=proposer)

    assert step_scale(ctx(parent)) == BASE_SCALE
    wins = [child(i, 2.0) for i in range(2, 6)]
    losses = [child(i, 0.5) for i in range(2, 6)] + [child(9, None)]
    assert step_scale(ctx(parent, recent=wins)) > BASE_SCALE
    assert step_scale(ctx(parent, recent=losses)) < BASE_SCALE
    one_in_five = [child(2, 2.0)] + [child(i, 0.5) for i in range(3, 7)]
    assert step_scale(ctx(parent, recent=one_in_five)) == pytest.approx(BASE_SCALE)
    assert step_scale(ctx(parent, recent=[child(2, 2.0, proposer="llm")])) == BASE_SCALE
    assert step_scale(ctx(parent, recent=losses[:4], direction=Direction.MINIMIZE)) > BASE_SCALE


def test_step_scale_sets_the_size_of_changes() -> None:
    parent = trial(1, code="X = 1.0\n")
    big = ctx(parent, recent=[trial(i, score=5.0, parent_ids=(1,), proposer="offline") for i in range(2, 12)])
    small = ctx(
        parent, recent=[trial(i, score=0.0, parent_ids=(1,), proposer="offline") for i in range(2, 40)]
    )

    def spread(context: ResearchContext) -> float:
        values = [find_literals(p.code)[0].value for p in proposals(OfflineProposer(seed=4), context, 100)]
        return sum(abs(v - 1.0) for v in values) / len(values)

    assert spread(big) > 5 * spread(small)


def test_named_constants_are_found_and_preferred() -> None:
    constants = {lit.label for lit in find_literals(PARENT) if lit.constant}
    assert constants == {"ALPHA", "BETA", "STEPS"}
    changed: Counter[str] = Counter()
    for proposal in proposals(OfflineProposer(seed=5), ctx(), 200):
        for old, new in zip(find_literals(PARENT), find_literals(proposal.code), strict=True):
            if new.text != old.text:
                changed["constant" if old.constant else "buried"] += 1
    assert changed["constant"] > 3 * changed["buried"] > 0
