"""The Proposer interface every researcher implements (the offline and the LLM proposer; `research.factory` picks
one for a run)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from evoforge.models import Proposal
from evoforge.research.context import ResearchContext


class Proposer(ABC):
    """Turns a research context into a proposal; the loop calls `propose` once per trial, concurrently."""

    name: str

    @abstractmethod
    async def propose(self, ctx: ResearchContext) -> Proposal:
        """A proposal built on `ctx.parent`; bad model output gives `Proposal(error=...)`, never raises."""

    def observe(self, trial_model: str | None, temperature: float | None, reward: float, cost_usd: float) -> None:
        """The loop reports a finished trial's reward (improvement over its parent); only learners use it."""
        return None

    def unreachable(self) -> str | None:
        """Why the proposer's language models are out of reach (several calls in a row could not connect), or None;
        the loop stops the run on it rather than fail every trial left."""
        return None

    def state_dict(self) -> dict[str, Any] | None:
        """State to keep in the record for resume (None: nothing to keep)."""
        return None

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()` output saved by an earlier session of the run."""
        return None

    def summary(self) -> list[dict[str, Any]]:
        """Per-arm statistics of a learning proposer, for `evoforge status` ([] when there are none)."""
        return []

    async def aclose(self) -> None:
        """Release network clients and servers; the loop calls it once at the end of a run."""
        return None

