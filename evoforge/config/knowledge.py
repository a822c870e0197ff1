"""The `knowledge:` section of task.yaml: where the cognition base lives and how retrieval and lesson merging behave."""

from __future__ import annotations

from pydantic import Field

from evoforge.config._base import Strict


class KnowledgeSettings(Strict):
    """Cognition base settings; `kb` None means the run's own RUN_DIR/knowledge.db, seeded from the task's folder."""

    kb: str | None = Field(default=None, description="knowledge base: SQLite file path or SQLAlchemy URL")
    folder: str = Field(default="knowledge", description="task sub-folder imported into the base when a run starts")
    top_k: int = Field(default=5, ge=0, description="knowledge items shown to the researcher per trial")
    mmr_lambda: float = Field(default=0.7, ge=0.0, le=1.0, description="MMR: 1 = relevance only, 0 = diversity only")
    dense_weight: float = Field(
        default=0.8, ge=0.0, le=1.0,
        description="fusion: weight of the cosine against BM25 / best BM25 (benchmarks/cognition.py --retrieval)")
    candidates: int = Field(default=50, ge=1, description="items taken from each ranked list before fusion")
    dedup_threshold: float = Field(default=0.92, gt=0.0, le=1.0, description="cosine above which a lesson merges")
    lexical_dedup_threshold: float = Field(
        default=0.6, gt=0.0, le=1.0, description="token Jaccard above which a lesson merges (embeddings off)"
    )
    lexical_df_cap: int = Field(
        default=1000, ge=1, description="FTS5: a query term matching more items than this is dropped as a stopword"
    )
    ann_threshold: int = Field(default=5000, ge=1, description="from this many vectors on, search an HNSW index")
    embeddings: bool = Field(default=True, description="false: lexical retrieval only")
