"""Cognition base benchmark: index build time and hybrid query latency at 1k, 10k and 100k synthetic items, and
(`--retrieval`) ranking quality on a labelled retrieval set.

Dense vectors at scale are deterministic random unit vectors (HashEncoder, 384-d): the MiniLM model needs ~25 ms an
item on 2 cores, too slow for 100k items here, so its encoding speed is timed separately on a few hundred items.
Query latency is a full `CognitionBase.search` (FTS5 BM25 + vector search + score fusion + MMR + fetching the
hits), without the query's own encoding (timed separately for MiniLM).
Usage: python benchmarks/cognition.py [--sizes 1000,10000] [--retrieval]

`--retrieval`: the circle-packing example's knowledge folder plus benchmarks/retrieval/knowledge.jsonl in a base
encoded by the real MiniLM model, and the symptom queries of benchmarks/retrieval/queries.jsonl (each labelled with
the title of the item that answers it, written with as few shared words as possible); prints mean reciprocal rank
and recall@1 of the lexical, dense and fused (served: fusion, then MMR) rankings, each within its first 10.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from evoforge.config import KnowledgeSettings
from evoforge.memory.cognition import CognitionBase, KnowledgeItem
from evoforge.memory.cognition.embeddings import HashEncoder, load_encoder
from evoforge.memory.cognition.evaluation import RANKINGS, rank_queries, read_queries, summary

VOCABULARY = 20_000
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "pe", "da", "gu", "ze", "fi", "bo", "xa", "qu"]
QUERIES = 200
KINDS = ("heuristic", "paper", "pitfall", "lesson", "note")
ROOT = Path(__file__).resolve().parent.parent
RETRIEVAL_ITEMS = (ROOT / "examples" / "circle_packing" / "knowledge",
                   ROOT / "benchmarks" / "retrieval" / "knowledge.jsonl")
RETRIEVAL_QUERIES = ROOT / "benchmarks" / "retrieval" / "queries.jsonl"


def vocabulary(rng: np.random.Generator) -> list[str]:
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(SYLLABLES, size=int(rng.integers(2, 5)))))
    return sorted(words)


def synthetic_items(count: int, words: list[str], rng: np.random.Generator) -> list[KnowledgeItem]:
    """Zipf-distributed words (exponent 1.1), like natural text: a few very common terms, a long tail."""
    weights = 1.0 / np.arange(1, len(words) + 1) ** 1.1
    draws = rng.choice(len(words), size=(count, 45), p=weights / weights.sum())
    return [
        KnowledgeItem(kind=KINDS[i % len(KINDS)], title=" ".join(words[w] for w in row[:5]),
                      trigger=" ".join(words[w] for w in row[5:11]), content=" ".join(words[w] for w in row[11:]),
                      tags=(f"t{i % 50}",))
        for i, row in enumerate(draws)
    ]


def queries(items: list[KnowledgeItem], rng: np.random.Generator) -> list[str]:
    """Six words of a random item's text each: queries that some item answers well."""
    out = []
    for index in rng.integers(0, len(items), size=QUERIES):
        text = items[int(index)].index_text().split()
        out.append(" ".join(rng.choice(text, size=6, replace=False)))
    return out


def bench_size(count: int, folder: Path, words: list[str], seed: int) -> dict[str, float | str]:
    rng = np.random.default_rng(seed)
    items = synthetic_items(count, words, rng)
    kb = CognitionBase.open(folder / f"kb_{count}.db", encoder=HashEncoder(), settings=KnowledgeSettings())
    start = time.perf_counter()
    kb.add(items)
    stored = time.perf_counter() - start
    backends = kb.backends  # loads the vectors and builds the dense index
    built = time.perf_counter() - start
    asked = queries(items, rng)
    for query in asked[:10]:
        kb.search(query, 5)  # warm caches
    latencies = []
    for query in asked:
        began = time.perf_counter()
        kb.search(query, 5)
        latencies.append((time.perf_counter() - began) * 1000)
    kb.close()
    return {"items": count, "store_s": stored, "build_s": built, "query_ms": statistics.median(latencies),
            "p95_ms": float(np.percentile(latencies, 95)), "dense": backends["dense"], "lexical": backends["lexical"]}


def bench_encoder(count: int) -> str:
    encoder = load_encoder()
    if encoder is None:
        return "MiniLM encoding: skipped (embeddings extra not installed)"
    texts = [item.index_text() for item in synthetic_items(count, vocabulary(np.random.default_rng(1)),
                                                           np.random.default_rng(2))]
    start = time.perf_counter()
    encoder.encode(texts)
    per_item = (time.perf_counter() - start) / count * 1000
    start = time.perf_counter()
    for text in texts[:20]:
        encoder.encode([text[:80]])
    per_query = (time.perf_counter() - start) / 20 * 1000
    return f"MiniLM encoding (numpy, real model): {per_item:.1f} ms/item in batches over {count} items; " \
           f"{per_query:.1f} ms per single query"


def bench_retrieval(settings: KnowledgeSettings) -> None:
    """MRR and recall@1 of each ranking on the labelled set, and the queries the fused ranking misses at rank 1."""
    with tempfile.TemporaryDirectory() as folder, CognitionBase.open(Path(folder) / "kb.db", settings=settings) as kb:
        if kb.mode != "hybrid":
            raise SystemExit(f"--retrieval needs the MiniLM model: retrieval is {kb.mode}")
        kb.import_paths(list(RETRIEVAL_ITEMS))
        ranks = rank_queries(kb, read_queries(RETRIEVAL_QUERIES))
        print(f"{len(ranks)} labelled queries over {kb.count()} items; ranks: lexical dense fused")
        for row in ranks:
            if row.fused != 1:
                print(f"  {row.lexical or '-':>3} {row.dense or '-':>3} {row.fused or '-':>3}  {row.query.query!r}")
    numbers = summary(ranks)
    for name in RANKINGS:
        print(f"{name:>8}: MRR {numbers[f'mrr_{name}']:.3f}  recall@1 {numbers[f'r1_{name}']:.3f}")
    print("RESULT " + " ".join(f"{key}={numbers[key]:.3f}" for key in
                                [f"mrr_{n}" for n in RANKINGS] + [f"r1_{n}" for n in RANKINGS]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--encode", type=int, default=300, help="items to encode with the real model (0: skip)")
    parser.add_argument("--retrieval", action="store_true", help="ranking quality on the labelled set, then stop")
    parser.add_argument("--dense-weight", type=float, default=KnowledgeSettings().dense_weight,
                        help="--retrieval: the fusion's dense weight")
    args = parser.parse_args()
    if args.retrieval:
        bench_retrieval(KnowledgeSettings(dense_weight=args.dense_weight))
        return
    sizes = [int(size) for size in args.sizes.split(",")]
    words = vocabulary(np.random.default_rng(0))
    print("dense vectors at scale: random 384-d unit vectors (HashEncoder); query latency excludes query encoding")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            rows.append(bench_size(size, Path(folder), words, seed=size))
            row = rows[-1]
            print(f"{row['items']:>8} items  store {row['store_s']:7.2f} s  build {row['build_s']:7.2f} s  "
                  f"query median {row['query_ms']:6.2f} ms  p95 {row['p95_ms']:6.2f} ms  "
                  f"[{row['lexical']} + {row['dense']}]", flush=True)
    if args.encode:
        print(bench_encoder(args.encode))
    by_size = {row["items"]: row for row in rows}
    first, last = by_size[sizes[0]], by_size[sizes[-1]]
    ratio = float(last["query_ms"]) / float(first["query_ms"])
    print(f"RESULT ratio_{_k(sizes[-1])}_{_k(sizes[0])}={ratio:.2f} build_{_k(sizes[-1])}_s={last['build_s']:.1f} "
          f"query_{_k(sizes[0])}_ms={first['query_ms']:.2f} query_{_k(sizes[-1])}_ms={last['query_ms']:.2f}")


def _k(size: int) -> str:
    return f"{size // 1000}k" if size % 1000 == 0 else str(size)


if __name__ == "__main__":
    main()
