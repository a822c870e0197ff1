"""Lexical (BM25) search over the items' index text: SQLite FTS5 with its bm25() where the dialect is SQLite
(PostgreSQL's full-text search is in lexical_pg.py), and a small in-memory Okapi BM25 for every other database.
Queries are reduced to plain word tokens, so search syntax in user text (quotes, AND/OR/NEAR, `*`, `:`, `&|!<->`)
can never break or steer a search."""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Sequence

from sqlalchemy import Connection, TextClause, bindparam, text

from evoforge.memory.cognition.items import tokens

FTS_TABLE = "knowledge_fts"
_MAX_QUERY_TOKENS = 32
_K1 = 1.2
_B = 0.75


def query_tokens(query: str) -> list[str]:
    """The query's distinct word tokens (letters, digits, underscores; stopwords dropped), at most 32."""
    return list(dict.fromkeys(tokens(query)))[:_MAX_QUERY_TOKENS]


def query_terms(query: str) -> list[str]:
    """The query's distinct word tokens, each quoted for FTS5 (at most 32)."""
    return [f'"{tok}"' for tok in query_tokens(query)]


def bm25_idf(docs: int, frequency: int) -> float:
    """Okapi BM25's inverse document frequency (always positive, as in FTS5) of a term in `frequency` of `docs`."""
    return math.log((docs - frequency + 0.5) / (frequency + 0.5) + 1.0)


def fts5_query(query: str) -> str:
    """An FTS5 MATCH expression: the query's distinct word tokens, each quoted, joined by OR ("" when none)."""
    return " OR ".join(query_terms(query))


class LexicalIndex(ABC):
    """Ranks item ids for a query; `add` runs inside the store's write transaction, `sync` after new rows commit."""

    name = "base"

    def create(self, conn: Connection) -> None:
        """Create any database structures (called once when the base opens); none by default."""
        return None

    def add(self, conn: Connection, rows: Sequence[tuple[int, str]]) -> None:
        """Index (id, text) rows written in the current transaction; nothing to do by default."""
        return None

    def sync(self, rows: Sequence[tuple[int, str, str]]) -> None:
        """Take in committed (id, kind, text) rows this process has not seen yet; nothing by default."""
        return None

    @abstractmethod
    def scored(self, conn: Connection, query: str, n: int, kinds: Sequence[str] | None) -> list[tuple[int, float]]:
        """(item id, BM25 score, higher better) best first, at most `n`, of the given kinds."""

    def search(self, conn: Connection, query: str, n: int, kinds: Sequence[str] | None) -> list[int]:
        """Item ids best first, at most `n`, of the given kinds."""
        return [item_id for item_id, _ in self.scored(conn, query, n, kinds)]


_SCORED_OF_KINDS = text(
    f"SELECT f.rowid, bm25({FTS_TABLE}) FROM {FTS_TABLE} f JOIN knowledge_items i ON i.id = f.rowid "
    f"WHERE {FTS_TABLE} MATCH :match AND i.kind IN :kinds ORDER BY bm25({FTS_TABLE}) LIMIT :n"
).bindparams(bindparam("kinds", expanding=True))
_SCORED = text(f"SELECT rowid, bm25({FTS_TABLE}) FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :match "
               f"ORDER BY bm25({FTS_TABLE}) LIMIT :n")


@functools.lru_cache(maxsize=128)
def _frequency_statement(n: int) -> TextClause:
    """SELECT the match counts (up to :cap) of terms :t0 … :t{n-1}; built once per number of terms (SQLAlchemy
    spends more building and keying a statement than SQLite counting)."""
    counts = ", ".join(f"(SELECT count(*) FROM (SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :t{i} "
                       "LIMIT :cap))" for i in range(n))
    return text(f"SELECT {counts}")


class Fts5Index(LexicalIndex):
    """An external-content FTS5 table over `knowledge_items.index_text` (porter stemming), ranked by bm25().

    bm25() must score every item a term matches, so a term matching more than `df_cap` items is treated as a
    stopword (its idf is small anyway): query cost stays bounded as the base grows. Bases under `df_cap` items
    are ranked by exact BM25; a query made only of such common terms requires all of them (AND)."""

    name = "fts5"

    def __init__(self, df_cap: int = 1000) -> None:
        self.df_cap = df_cap

    def _match(self, conn: Connection, query: str) -> str:
        terms = query_terms(query)
        frequency = self._frequencies(conn, terms)
        rare = [term for term in terms if 0 < frequency[term] <= self.df_cap]
        common = [term for term in terms if frequency[term] > self.df_cap]
        return " OR ".join(rare) if rare else " AND ".join(common)

    def _frequencies(self, conn: Connection, terms: Sequence[str]) -> dict[str, int]:
        """How many items each term matches, counted up to df_cap + 1, for all terms in one statement (a query has
        dozens of terms, and a statement each cost more than the counting)."""
        if not terms:
            return {}
        params: dict[str, object] = {f"t{i}": term for i, term in enumerate(terms)}
        params["cap"] = self.df_cap + 1
        row = conn.execute(_frequency_statement(len(terms)), params).one()
        return dict(zip(terms, (int(n) for n in row), strict=True))

    def create(self, conn: Connection) -> None:
        conn.exec_driver_sql(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(index_text, content='knowledge_items', "
            "content_rowid='id', tokenize='porter unicode61')"
        )

    def add(self, conn: Connection, rows: Sequence[tuple[int, str]]) -> None:
        if rows:
            conn.execute(
                text(f"INSERT INTO {FTS_TABLE}(rowid, index_text) VALUES (:id, :text)"),
                [{"id": item_id, "text": body} for item_id, body in rows],
            )

    def scored(self, conn: Connection, query: str, n: int, kinds: Sequence[str] | None) -> list[tuple[int, float]]:
        match = self._match(conn, query)
        if not match:
            return []
        if kinds:
            stmt, params = _SCORED_OF_KINDS, {"match": match, "kinds": list(kinds), "n": n}
        else:
            stmt, params = _SCORED, {"match": match, "n": n}
        return [(row[0], -float(row[1])) for row in conn.execute(stmt, params)]  # FTS5's bm25() is negated


class PythonBM25(LexicalIndex):
    """Okapi BM25 (k1 1.2, b 0.75, as FTS5) over an in-memory inverted index; portable to any SQL dialect."""

    name = "python bm25"

    def __init__(self) -> None:
        self._postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self._lengths: dict[int, int] = {}
        self._total = 0
        self.kinds: dict[int, str] = {}

    def sync(self, rows: Sequence[tuple[int, str, str]]) -> None:
        for item_id, kind, body in rows:
            if item_id in self._lengths:
                continue
            self.kinds[item_id] = kind
            words = tokens(body)
            self._lengths[item_id] = len(words)
            self._total += len(words)
            for word, count in Counter(words).items():
                self._postings[word].append((item_id, count))

    def scored(self, conn: Connection, query: str, n: int, kinds: Sequence[str] | None) -> list[tuple[int, float]]:
        docs = len(self._lengths)
        if not docs:
            return []
        average = self._total / docs or 1.0
        scores: dict[int, float] = defaultdict(float)
        for word in dict.fromkeys(tokens(query)):
            postings = self._postings.get(word, [])
            if not postings:
                continue
            idf = bm25_idf(docs, len(postings))
            for item_id, freq in postings:
                norm = _K1 * (1 - _B + _B * self._lengths[item_id] / average)
                scores[item_id] += idf * freq * (_K1 + 1) / (freq + norm)
        allowed = set(kinds) if kinds else None
        ranked = sorted(scores, key=lambda i: (-scores[i], i))
        if allowed is not None:
            ranked = [i for i in ranked if self.kinds.get(i) in allowed]
        return [(i, scores[i]) for i in ranked[:n]]
