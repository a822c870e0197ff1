"""The cognition base on PostgreSQL against SQLite: retrieval quality on the labelled set (benchmarks/retrieval, as
`cognition.py --retrieval`) with each lexical backend, and search latency at 1k and 10k synthetic items.

Quality: MRR@10 and recall@1 of the lexical, dense and fused rankings, on SQLite (FTS5) and on PostgreSQL (its
full-text search, and the portable Python BM25 it used before), with the real MiniLM model (lexical only without it).
Latency: a full `CognitionBase.search` (lexical + vector search + fusion + MMR + fetching the hits), HashEncoder
vectors as in cognition.py, median over 200 queries; PostgreSQL on 127.0.0.1, so each statement is a round trip.

Usage: python benchmarks/knowledge_pg.py [--url postgresql+psycopg://...] [--sizes 1000,10000] [--no-quality]
Without --url a throw-away cluster is started (tests/postgres.py: Debian's PostgreSQL binaries).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from cognition import RETRIEVAL_ITEMS, RETRIEVAL_QUERIES, queries, synthetic_items, vocabulary
from sqlalchemy import create_engine, text

from evoforge.memory.cognition import CognitionBase
from evoforge.memory.cognition.embeddings import HashEncoder, load_encoder
from evoforge.memory.cognition.evaluation import rank_queries, read_queries, summary

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def cluster(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from postgres import throwaway_cluster

    with throwaway_cluster() as started:
        yield started


def fresh_database(url: str, name: str) -> str:
    """An empty database `name` on the server of `url` (dropped first if present); its URL."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


def quality(location: str, lexical: str, encoder: object) -> dict[str, float]:
    with CognitionBase.open(location, encoder=encoder, embeddings=encoder is not None, lexical=lexical) as kb:
        kb.import_paths(list(RETRIEVAL_ITEMS))
        return summary(rank_queries(kb, read_queries(RETRIEVAL_QUERIES)))


def latency(location: str, count: int) -> float:
    rng = np.random.default_rng(count)
    items = synthetic_items(count, vocabulary(np.random.default_rng(0)), rng)
    with CognitionBase.open(location, encoder=HashEncoder()) as kb:
        kb.add(items)
        asked = queries(items, rng)
        for query in asked[:10]:
            kb.search(query, 5)  # warm caches and the dense index
        times = []
        for query in asked:
            began = time.perf_counter()
            kb.search(query, 5)
            times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="a PostgreSQL server URL (default: a throw-away cluster)")
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--no-quality", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    result: list[str] = []
    with cluster(args.url) as server, tempfile.TemporaryDirectory() as folder:
        if not args.no_quality:
            encoder = load_encoder()
            print(f"quality on the labelled set ({'hybrid, MiniLM' if encoder else 'lexical only'}):")
            for label, location, lexical in (("sqlite fts5", f"{folder}/q.db", "fts5"),
                                             ("pg fts", fresh_database(server, "kbq_fts"), "postgres"),
                                             ("pg python", fresh_database(server, "kbq_py"), "python")):
                numbers = quality(location, lexical, encoder)
                print(f"  {label:>12}: " + "  ".join(f"{k} {v:.3f}" for k, v in numbers.items()), flush=True)
                tag = label.replace(" ", "_")
                result += [f"mrr_lexical_{tag}={numbers['mrr_lexical']:.3f}",
                           f"mrr_fused_{tag}={numbers['mrr_fused']:.3f}"]
        for size in sizes:
            sqlite_ms = latency(f"{folder}/kb_{size}.db", size)
            pg_ms = latency(fresh_database(server, f"kb_{size}"), size)
            print(f"  {size:>6} items: search median sqlite {sqlite_ms:6.2f} ms, postgresql {pg_ms:6.2f} ms",
                  flush=True)
            k = f"{size // 1000}k" if size % 1000 == 0 else str(size)
            result += [f"sqlite_{k}_ms={sqlite_ms:.2f}", f"pg_{k}_ms={pg_ms:.2f}"]
    print("RESULT " + " ".join(result))


if __name__ == "__main__":
    main()
