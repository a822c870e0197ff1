"""`make_analyzer`, which picks the LLM or the offline analyzer for a run the way `make_proposer` picks the
researcher, and the analyzer classes under one name."""

from __future__ import annotations

import os

from evoforge.analysis._base import Analysis, AnalysisInput, Analyzer
from evoforge.analysis.llm_analyzer import LLMAnalyzer
from evoforge.analysis.offline import OfflineAnalyzer
from evoforge.task.loader import Task

__all__ = ["Analysis", "AnalysisInput", "Analyzer", "LLMAnalyzer", "OfflineAnalyzer", "make_analyzer"]


def make_analyzer(task: Task, llm: str | None) -> Analyzer:
    """The analyzer for a run: `llm="offline"` → offline; a model name → that model; None → the task's
    `llm.model` or $EVOFORGE_MODEL when set, else offline (the same choice as `make_proposer`)."""
    if llm == "offline":
        return OfflineAnalyzer()
    model = llm or task.config.llm.model or os.environ.get("EVOFORGE_MODEL")
    if not model:
        return OfflineAnalyzer()
    from evoforge.llm.client import client_from_settings

    return LLMAnalyzer(task, client_from_settings(task.config.llm, model))
