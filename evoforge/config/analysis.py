"""The analyzer's settings in task.yaml (`analysis:`): prompt budgets, the review cadence, the novelty threshold."""

from __future__ import annotations

from pydantic import Field

from evoforge.config._base import Strict


class AnalysisSettings(Strict):
    """Budgets are in characters (about 4 per token)."""

    log_chars: int = Field(default=6000, ge=200, description="condensed stdout+stderr shown to the analyzer")
    diff_chars: int = Field(default=4000, ge=200, description="diff vs parent shown to the analyzer")
    curve_chars: int = Field(default=1500, ge=100, description="telemetry curve summaries")
    problem_chars: int = Field(default=2000, ge=100, description="problem statement shown to the analyzer")
    review_every: int = Field(default=10, ge=0, description="write a research agenda every N trials (0: never)")
    novelty_threshold: float = Field(
        default=0.9, gt=0.0, le=1.0, description="similarity at which a proposal counts as a near-duplicate"
    )
