"""The task folder's `task.yaml` as one validated model, `TaskConfig`, made of the sections the other modules of
this package define."""

from __future__ import annotations

from pydantic import Field, model_validator

from evoforge.config._base import Strict
from evoforge.config.analysis import AnalysisSettings
from evoforge.config.experiment import GatesConfig, Limits, StageList
from evoforge.config.knowledge import KnowledgeSettings
from evoforge.config.llm import LLMSettings
from evoforge.config.research import ResearchSettings
from evoforge.models import Direction


class Objective(Strict):
    metric: str = "score"
    direction: Direction = Direction.MAXIMIZE


class TaskConfig(Strict):
    name: str = Field(description="defaults to the task folder's name")
    problem: str = Field(description="path of the problem text, relative to the task folder, or the text itself")
    program: str = Field(description="path of the seed program, relative to the task folder")
    evaluator: str | None = Field(default=None, description="Python file defining evaluate(program_path)")
    command: str | None = Field(default=None, description="shell command; {program} is the candidate path")
    objective: Objective = Objective()
    timeout_s: float = Field(default=300.0, gt=0)
    limits: Limits = Limits()
    llm: LLMSettings = LLMSettings()
    research: ResearchSettings = ResearchSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()
    analysis: AnalysisSettings = AnalysisSettings()
    prompts: str | None = Field(default=None, description="folder of jinja2 templates to override")
    target_score: float | None = None
    stages: StageList | None = Field(default=None, description="evaluation cascade, cheapest stage first")
    gates: GatesConfig = GatesConfig()
    hidden: list[str] = Field(default_factory=list, description="task files and folders only the evaluator's "
                              "process sees (e.g. evaluator.py, data/test/); the candidate's jail empties them")
    layout: str = Field(default="evoforge", pattern="^(evoforge|openevolve|asi-evolve)$",
                        description="whose conventions the evaluator follows (see evoforge/task/foreign.py)")

    @model_validator(mode="after")
    def _one_evaluator(self) -> TaskConfig:
        if (self.evaluator is None) == (self.command is None):
            raise ValueError("give exactly one of 'evaluator' (a Python file) or 'command' (a shell command)")
        return self
