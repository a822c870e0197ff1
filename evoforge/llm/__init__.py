"""Clients for language models behind OpenAI-compatible endpoints; only `research` and `analysis` use them."""

from evoforge.llm.client import LLMClient, LLMError, client_from_settings

__all__ = ["LLMClient", "LLMError", "client_from_settings"]
