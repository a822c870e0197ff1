"""The Proposer interface every researcher implements, and `make_proposer`, which picks LLM or offline."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

from evoforge.models import Proposal
from evoforge.research.context import ResearchContext
from evoforge.task.loader import Task


class Proposer(ABC):
    """Turns a research context into a proposal; the loop calls `propose` once per trial, concurrently."""

    name: str

    @abstractmethod
    async def propose(self, ctx: ResearchContext) -> Proposal:
        """A proposal built on `ctx.parent`; bad model output gives `Proposal(error=...)`, never raises."""

    async def aclose(self) -> None:
        """Release network clients; the loop calls it once at the end of a run."""
        return None


def make_proposer(task: Task, llm: str | None, *, seed: int | None = None) -> Proposer:
    """The proposer for a run.

    `llm="offline"` → offline proposer; a model name → LLM proposer with that model; None → the task's
    `llm.model` or $EVOFORGE_MODEL when set, else the offline proposer. The caller reports which is in force.
    """
    from evoforge.research.offline import OfflineProposer

    if llm == "offline":
        return OfflineProposer(seed=seed)
    model = llm or task.config.llm.model or os.environ.get("EVOFORGE_MODEL")
    if not model:
        return OfflineProposer(seed=seed)
    from evoforge.llm.client import client_from_settings
    from evoforge.research.llm_proposer import LLMProposer

    return LLMProposer(task, client_from_settings(task.config.llm, model))
