"""The Cognition Base: long-term memory of knowledge items with hybrid (BM25 + dense) retrieval and lesson merging."""

from evoforge.memory.cognition.items import KINDS, Hit, KnowledgeError, KnowledgeItem
from evoforge.memory.cognition.store import CognitionBase

__all__ = ["KINDS", "CognitionBase", "Hit", "KnowledgeError", "KnowledgeItem"]
