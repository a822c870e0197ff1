"""The Analyzer: turns an outcome into a digest (deterministic) that the researcher reads next time."""

from evoforge.analysis.digest import digest_outcome

__all__ = ["digest_outcome"]
