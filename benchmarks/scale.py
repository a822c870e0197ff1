"""Scale-out costs: trials per minute with 1, 2 and 4 local Ray workers against the local executor at the same
concurrency (a 1 s evaluator, the instant fake LLM), and the record's sampling and insert latency at 1k / 10k / 100k
trials on SQLite and on a throw-away PostgreSQL (tests/postgres.py).

    .venv/bin/python benchmarks/scale.py [--sizes 1000,10000,100000] [--workers 1,2,4] [--skip-ray] [--skip-record]

insert: one trial written the way the loop writes it (add_trial, then finish_trial with its outcome), mean of 30.
sample: what a runner does to pick a parent from the record (load its trials, rebuild the ucb1 sampler, pick), mean
of 3; best: the record's best-trial query. The record is filled in bulk first (one INSERT per 2000 rows).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _harness import Answers, FakeLLM, finish_times, make_task
from sqlalchemy import insert

import evoforge
from evoforge.config import RunSettings
from evoforge.memory import tables as t
from evoforge.memory.population import Population
from evoforge.memory.record import Record
from evoforge.memory.sampling import make_sampler
from evoforge.memory.tables import utcnow
from evoforge.models import Direction, Outcome, TrialStatus

CHUNK = 2000


# ---- trials per minute -------------------------------------------------------------------------------------------

def trials_per_minute(tmp: Path, fake: FakeLLM, name: str, concurrency: int, ray_address: str | None) -> float:
    """A run of 1 + 6 × concurrency trials; its children's rate from the seed's end to the last one's."""
    task = make_task(tmp / f"task-{name}", 1.0, fake.base_url, lean=True)
    run_dir = tmp / f"run-{name}"
    settings = RunSettings(trials=1 + 6 * concurrency, concurrency=concurrency, llm="fake-model", seed=0,
                           ray_address=ray_address)
    evoforge.run(task, run_dir=run_dir, settings=settings)
    ends = finish_times(run_dir, after_id=0)
    span = ends[-1] - ends[0]
    return 60.0 * (len(ends) - 1) / span if span > 0 else float("nan")


def throughput(workers: list[int], skip_ray: bool) -> dict[int, tuple[float, float | None]]:
    """{workers: (local trials/min, ray trials/min)} at concurrency = workers."""
    from raycluster import local_ray

    rates: dict[int, tuple[float, float | None]] = {}
    with tempfile.TemporaryDirectory() as name, FakeLLM() as fake:
        fake.set_handler(Answers(0.0))
        tmp = Path(name)
        for n in workers:
            local = trials_per_minute(tmp, fake, f"local-{n}", n, None)
            remote = None
            if not skip_ray:
                with local_ray(num_cpus=n):
                    remote = trials_per_minute(tmp, fake, f"ray-{n}", n, "local")
            rates[n] = (local, remote)
            shown = f"{remote:.1f}" if remote is not None else "-"
            print(f"  concurrency {n}: local {local:.1f} trials/min, ray ({n} workers) {shown}", flush=True)
    return rates


# ---- the record's latency ----------------------------------------------------------------------------------------

def fill(record: Record, n: int) -> None:
    """A run and n finished trials (children of the first, varied scores and code), inserted in bulk."""
    record.create_run(task_name="scale", config={"settings": {}, "task_config": {}}, seed=0,
                      task_snapshot={"task.yaml": "name: scale\n"}, stopping={"trials": n + 1000})
    run_id = record.run_info().id
    rng, now = random.Random(1), utcnow()
    rows = []
    for i in range(n):
        x = rng.uniform(0.0, 2.5)
        rows.append(dict(run_id=run_id, parent_ids=[1] if i else [], inspiration_ids=[], status="succeeded",
                         name=f"filler {i}", motivation="filler", code=f"x = {x!r}\n# knob\n", diff="",
                         score=-(x - 3.0) ** 2, metrics={"x": x}, error_class=None, error_message=None, seconds=0.1,
                         seconds_saved=0.0, proposer="llm", model="fake", digest="", fingerprint=None, suspect=False,
                         reused_from=None, created_at=now, started_at=now, finished_at=now, facts={}))
    with record._engine.begin() as conn:  # bulk load for the benchmark only
        for start in range(0, n, CHUNK):
            conn.execute(insert(t.trials), rows[start:start + CHUNK])


def mean_ms(action: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        action()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.fmean(times)


def latencies(record: Record) -> dict[str, float]:
    """insert / sample / best latency (ms) on a filled record."""
    outcome = Outcome(status=TrialStatus.SUCCEEDED, score=-1.0, metrics={"x": 2.0}, seconds=1.0)

    def write() -> None:
        trial = record.add_trial(parent_ids=[1], inspiration_ids=[], name="new", motivation="bench",
                                 code="x = 2.0\n# knob\n", diff="", proposer="llm", model="fake",
                                 status=TrialStatus.RUNNING)
        record.finish_trial(trial.id, outcome)

    def sample() -> None:
        population = Population(Direction.MAXIMIZE, record.trials())
        sampler = make_sampler("ucb1", seed=0)
        sampler.rebuild(list(population), Direction.MAXIMIZE)
        sampler.pick(list(population), Direction.MAXIMIZE, {}, 2)

    return {"insert": mean_ms(write, 30), "sample": mean_ms(sample, 3),
            "best": mean_ms(lambda: record.best(Direction.MAXIMIZE), 10)}


def record_latency(sizes: list[int], backends: list[str]) -> dict[tuple[str, int], dict[str, float]]:
    from postgres import throwaway_cluster

    found: dict[tuple[str, int], dict[str, float]] = {}

    def measure(backend: str, url: str, n: int) -> None:
        record = Record(url)
        try:
            start = time.perf_counter()
            fill(record, n)
            filled = time.perf_counter() - start
            found[(backend, n)] = {**latencies(record), "fill_s": filled}
        finally:
            record.close()
        row = found[(backend, n)]
        print(f"  {backend:10s} {n:>7d} trials: insert {row['insert']:.2f} ms, sample {row['sample']:.1f} ms, "
              f"best {row['best']:.2f} ms (filled in {filled:.1f} s)", flush=True)

    with tempfile.TemporaryDirectory() as name:
        if "sqlite" in backends:
            for n in sizes:
                measure("sqlite", f"sqlite:///{Path(name) / f'record-{n}.db'}", n)
        if "postgresql" in backends:
            import psycopg

            with throwaway_cluster() as url:
                for n in sizes:
                    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                                         autocommit=True) as conn:
                        conn.execute(f'CREATE DATABASE "scale_{n}"')
                    measure("postgresql", url.rsplit("/", 1)[0] + f"/scale_{n}", n)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="record sizes (trials), comma-separated")
    parser.add_argument("--workers", default="1,2,4", help="Ray workers (= concurrency), comma-separated")
    parser.add_argument("--skip-ray", action="store_true", help="the local executor only")
    parser.add_argument("--skip-record", action="store_true")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    print("throughput (1 s evaluator, instant fake LLM, lean task: no embeddings, no review):", flush=True)
    rates = throughput(workers, args.skip_ray)
    print("\n| workers = concurrency | local trials/min | ray trials/min | ray / local |\n|---|---|---|---|")
    ratios = {}
    for n, (local, remote) in rates.items():
        ratios[n] = remote / local if remote is not None else float("nan")
        shown = f"{remote:.1f}" if remote is not None else "-"
        print(f"| {n} | {local:.1f} | {shown} | {ratios[n]:.2f} |")
    found: dict[tuple[str, int], dict[str, float]] = {}
    if not args.skip_record:
        print("\nrecord latency:", flush=True)
        found = record_latency(sizes, args.backends.split(","))
        print("\n| backend | trials | insert ms | sample ms | best ms |\n|---|---|---|---|---|")
        for (backend, n), row in found.items():
            print(f"| {backend} | {n} | {row['insert']:.2f} | {row['sample']:.1f} | {row['best']:.2f} |")
    big = max(sizes)

    def value(backend: str, what: str) -> str:
        row = found.get((backend, big))
        return f"{row[what]:.2f}" if row else "nan"

    suffix = f"{big // 1000}k"
    print(" ".join(["RESULT", *(f"ray{n}_vs_local={ratios[n]:.2f}" for n in workers),
                    f"sqlite_insert_ms_{suffix}={value('sqlite', 'insert')}",
                    f"pg_insert_ms_{suffix}={value('postgresql', 'insert')}",
                    f"sqlite_sample_ms_{suffix}={value('sqlite', 'sample')}",
                    f"pg_sample_ms_{suffix}={value('postgresql', 'sample')}"]))


if __name__ == "__main__":
    main()
