"""The Analyzer interface: what the loop hands it after an evaluation (`AnalysisInput`) and what it gets back
(`Analysis`: readable text, the structured data, at most a few lessons, the LLM calls made)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from evoforge.analysis.lessons import Lesson
from evoforge.models import Digest, Direction, LLMCall, Outcome, Trial

ANALYSIS_KEYS = ("what_changed", "what_happened", "why", "lesson", "trigger", "next_steps")


@dataclass(frozen=True)
class AnalysisInput:
    """One finished trial with its context: its parent, its best siblings (best first), telemetry curves
    (metric → (step, value) points, may be empty) and the tail of what it printed."""

    trial: Trial
    outcome: Outcome
    digest: Digest
    parent: Trial | None
    siblings: Sequence[Trial]
    curves: dict[str, list[tuple[int, float]]]
    log_tail: str
    metric: str
    direction: Direction
    problem: str


@dataclass(frozen=True)
class Analysis:
    """An analyzer's verdict. `data` holds ANALYSIS_KEYS (validated JSON for source "llm"); `source` is
    "llm", "offline", or "digest" (the model's answer was unusable, the digest stands alone)."""

    text: str
    data: dict[str, Any] = field(default_factory=dict)
    lessons: tuple[Lesson, ...] = ()
    llm_calls: tuple[LLMCall, ...] = ()
    source: str = "offline"


class Analyzer(ABC):
    """Turns a finished trial into an analysis; the loop calls `analyze` once per evaluated trial, concurrently."""

    name: str

    @abstractmethod
    async def analyze(self, inp: AnalysisInput) -> Analysis:
        """The analysis of `inp.trial`; never raises for bad model output (the digest stands instead)."""

    async def aclose(self) -> None:
        """Release network clients; the loop calls it once at the end of a run."""
        return None
