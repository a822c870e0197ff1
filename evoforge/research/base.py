"""The Proposer interface every researcher implements, and `make_proposer`, which picks LLM ensemble, local model
or offline."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from evoforge.models import Proposal, Trial
from evoforge.research.context import ResearchContext
from evoforge.task.loader import Task


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


def make_proposer(task: Task, llm: str | None, *, seed: int | None = None) -> Proposer:
    """The proposer for a run, with the models `evoforge.llm.choice.choose_models` picks for the researcher:
    `llm="offline"` (or no model anywhere) → offline proposer; `"local"` → the small local model
    (evoforge[local-llm]); otherwise an LLM proposer with those models (an ensemble when several). The caller
    reports which."""
    from evoforge.llm.choice import choose_models
    from evoforge.research.offline import OfflineProposer

    settings = task.config.llm
    choice = choose_models(settings, llm)
    if choice.mode == "offline":
        return OfflineProposer(seed=seed)
    from evoforge.llm.ensemble import Ensemble
    from evoforge.research.llm_proposer import LLMProposer

    if choice.mode == "local":
        from evoforge.llm.local import LocalModelServer, local_spec, smollm2_gguf

        spec = local_spec(settings)
        server = LocalModelServer(smollm2_gguf())
        ensemble = Ensemble.from_settings(settings, [spec], seed=seed or 0, clients=False)
        return LLMProposer(task, ensemble=ensemble, server=server, server_spec=spec, seed=seed)
    return LLMProposer(task, ensemble=Ensemble.from_settings(settings, choice.researcher, seed=seed or 0), seed=seed)
