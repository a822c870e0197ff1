"""Memory: the Database of Record (trials, telemetry, analyses, LLM calls) and parent sampling over it."""

from evoforge.memory.record import RECORD_FILE, Record
from evoforge.memory.tables import AnalysisRow, LLMCallRow, RunInfo

__all__ = ["RECORD_FILE", "AnalysisRow", "LLMCallRow", "Record", "RunInfo"]
