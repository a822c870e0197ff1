"""The Cognition Base: long-term memory of knowledge items (heuristics, papers, pitfalls, lessons, notes) in its own
database, with hybrid retrieval (BM25 + dense → convex score fusion → MMR) and lesson merging with support and
contradiction counts, so lessons accumulate across runs and tasks that share one base."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, bindparam, func, select, update
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from evoforge.config import KnowledgeSettings
from evoforge.memory.cognition._cache import CachedEncoder
from evoforge.memory.cognition._dense import DenseState
from evoforge.memory.cognition._memo import BaseVersion, SearchMemo, Version
from evoforge.memory.cognition._schema import (
    cache_metadata,
    insert_new,
    item_from_row,
    item_row,
    lesson_lock,
    make_engine,
    metadata,
    shown,
)
from evoforge.memory.cognition._schema import items_table as t
from evoforge.memory.cognition.embeddings import Encoder, load_encoder
from evoforge.memory.cognition.importer import read_paths
from evoforge.memory.cognition.items import Hit, KnowledgeError, KnowledgeItem, jaccard, subject, tokens
from evoforge.memory.cognition.lexical import FTS_TABLE, Fts5Index, LexicalIndex, PythonBM25
from evoforge.memory.cognition.lexical_pg import postgres_backend, require_postgres
from evoforge.memory.cognition.retrieval import convex_fusion, cosine_matrix, diversify, jaccard_matrix
from evoforge.memory.schema import create_missing_tables

log = logging.getLogger(__name__)

_MAX_EVIDENCE = 50
_MERGE_CANDIDATES = 10  # nearest items a new lesson is compared with before it is added as new
_CHUNK = 500
_ITEMS = select(t).where(t.c.id.in_(bindparam("ids_", expanding=True)))  # built once: read at every search


def _lexical_backend(engine: Engine, choice: str, df_cap: int) -> LexicalIndex:
    """FTS5 on SQLite when it is compiled in (rebuilt if the table is new to an existing base), PostgreSQL's
    full-text search on PostgreSQL, else Python BM25."""
    if choice not in ("auto", "fts5", "postgres", "python"):
        raise KnowledgeError(f"lexical backend {choice!r}: use auto, fts5, postgres or python")
    if choice == "postgres":
        require_postgres(engine)
    if choice in ("auto", "postgres") and engine.dialect.name == "postgresql":
        found = postgres_backend(engine, df_cap)
        if found is None and choice == "postgres":
            raise KnowledgeError("could not add the full-text column to this PostgreSQL knowledge base (see the log)")
        return found or PythonBM25()
    if choice == "python" or engine.dialect.name != "sqlite":
        if choice == "fts5":
            raise KnowledgeError(f"FTS5 needs SQLite; this knowledge base is {engine.dialect.name}")
        return PythonBM25()
    fts = Fts5Index(df_cap)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # write lock first: concurrent openers take turns, none fails
            existed = conn.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE name = ?", (FTS_TABLE,)).first() is not None
            fts.create(conn)
            if not existed:
                conn.exec_driver_sql(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")
    except OperationalError as exc:
        if choice == "fts5":
            raise KnowledgeError(f"this SQLite has no FTS5: {exc}") from exc
        log.warning("cognition base: SQLite without FTS5 (%s); BM25 runs in Python", exc)
        return PythonBM25()
    return fts


class CognitionBase:
    """One knowledge base. Open it with `CognitionBase.open(path_or_url)`; every write commits before returning."""

    def __init__(self, engine: Engine, settings: KnowledgeSettings, encoder: Encoder | None, lexical: LexicalIndex,
                 mode: str) -> None:
        self._engine = engine
        self.settings = settings
        self._lexical = lexical
        self._cache = None if encoder is None else CachedEncoder(encoder, engine)
        self._dense = DenseState(engine, encoder, lexical, settings.ann_threshold, queries=self._cache)
        self._mode = mode
        self._version = BaseVersion(engine)
        self._memo = SearchMemo()
        self._synced: Version | None = None  # the version the in-memory state was last synced at

    @classmethod
    def open(cls, path_or_url: str | Path, *, settings: KnowledgeSettings | None = None,
             embeddings: bool | None = None, encoder: Encoder | None = None, lexical: str = "auto") -> CognitionBase:
        """Open (creating tables if needed) a base at a SQLite path or SQLAlchemy URL. `embeddings=False` (or
        settings.embeddings false) makes retrieval lexical; `encoder` replaces the MiniLM model (tests, benchmarks);
        `lexical` picks the BM25 backend: auto (FTS5 on SQLite, full-text search on PostgreSQL), fts5, postgres or
        python."""
        settings = settings or KnowledgeSettings()
        use_dense = settings.embeddings if embeddings is None else embeddings
        engine = make_engine(path_or_url)
        try:
            create_missing_tables(metadata, engine)
        except SQLAlchemyError as exc:
            engine.dispose()
            reason = " ".join(line.strip() for line in str(exc.orig if isinstance(exc, DBAPIError) else exc)
                              .splitlines() if line.strip())
            raise KnowledgeError(f"cannot open the knowledge base {shown(path_or_url)}: {reason}") from exc
        try:
            create_missing_tables(cache_metadata, engine)
        except SQLAlchemyError as exc:  # e.g. a read-only base from before the cache: encoded texts stay in memory
            log.warning("cognition base: no table for encoded texts in %s (%s); they are kept in memory only",
                        shown(path_or_url), str(exc).splitlines()[0])
        if not use_dense:
            encoder, mode = None, "lexical (embeddings disabled)"
        else:
            encoder = encoder or load_encoder()
            mode = "hybrid" if encoder is not None else "lexical (embeddings extra not installed)"
        return cls(engine, settings, encoder, _lexical_backend(engine, lexical, settings.lexical_df_cap), mode)

    @property
    def mode(self) -> str:
        """"hybrid", or "lexical (...)" saying why there are no embeddings."""
        return self._mode

    @property
    def encoder(self) -> Encoder | None:
        """The sentence encoder in use, behind the base's cache of encoded texts (None when retrieval is lexical),
        for similarity checks elsewhere: a text already encoded with this encoder is not encoded again."""
        return self._cache

    @property
    def backends(self) -> dict[str, str]:
        """What serves each half of retrieval (for status lines and benchmarks)."""
        self._sync()
        dense = self._dense.index.kind if self._dense.index is not None else "none"
        encoder = self._dense.encoder.name if self._dense.encoder is not None else "none"
        return {"lexical": self._lexical.name, "dense": dense, "encoder": encoder}

    # -- writing ---------------------------------------------------------------------------------------------

    def add(self, items: Sequence[KnowledgeItem]) -> list[int]:
        """Store items in one transaction and return their ids in order; an item already present (same kind,
        title, trigger and content) keeps its id and is not duplicated, also when another process writes it at the
        same moment."""
        unique = list({item.fingerprint(): item for item in items}.values())
        existing = self._existing([item.fingerprint() for item in unique])
        new = [item for item in unique if item.fingerprint() not in existing]
        vectors = self._encode([item.index_text() for item in new])
        existing.update(self._insert(new, vectors))
        raced = [item.fingerprint() for item in new if item.fingerprint() not in existing]
        existing.update(self._existing(raced))  # written by another process between our look-up and insert
        return [existing[item.fingerprint()] for item in items]

    def _existing(self, fingerprints: list[str]) -> dict[str, int]:
        """fingerprint → id of those already stored (looked up in chunks: SQL limits bound parameters)."""
        found: dict[str, int] = {}
        with self._engine.connect() as conn:
            for start in range(0, len(fingerprints), _CHUNK):
                chunk = fingerprints[start : start + _CHUNK]
                found.update(conn.execute(select(t.c.fingerprint, t.c.id).where(t.c.fingerprint.in_(chunk))).all())
        return found

    def _encode(self, texts: list[str]) -> np.ndarray | None:
        encoder = self._dense.encoder
        if encoder is None or not texts:
            return None
        return encoder.encode(texts)

    def _insert(self, items: list[KnowledgeItem], vectors: np.ndarray | None) -> dict[str, int]:
        """Insert the items; fingerprint → id of those written. An item another process has just written (same
        fingerprint) is skipped, not an error: it is absent from the result."""
        if not items:
            return {}
        model = self._dense.encoder.name if self._dense.encoder is not None else None
        rows = [item_row(item, None if vectors is None else vectors[i], model) for i, item in enumerate(items)]
        try:
            with self._engine.begin() as conn:
                stmt = insert_new(self._engine.dialect.name).returning(t.c.id, t.c.fingerprint)
                written = {fingerprint: item_id for item_id, fingerprint in conn.execute(stmt, rows)}
                self._lexical.add(conn, [(written[row["fingerprint"]], row["index_text"]) for row in rows
                                         if row["fingerprint"] in written])
        except SQLAlchemyError as exc:
            raise KnowledgeError(f"could not write {len(rows)} knowledge items: {exc}") from exc
        finally:
            self._version.bump()
        return written

    def import_paths(self, paths: Sequence[Path]) -> list[int]:
        """Import Markdown, text and JSONL files and folders of them, all or nothing: every file is parsed before
        anything is written, and a bad one raises KnowledgeError naming file and line."""
        return self.add(read_paths([Path(p) for p in paths]))

    def add_lesson(self, item: KnowledgeItem, *, effect_sign: int = 0, threshold: float | None = None
                   ) -> tuple[int, str]:
        """Write a lesson, or merge it into the nearest existing item when similarity reaches the threshold (cosine
        with embeddings, token Jaccard without). A merge adds support, or a contradiction when the effect's sign
        is opposite to the stored one. Returns (item id, "added" | "merged" | "contradicted")."""
        sign = effect_sign or item.effect_sign
        if sign not in (-1, 0, 1):
            raise KnowledgeError(f"effect_sign must be -1, 0 or 1, not {sign!r}")
        with lesson_lock(self._engine):
            return self._add_lesson(replace(item, effect_sign=sign), sign, threshold)

    def _add_lesson(self, item: KnowledgeItem, sign: int, threshold: float | None) -> tuple[int, str]:
        self._sync()
        with self._engine.connect() as conn:
            same = conn.execute(select(t.c.id).where(t.c.fingerprint == item.fingerprint())).scalar()
        if same is not None:  # the very same lesson again: no vector needed
            return same, self._merge(same, item, sign)
        vectors = None if self._cache is None else self._cache.encode([item.index_text()])
        match = self._nearest(item, vectors, threshold)
        if match is None:
            written = self._insert([item], vectors)
            if item.fingerprint() in written:
                return written[item.fingerprint()], "added"
            match = self._existing([item.fingerprint()])[item.fingerprint()]  # another process wrote it first
        return match, self._merge(match, item, sign)

    def _nearest(self, item: KnowledgeItem, vectors: np.ndarray | None, threshold: float | None) -> int | None:
        """The item this new lesson repeats: the most similar one above the threshold whose title has the same
        `subject` (code identifiers, and which way each was changed), so that support counts only matching
        evidence."""
        with self._engine.connect() as conn:
            if vectors is not None:
                limit = self.settings.dedup_threshold if threshold is None else threshold
                near = [i for i, cosine in self._dense.nearest(vectors[0], _MERGE_CANDIDATES) if cosine >= limit]
                titles = self._titles(conn, near)
                return next((i for i in near if i in titles and self._same_subject(item, titles[i])), None)
            candidates = self._lexical.search(conn, item.index_text(), _MERGE_CANDIDATES, None)
            rows = conn.execute(select(t.c.id, t.c.index_text, t.c.title).where(t.c.id.in_(candidates))).all() \
                if candidates else []
        texts = {row.id: row.index_text for row in rows if self._same_subject(item, row.title)}
        mine = set(tokens(item.index_text()))
        scored = [(jaccard(mine, set(tokens(texts[i]))), i) for i in candidates if i in texts]
        limit = self.settings.lexical_dedup_threshold if threshold is None else threshold
        best = max(scored, default=(0.0, None), key=lambda s: (s[0], -(s[1] or 0)))
        return best[1] if best[0] >= limit else None

    @staticmethod
    def _titles(conn: Connection, ids: list[int]) -> dict[int, str]:
        return dict(conn.execute(select(t.c.id, t.c.title).where(t.c.id.in_(ids))).all()) if ids else {}

    @staticmethod
    def _same_subject(item: KnowledgeItem, title: str) -> bool:
        return subject(item.title) == subject(title)

    def _merge(self, item_id: int, item: KnowledgeItem, sign: int) -> str:
        """Add this evidence to the stored item, its row locked from the read to the write (FOR UPDATE; a write
        transaction from the start on SQLite), so that merges by several processes all count and all keep their
        evidence."""
        try:
            return self._merge_locked(item_id, item, sign)
        finally:
            self._version.bump()

    def _merge_locked(self, item_id: int, item: KnowledgeItem, sign: int) -> str:
        with self._engine.begin() as conn:
            if self._engine.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            row = conn.execute(select(t.c.effect_sign, t.c.provenance).where(t.c.id == item_id)
                               .with_for_update()).one()
            contradicts = sign != 0 and row.effect_sign != 0 and sign != row.effect_sign
            provenance = dict(row.provenance or {})
            evidence = [*provenance.get("evidence", []), {**item.provenance, "sign": sign, "title": item.title}]
            provenance["evidence"] = evidence[-_MAX_EVIDENCE:]
            values: dict[str, Any] = {"provenance": provenance}
            if contradicts:
                values["contradictions"] = t.c.contradictions + 1
            else:
                values["support"] = t.c.support + 1
                if row.effect_sign == 0 and sign != 0:
                    values["effect_sign"] = sign
            conn.execute(update(t).where(t.c.id == item_id).values(**values))
        return "contradicted" if contradicts else "merged"

    # -- reading ---------------------------------------------------------------------------------------------

    def search(self, query: str, k: int = 5, *, kinds: Sequence[str] | None = None) -> list[Hit]:
        """The k most relevant items, diversified, best first: BM25 and dense scores fused (convex_fusion), then the k
        picked by MMR so that near-duplicates do not crowd the list, listed in score order.

        The same search again, while the base has not changed (by this process or, on a SQLite file, any other),
        is answered from memory (`_memo`): a parent picked again asks the same query."""
        if k <= 0 or not query.strip():
            return []
        version = self._version.current()  # read first: a write from now on gives another version
        key = (query, k, None if kinds is None else tuple(kinds))
        if version is not None:
            kept = self._memo.get(version, key)
            if kept is not None:
                return kept
        hits = self._search(query, k, kinds)
        if version is not None:
            self._memo.put(version, key, hits)
        return hits

    def _search(self, query: str, k: int, kinds: Sequence[str] | None) -> list[Hit]:
        lexical, dense = self.rankings(query, max(self.settings.candidates, 4 * k), kinds=kinds)
        fused = convex_fusion(lexical, dense, self.settings.dense_weight if dense else 0.0)
        if not fused:
            return []
        ids = [r.item_id for r in fused]
        if self._dense.index is not None and self._dense.encoder is not None:
            similarity = cosine_matrix(self._dense.index.vectors(ids))
            picked = diversify(fused, similarity, k, self.settings.mmr_lambda)
            items = self._fetch([r.item_id for r in picked])
        else:
            items = self._fetch(ids)
            token_sets = [set(tokens(items[i].index_text())) for i in ids]
            picked = diversify(fused, jaccard_matrix(token_sets), k, self.settings.mmr_lambda)
        return [Hit(items[r.item_id], r.score, r.lexical_rank, r.dense_rank) for r in picked]

    def rankings(self, query: str, n: int, *, kinds: Sequence[str] | None = None
                 ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """The two halves of retrieval before fusion: (lexical, dense) lists of (id, score), best first, at most n
        each (dense is empty when retrieval is lexical)."""
        self._sync()
        with self._engine.connect() as conn:
            lexical = self._lexical.scored(conn, query, n, kinds)
        return lexical, self._dense.search(query, n, kinds)

    def _sync(self) -> None:
        """Bring the vector index and the kinds up to the table, unless the base has not changed since the last time."""
        version = self._version.current()
        if version is not None and version == self._synced:
            return
        self._dense.sync()
        self._synced = version

    def _fetch(self, ids: list[int]) -> dict[int, KnowledgeItem]:
        with self._engine.connect() as conn:
            rows = conn.execute(_ITEMS, {"ids_": ids}).all()
        return {row.id: item_from_row(row) for row in rows}

    def get(self, item_id: int) -> KnowledgeItem:
        found = self._fetch([item_id])
        if item_id not in found:
            raise KnowledgeError(f"no knowledge item #{item_id} in this base; `evoforge knowledge list` shows the ids")
        return found[item_id]

    def list(self, kind: str | None = None, limit: int | None = None) -> list[KnowledgeItem]:
        """Items in id order, optionally of one kind and at most `limit` of them."""
        stmt = select(t).order_by(t.c.id)
        if kind is not None:
            stmt = stmt.where(t.c.kind == kind)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._engine.connect() as conn:
            return [item_from_row(row) for row in conn.execute(stmt)]

    def count(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t)).scalar_one())

    def top_supported(self, n: int, kinds: Sequence[str] | None = None) -> list[KnowledgeItem]:
        """The n items (of these kinds) with the most support (fewest contradictions, then oldest, first on ties)."""
        stmt = select(t).order_by(t.c.support.desc(), t.c.contradictions, t.c.id).limit(n)
        if kinds:
            stmt = stmt.where(t.c.kind.in_(list(kinds)))
        with self._engine.connect() as conn:
            return [item_from_row(row) for row in conn.execute(stmt)]

    def export(self) -> list[dict[str, Any]]:
        """Every item as a JSON-ready dict (the JSONL format `import_paths` reads back)."""
        return [item.to_dict() for item in self.list()]

    def close(self) -> None:
        """Write the encoded texts not written yet, and release the database."""
        if self._cache is not None:
            self._cache.flush()
        self._version.close()
        self._engine.dispose()

    def __enter__(self) -> CognitionBase:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
