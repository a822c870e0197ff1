"""Every setting of evoforge in one leaf package: task.yaml's sections and a run's settings as pydantic models on one
strict base, and the one resolver of which model serves which role. It imports nothing of evoforge but the plain
vocabulary (`evoforge.models`, `evoforge.errors`), so every pillar may import it and it imports no pillar."""

from evoforge.config._base import Strict
from evoforge.config.analysis import AnalysisSettings
from evoforge.config.champion import ChampionSettings
from evoforge.config.executor import ExecutorConfig, ExecutorResources
from evoforge.config.experiment import (
    AnomalyConfig,
    Bound,
    CurveGateConfig,
    GatesConfig,
    Limits,
    MedianConfig,
    ParentRelativeConfig,
    PatienceConfig,
    PromoteRule,
    SlowdownConfig,
    StageConfig,
    StageList,
    StaticGateConfig,
)
from evoforge.config.knowledge import KnowledgeSettings
from evoforge.config.llm import BanditSettings, LLMSettings, ModelSpec, Price, split_name
from evoforge.config.research import (
    FeatureSpec,
    IslandSettings,
    MapElitesSettings,
    PatchWeights,
    PromptBudget,
    ResearchSettings,
    WeightedSettings,
)
from evoforge.config.roles import ModelChoice, choose_models, local_spec, spec_for
from evoforge.config.run import STOPPING_FIELDS, RunSettings
from evoforge.config.task import MetricSpec, Objective, TaskConfig

__all__ = [
    "STOPPING_FIELDS", "AnalysisSettings", "AnomalyConfig", "BanditSettings", "Bound", "ChampionSettings",
    "CurveGateConfig", "ExecutorConfig", "ExecutorResources",
    "FeatureSpec", "GatesConfig", "IslandSettings", "KnowledgeSettings", "LLMSettings", "Limits", "MapElitesSettings",
    "MedianConfig", "MetricSpec", "ModelChoice", "ModelSpec", "Objective", "ParentRelativeConfig", "PatchWeights",
    "PatienceConfig",
    "Price", "PromoteRule", "PromptBudget", "ResearchSettings", "RunSettings", "SlowdownConfig", "StageConfig",
    "StageList", "StaticGateConfig", "Strict", "TaskConfig", "WeightedSettings", "choose_models", "local_spec",
    "spec_for", "split_name",
]
