"""The Analyzer: turns an outcome into a digest (deterministic), a causal analysis and lessons, and writes the
research agenda; names are loaded on first use, so task.config can import `analysis.settings` without a cycle."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from evoforge.analysis.digest import digest_outcome

if TYPE_CHECKING:
    from evoforge.analysis._base import Analysis, AnalysisInput, Analyzer
    from evoforge.analysis.analyzer import make_analyzer
    from evoforge.analysis.condense import condense_log, summarize_curves
    from evoforge.analysis.lessons import Lesson, offline_lesson
    from evoforge.analysis.llm_analyzer import LLMAnalyzer
    from evoforge.analysis.novelty import judge_novelty, proposal_similarity, text_similarity
    from evoforge.analysis.offline import OfflineAnalyzer
    from evoforge.analysis.review import Agenda, write_agenda
    from evoforge.analysis.settings import AnalysisSettings

_WHERE = {
    "Agenda": "review",
    "Analysis": "_base",
    "AnalysisInput": "_base",
    "AnalysisSettings": "settings",
    "Analyzer": "_base",
    "LLMAnalyzer": "llm_analyzer",
    "Lesson": "lessons",
    "OfflineAnalyzer": "offline",
    "condense_log": "condense",
    "judge_novelty": "novelty",
    "make_analyzer": "analyzer",
    "offline_lesson": "lessons",
    "proposal_similarity": "novelty",
    "summarize_curves": "condense",
    "text_similarity": "novelty",
    "write_agenda": "review",
}

__all__ = [
    "Agenda",
    "Analysis",
    "AnalysisInput",
    "AnalysisSettings",
    "Analyzer",
    "LLMAnalyzer",
    "Lesson",
    "OfflineAnalyzer",
    "condense_log",
    "digest_outcome",
    "judge_novelty",
    "make_analyzer",
    "offline_lesson",
    "proposal_similarity",
    "summarize_curves",
    "text_similarity",
    "write_agenda",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'evoforge.analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"evoforge.analysis.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
