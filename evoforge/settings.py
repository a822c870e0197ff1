"""Run settings: the stopping rule and the knobs of one run, validated (pydantic) and stored with the run."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RunSettings(BaseModel):
    """What `evoforge run` was asked to do; saved in the record so `resume` continues the same rule."""

    model_config = ConfigDict(extra="forbid")

    trials: int = Field(default=40, ge=1, description="stop after this many trials, the seed included")
    concurrency: int = Field(default=2, ge=1, le=256, description="evaluations in flight at once")
    prefetch: int | None = Field(
        default=None, ge=0, le=1024, description="proposals prepared ahead of free slots (None: 2 × concurrency)"
    )
    target_score: float | None = Field(default=None, description="stop once the best score reaches this")
    seed: int = 0
    llm: str | None = Field(default=None, description="'offline', a model name, or None for the task's choice")
    sampler: str | None = Field(default=None, description="parent sampler; None → the task's research.sampler")
    kb: str | None = Field(default=None, description="shared knowledge base (path or URL); None → RUN_DIR/knowledge.db")
    budget_usd: float | None = Field(default=None, gt=0, description="stop proposing before LLM spend passes this")
    budget_tokens: int | None = Field(default=None, gt=0, description="cap on LLM tokens (in + out)")
    budget_wall_s: float | None = Field(default=None, gt=0, description="cap on the run's wall-clock seconds")
    budget_eval_s: float | None = Field(default=None, gt=0, description="cap on evaluation seconds")

    def stopping(self) -> dict[str, float | int | None]:
        return {
            "trials": self.trials, "target_score": self.target_score, "budget_usd": self.budget_usd,
            "budget_tokens": self.budget_tokens, "budget_wall_s": self.budget_wall_s,
            "budget_eval_s": self.budget_eval_s,
        }
