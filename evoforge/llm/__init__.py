"""Clients for language models (OpenAI-compatible endpoints and Anthropic), the price table, and the model
ensemble with its bandit; only `research` and `analysis` use them."""

from evoforge.llm._base import ChatClient, LLMError
from evoforge.llm.client import LLMClient, client_for_spec, client_from_settings
from evoforge.llm.ensemble import Arm, Ensemble, ModelsUnavailable, improvement

__all__ = [
    "Arm",
    "ChatClient",
    "Ensemble",
    "LLMClient",
    "LLMError",
    "ModelsUnavailable",
    "client_for_spec",
    "client_from_settings",
    "improvement",
]
