"""The Proposer interface every researcher implements (the offline and the LLM proposer; `research.factory` picks
one for a run)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from evoforge.models import Proposal, Trial
from evoforge.research.context import ResearchContext


class Proposer(ABC):
    """Turns a research context into a proposal; the loop calls `propose` once per trial, concurrently."""

    name: str
    tunes_constants = False  # True for a proposer that only tunes constants: no novelty gate, no seed repair

    @abstractmethod
    async def propose(self, ctx: ResearchContext) -> Proposal:
        """A proposal built on `ctx.parent`; bad model output gives `Proposal(error=...)`, never raises."""

    def observe(self, trial: Trial, old: Trial | None, reward: float) -> None:
        """The loop reports each trial the record writes (`old`: as it stood before, None when new) with its reward
        (1 when it improved on its parent); only learners use it, from the facts their proposals carried."""
        return None

    def discard(self, proposal: Proposal) -> None:
        """`proposal` will not become a trial (the novelty gate asked again): a learner forgets the pick it made."""
        return None

    def rebuild(self, trials: Iterable[tuple[Trial, float]]) -> None:
        """Learn a run's trials again, with their rewards, on start and on resume (nothing else is saved)."""
        return None

    def unreachable(self) -> str | None:
        """Why the proposer's language models are out of reach (several calls in a row could not connect), or None;
        the loop stops the run on it rather than fail every trial left."""
        return None

    def summary(self) -> list[dict[str, Any]]:
        """Per-arm statistics of a learning proposer, for `evoforge status` ([] when there are none)."""
        return []

    async def aclose(self) -> None:
        """Release network clients and servers; the loop calls it once at the end of a run."""
        return None

