"""Clients for language models (OpenAI-compatible endpoints and Anthropic), the price table, and the model
ensemble with its bandit; only `research` and `analysis` use them."""

from evoforge.llm._base import ChatClient, LLMError
from evoforge.llm.client import LLMClient, client_for_spec, client_from_settings
from evoforge.llm.ensemble import Arm, Ensemble, ModelsUnavailable, improvement
from evoforge.llm.models import BanditSettings, ModelSpec, Price

__all__ = [
    "Arm",
    "BanditSettings",
    "ChatClient",
    "Ensemble",
    "LLMClient",
    "LLMError",
    "ModelSpec",
    "ModelsUnavailable",
    "Price",
    "client_for_spec",
    "client_from_settings",
    "improvement",
]
