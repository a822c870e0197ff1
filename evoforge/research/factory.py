"""`make_proposer`: the researcher of a run — the LLM ensemble, the small local model, or the offline proposer — with
the models the one resolver (`evoforge.config.choose_models`) picks."""

from __future__ import annotations

from evoforge.config import choose_models
from evoforge.llm.ensemble import Ensemble
from evoforge.llm.local import LocalModelServer, smollm2_gguf
from evoforge.research.base import Proposer
from evoforge.research.llm_proposer import LLMProposer
from evoforge.research.offline import OfflineProposer
from evoforge.task.loader import Task


def make_proposer(task: Task, llm: str | None, *, seed: int | None = None) -> Proposer:
    """The proposer for a run: `llm="offline"` (or no model anywhere) → offline proposer; `"local"` → the small
    local model (evoforge[local-llm]); otherwise an LLM proposer with the chosen models (an ensemble when several).
    The caller reports which."""
    settings = task.config.llm
    choice = choose_models(settings, llm)
    if choice.mode == "offline":
        return OfflineProposer(seed=seed)
    if choice.mode == "local":
        (spec,) = choice.researcher
        server = LocalModelServer(smollm2_gguf())
        ensemble = Ensemble.from_settings(settings, [spec], seed=seed or 0, clients=False)
        return LLMProposer(task, ensemble=ensemble, server=server, server_spec=spec, seed=seed)
    return LLMProposer(task, ensemble=Ensemble.from_settings(settings, choice.researcher, seed=seed or 0), seed=seed)
