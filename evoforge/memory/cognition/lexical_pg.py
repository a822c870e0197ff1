"""Lexical search on PostgreSQL with its own full-text search: a generated `tsvector` column over the items' index
text (English stemming) with a GIN index, queried term by term through `plainto_tsquery` (user text never becomes
tsquery syntax) and ranked by Okapi BM25 computed in SQL from `ts_rank_cd` term counts, as FTS5 ranks on SQLite."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import Connection, Engine, bindparam, text
from sqlalchemy.exc import SQLAlchemyError

from evoforge.memory.cognition.items import KnowledgeError
from evoforge.memory.cognition.lexical import LexicalIndex, bm25_idf, query_tokens

log = logging.getLogger(__name__)

TSV_COLUMN = "index_tsv"
WORDS_COLUMN = "index_words"  # the item's length in words, for BM25's length normalisation
TSV_INDEX = "knowledge_items_index_tsv"
CONFIG = "evoforge_english"  # English snowball stemming (as FTS5's porter) without a stopword list, as FTS5
_DICTIONARY = "evoforge_english_stem"
_WORD_TOKENS = "asciiword, asciihword, hword_asciipart, word, hword, hword_part"
_LOCK_KEY = 0x65766F6B62  # pg_advisory_xact_lock key ("evokb"): openers add the column one at a time
_DF_MEMORY = 50_000  # words whose document frequency is remembered (forgotten all at once beyond)
_PHRASE_CHARS = 400  # of the query, matched as a phrase
_K1 = 1.2
_B = 0.75


def _term(i: int) -> str:
    return f"plainto_tsquery('{CONFIG}', :t{i})"


class PostgresFts(LexicalIndex):
    """`knowledge_items.index_tsv` (generated from index_text, GIN-indexed) matched with the OR of the query's
    word tokens, ranked by Okapi BM25 (k1 1.2, b 0.75, as FTS5): a term's frequency in an item is its
    `ts_rank_cd` with unit weights and no normalisation (one per occurrence), an item's length its number of
    words (`index_words`, generated too). As with FTS5, a term matching more than `df_cap` items is dropped as a
    stopword (query cost stays bounded as the base grows), and a query made only of such common terms requires
    all of them; an item holding the whole query as a phrase ranks above those that do not. The average length is
    read again when the number of items has changed by a tenth."""

    name = "postgresql fts"

    def __init__(self, df_cap: int = 1000) -> None:
        self.df_cap = df_cap
        self._average: tuple[int, float] = (0, 1.0)  # (items when measured, average words per item)
        self._docs = 0  # items synced, ids up to self._last
        self._last = 0
        self._df: dict[str, tuple[int, int]] = {}  # word → (items it matched, capped; items in the base then)

    def create(self, conn: Connection) -> None:
        """Add the column and its index when missing (an existing base is indexed once, here)."""
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        configured = conn.execute(text("SELECT 1 FROM pg_ts_config WHERE cfgname = :name "
                                       "AND cfgnamespace = current_schema()::regnamespace"), {"name": CONFIG}).first()
        if configured is None:  # the built-in `english` drops words (same, more, each, ...) that queries need
            conn.exec_driver_sql(f"CREATE TEXT SEARCH DICTIONARY {_DICTIONARY} (TEMPLATE = snowball, "
                                 "LANGUAGE = english)")
            conn.exec_driver_sql(f"CREATE TEXT SEARCH CONFIGURATION {CONFIG} (COPY = english)")
            conn.exec_driver_sql(f"ALTER TEXT SEARCH CONFIGURATION {CONFIG} ALTER MAPPING FOR {_WORD_TOKENS} "
                                 f"WITH {_DICTIONARY}")
        present = conn.execute(text(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = 'knowledge_items' AND column_name IN (:tsv, :words)"),
            {"tsv": TSV_COLUMN, "words": WORDS_COLUMN}).scalar_one()
        if present < 2:
            conn.exec_driver_sql(
                f"ALTER TABLE knowledge_items ADD COLUMN IF NOT EXISTS {TSV_COLUMN} tsvector "
                f"GENERATED ALWAYS AS (to_tsvector('{CONFIG}'::regconfig, index_text)) STORED, "
                f"ADD COLUMN IF NOT EXISTS {WORDS_COLUMN} integer "
                r"GENERATED ALWAYS AS (array_length(regexp_split_to_array(index_text, '\W+'), 1)) STORED")
        indexed = conn.execute(text("SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() "
                                    "AND indexname = :name"), {"name": TSV_INDEX}).first()
        if indexed is None:  # CREATE INDEX IF NOT EXISTS would lock the table even when there is nothing to do
            conn.exec_driver_sql(f"CREATE INDEX {TSV_INDEX} ON knowledge_items USING gin ({TSV_COLUMN})")

    def sync(self, rows: Sequence[tuple[int, str, str]]) -> None:
        """Count the items (the base syncs every committed row once, before searching): BM25's N without a
        count(*), which reads the whole table."""
        self._docs += sum(1 for row in rows if row[0] > self._last)
        self._last = max([self._last, *(row[0] for row in rows)])

    def _weights(self, conn: Connection, words: list[str]) -> tuple[list[int], dict[int, float], bool]:
        """(terms that match anything, idf of each, whether the match is an AND of common terms), for the terms
        given by index into `words`. A term's document frequency is counted (up to df_cap + 1, all terms in one
        statement) unless this process counted it as non-zero while the base was within a tenth of its size: items
        are only ever added, so a known frequency is a close lower bound and a zero is always counted again."""
        docs = self._docs or int(conn.execute(text("SELECT count(*) FROM knowledge_items")).scalar_one())
        if not docs:
            return [], {}, False
        known = {w: df for w, (df, at) in ((w, self._df.get(w, (0, 0))) for w in words) if df and docs * 10 <= at * 11}
        missing = [w for w in words if w not in known]
        if missing:
            counts = ", ".join(f"(SELECT count(*) FROM (SELECT 1 FROM knowledge_items WHERE {TSV_COLUMN} @@ "
                               f"{_term(i)} LIMIT :cap) s)" for i in range(len(missing)))
            params: dict[str, object] = {f"t{i}": word for i, word in enumerate(missing)}
            params["cap"] = self.df_cap + 1
            row = conn.execute(text(f"SELECT {counts}"), params).one()
            if len(self._df) > _DF_MEMORY:
                self._df.clear()
            for word, df in zip(missing, row, strict=True):
                known[word] = int(df)
                self._df[word] = (int(df), docs)
        if not self._average[0] or abs(docs - self._average[0]) * 10 > self._average[0]:
            average = conn.execute(text(f"SELECT avg({WORDS_COLUMN}) FROM knowledge_items")).scalar()
            self._average = (docs, float(average or 1.0) or 1.0)
        frequency = [known[w] for w in words]
        rare = [i for i, df in enumerate(frequency) if 0 < df <= self.df_cap]
        common = [i for i, df in enumerate(frequency) if df > self.df_cap]
        chosen = rare or common
        return chosen, {i: bm25_idf(max(docs, frequency[i]), frequency[i]) for i in chosen}, not rare

    def scored(self, conn: Connection, query: str, n: int, kinds: Sequence[str] | None) -> list[tuple[int, float]]:
        words = query_tokens(query)
        if not words:
            return []
        chosen, idf, all_common = self._weights(conn, words)
        if not chosen:
            return []
        match = (" && " if all_common else " || ").join(_term(i) for i in chosen)
        frequencies = ", ".join(f"ts_rank_cd('{{1,1,1,1}}', {TSV_COLUMN}, {_term(i)}, 0) AS f{i}" for i in chosen)
        score = " + ".join(f":w{i} * f{i} / (f{i} + :norm * (1 - :b + :b * len / :average))" for i in chosen)
        where = f"{TSV_COLUMN} @@ ({match})"
        params: dict[str, object] = {f"t{i}": words[i] for i in chosen}
        params.update({f"w{i}": idf[i] * (_K1 + 1) for i in chosen})
        params.update({"n": n, "norm": _K1, "b": _B, "average": self._average[1]})
        if len(words) > 1:  # the query's words in its order, side by side: above every item without them so
            frequencies += f", ({TSV_COLUMN} @@ phraseto_tsquery('{CONFIG}', :phrase))::int AS phrase"
            score += " + :bonus * phrase"  # (each term adds less than its weight)
            params.update({"phrase": query[:_PHRASE_CHARS], "bonus": sum(idf[i] * (_K1 + 1) for i in chosen)})
        if kinds:
            where += " AND kind IN :kinds"
            params["kinds"] = list(kinds)
        stmt = text(f"SELECT id, {score} AS score FROM (SELECT id, {WORDS_COLUMN} AS len, {frequencies} "
                    f"FROM knowledge_items WHERE {where}) matched ORDER BY score DESC, id LIMIT :n")
        if kinds:
            stmt = stmt.bindparams(bindparam("kinds", expanding=True))
        return [(int(row[0]), float(row[1])) for row in conn.execute(stmt, params)]


def postgres_backend(engine: Engine, df_cap: int) -> PostgresFts | None:
    """PostgreSQL's full-text search for this base, or None (logged) where the column cannot be added, e.g. for a
    user without the right to alter the table: the portable Python BM25 serves then."""
    fts = PostgresFts(df_cap)
    try:
        with engine.begin() as conn:
            fts.create(conn)
    except SQLAlchemyError as exc:
        log.warning("cognition base: no full-text column on PostgreSQL (%s); BM25 runs in Python",
                    str(exc).splitlines()[0])
        return None
    return fts


def require_postgres(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        raise KnowledgeError(f"the postgres lexical backend needs PostgreSQL; this knowledge base is "
                             f"{engine.dialect.name}")
