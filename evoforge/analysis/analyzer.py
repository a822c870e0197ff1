"""`make_analyzer`, which picks the LLM or the offline analyzer for a run the way `make_proposer` picks the
researcher, and the analyzer classes under one name."""

from __future__ import annotations

from evoforge.analysis._base import Analysis, AnalysisInput, Analyzer
from evoforge.analysis.llm_analyzer import LLMAnalyzer
from evoforge.analysis.offline import OfflineAnalyzer
from evoforge.config import choose_models
from evoforge.llm.client import client_for_spec
from evoforge.task.loader import Task

__all__ = ["Analysis", "AnalysisInput", "Analyzer", "LLMAnalyzer", "OfflineAnalyzer", "make_analyzer"]


def make_analyzer(task: Task, llm: str | None) -> Analyzer:
    """The analyzer for a run: the LLM analyzer on the single-model roles' model that
    `evoforge.config.choose_models` picks for `llm` and the task, else (no such model) the offline one."""
    chosen = choose_models(task.config.llm, llm).single
    if chosen is None:
        return OfflineAnalyzer()
    return LLMAnalyzer(task, client_for_spec(chosen, task.config.llm))
