"""The task folder's `task.yaml` as one validated model, `TaskConfig`, made of the sections the other modules of
this package define."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from evoforge.config._base import Strict
from evoforge.config.analysis import AnalysisSettings
from evoforge.config.champion import ChampionSettings
from evoforge.config.executor import ExecutorConfig
from evoforge.config.experiment import GatesConfig, Limits, StageList
from evoforge.config.knowledge import KnowledgeSettings
from evoforge.config.llm import LLMSettings
from evoforge.config.research import ResearchSettings
from evoforge.models import Direction


class Objective(Strict):
    metric: str = "score"
    direction: Direction = Direction.MAXIMIZE


class MetricSpec(Strict):
    """What one metric of the evaluator's result must be; a result that breaks it fails as `bad_result`."""

    type: Literal["number", "integer", "boolean", "string"] = "number"
    required: bool = True
    min: float | None = None
    max: float | None = None
    stages: list[str] | None = Field(default=None, description="the stages whose results must hold it (all when "
                                     "not given)")


class TaskConfig(Strict):
    name: str = Field(description="defaults to the task folder's name")
    problem: str = Field(description="path of the problem text, relative to the task folder, or the text itself")
    program: str = Field(description="path of the seed program, relative to the task folder")
    evaluator: str | None = Field(default=None, description="Python file defining evaluate(program_path)")
    command: str | None = Field(default=None, description="shell command; {program} is the candidate path")
    objective: Objective = Objective()
    metrics: dict[str, MetricSpec] = Field(default_factory=dict, description="the result's schema: each metric's "
                                           "type, whether it is required, and its bounds")
    timeout_s: float = Field(default=300.0, gt=0)
    repeats: int = Field(default=1, ge=1, le=100, description="evaluations of a program when no stages are declared "
                         "(a stage declares its own), each with its own seed; the score is their mean")
    limits: Limits = Limits()
    llm: LLMSettings = LLMSettings()
    research: ResearchSettings = ResearchSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()
    analysis: AnalysisSettings = AnalysisSettings()
    prompts: str | None = Field(default=None, description="folder of jinja2 templates to override")
    target_score: float | None = None
    stages: StageList | None = Field(default=None, description="evaluation cascade, cheapest stage first")
    gates: GatesConfig = GatesConfig()
    champion: ChampionSettings = ChampionSettings()
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig, description="where stages run: local "
                                     "(GPU slots) or a Ray cluster")
    hidden: list[str] = Field(default_factory=list, description="task files and folders only the evaluator's "
                              "process sees (e.g. evaluator.py, data/test/); the candidate's jail empties them")
    layout: str = Field(default="evoforge", pattern="^(evoforge|openevolve|asi-evolve)$",
                        description="whose conventions the evaluator follows (see evoforge/task/foreign.py)")

    @property
    def seeded(self) -> bool:
        """Whether the evaluator's score depends on a seed it is given (declared, or `{seed}` in the command)."""
        repeated = self.repeats > 1 or any(stage.repeats > 1 for stage in self.stages or [])
        return self.champion.seeded or repeated or "{seed}" in (self.command or "")

    @property
    def champion_repeats(self) -> int:
        """Evaluations behind a champion: the task's `champion.repeats`, else 3 when seeded, else 1."""
        return self.champion.repeats or (3 if self.seeded else 1)

    @model_validator(mode="after")
    def _one_evaluator(self) -> TaskConfig:
        if (self.evaluator is None) == (self.command is None):
            raise ValueError("give exactly one of 'evaluator' (a Python file) or 'command' (a shell command)")
        return self
