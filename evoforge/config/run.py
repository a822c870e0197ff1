"""Run settings: the stopping rule and the knobs of one run, validated and stored with the run."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from evoforge.config._base import Strict

# The stopping rule: stored once, in the record's `runs.stopping` column (the rest of the settings go in its config);
# `resume` reads it back from there and writes it there when told to change it.
STOPPING_FIELDS = ("trials", "target_score", "budget_usd", "budget_tokens", "budget_wall_s", "budget_eval_s")


class RunSettings(Strict):
    """What `evoforge run` was asked to do; saved in the record so `resume` continues the same rule."""

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
    lease_s: float = Field(default=60.0, gt=0, le=86400, description=(
        "seconds a runner holds a trial between heartbeats; past it (the runner killed or cut off) another runner "
        "of the run takes the trial over"))
    ray_address: str | None = Field(default=None, min_length=1, description="run the stages on this Ray cluster "
                                    "(auto, ray://HOST:PORT, HOST:PORT, local), whatever the task's executor says")

    def stopping(self) -> dict[str, float | int | None]:
        """The stopping rule, as the record keeps it."""
        return {name: getattr(self, name) for name in STOPPING_FIELDS}

    def knobs(self) -> dict[str, Any]:
        """Everything but the stopping rule, as the record's run config keeps it."""
        return self.model_dump(mode="json", exclude=set(STOPPING_FIELDS))

    @classmethod
    def from_record(cls, knobs: dict[str, Any], stopping: dict[str, Any]) -> RunSettings:
        """The settings of a recorded run: its knobs, and its stopping rule from the one place it lives (records
        written before the rule moved there also hold an outdated copy of it among the knobs: the rule wins)."""
        rule = {name: value for name, value in stopping.items() if name in STOPPING_FIELDS}
        return cls.model_validate({**knobs, **rule})
