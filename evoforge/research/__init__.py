"""The Researcher: turns a research context into a proposal, with a language model or offline."""

from evoforge.research.base import Proposer
from evoforge.research.context import ResearchContext
from evoforge.research.edits import Edit, EditError, apply_edits
from evoforge.research.factory import make_proposer
from evoforge.research.llm_proposer import LLMProposer
from evoforge.research.offline import OfflineProposer

__all__ = [
    "Edit",
    "EditError",
    "LLMProposer",
    "OfflineProposer",
    "Proposer",
    "ResearchContext",
    "apply_edits",
    "make_proposer",
]
