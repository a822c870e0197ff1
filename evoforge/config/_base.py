"""The one strict base of every settings model: an unknown field in task.yaml or a run's settings is an error."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A settings model that refuses fields it does not declare (a typo in task.yaml is named, never ignored)."""

    model_config = ConfigDict(extra="forbid")
