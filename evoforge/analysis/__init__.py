"""The Analyzer: turns an outcome into a digest (deterministic), a causal analysis and lessons, and writes the
research agenda."""

from __future__ import annotations

from evoforge.analysis._base import Analysis, AnalysisInput, Analyzer
from evoforge.analysis.analyzer import make_analyzer
from evoforge.analysis.condense import condense_log, summarize_curves
from evoforge.analysis.digest import digest_outcome
from evoforge.analysis.lessons import Lesson, offline_lesson
from evoforge.analysis.llm_analyzer import LLMAnalyzer
from evoforge.analysis.novelty import judge_novelty, proposal_similarity, text_similarities, text_similarity
from evoforge.analysis.offline import OfflineAnalyzer
from evoforge.analysis.review import Agenda, write_agenda

__all__ = [
    "Agenda",
    "Analysis",
    "AnalysisInput",
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
    "text_similarities",
    "text_similarity",
    "write_agenda",
]
