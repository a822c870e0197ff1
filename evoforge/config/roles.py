"""Which language model serves which role of a run — the one resolver every role asks: the researcher (one model,
an ensemble, or the small local model) and the single-model roles (analyzer, research review, novelty judge)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from evoforge.config.llm import LLMSettings, ModelSpec
from evoforge.errors import EvoforgeError

LOCAL_MODEL = "local/smollm2-135m"
LOCAL_ANSWER_TOKENS = 1024  # SmolLM2 reads 8192 tokens: the answer's share of them


@dataclass(frozen=True)
class ModelChoice:
    """The models of a run. `mode`: "offline" (no model), "local" (the local model serves the researcher) or "llm".
    `researcher`: the researcher's models (an ensemble when several); `single`: the model of the single-model
    roles (None: they take their offline path)."""

    mode: Literal["offline", "local", "llm"]
    researcher: tuple[ModelSpec, ...] = ()
    single: ModelSpec | None = None


def spec_for(settings: LLMSettings, name: str) -> ModelSpec:
    """The `llm.models` entry called `name`, else a plain spec for it."""
    for spec in settings.models:
        if spec.name == name:
            return spec
    return ModelSpec(name=name)


def local_spec(settings: LLMSettings) -> ModelSpec:
    """The ensemble entry for the local model: free, answers capped so prompt + answer fit its context."""
    return ModelSpec(name=LOCAL_MODEL, max_tokens=min(settings.max_tokens, LOCAL_ANSWER_TOKENS), price_in=0,
                     price_out=0)


def choose_models(settings: LLMSettings, llm: str | None, environ: Mapping[str, str] | None = None) -> ModelChoice:
    """The models for `llm` (the `--llm` option) and the task's `llm` settings, in this order:

    - `--llm offline`: no model for any role; `--llm local`: the local model researches, the other roles are offline;
    - `--llm NAME`: that model for every role (configured from `llm.models` when it is listed there);
    - `llm.models`: the ensemble researches; the single-model roles use `llm.model` when it is set (it must be one of
      `llm.models`), else the first model with a weight above 0;
    - `llm.model`, else $EVOFORGE_MODEL: that model for every role; none of these: offline.
    """
    if llm == "offline":
        return ModelChoice("offline")
    if llm == "local":
        return ModelChoice("local", (local_spec(settings),))
    if llm:
        spec = spec_for(settings, llm)
        return ModelChoice("llm", (spec,), spec)
    if settings.models:
        active = [spec for spec in settings.models if spec.weight > 0]
        if not active:
            raise EvoforgeError("task.yaml llm.models: give at least one model with weight > 0")
        single = active[0]
        if settings.model:
            named = [spec for spec in settings.models if spec.name == settings.model]
            if not named:
                listed = ", ".join(spec.name for spec in settings.models)
                raise EvoforgeError(
                    f"task.yaml llm.model: {settings.model!r} is not one of llm.models ({listed}); beside an "
                    "ensemble, llm.model names the ensemble's model for analysis, review and the novelty judge"
                )
            single = named[0]
        return ModelChoice("llm", tuple(settings.models), single)
    name = settings.model or (os.environ if environ is None else environ).get("EVOFORGE_MODEL")
    if not name:
        return ModelChoice("offline")
    spec = spec_for(settings, name)
    return ModelChoice("llm", (spec,), spec)
