"""The record thread's work per trial, by hand-off (the function `Record.io` runs): calls, SQL statements, commits
and CPU of the record's thread (in SQLAlchemy's execute, of it in the driver, in the commit), in the steady state
of a default run (instant fake LLM, trivial evaluator, concurrency 1).

    .venv/bin/python benchmarks/record_sql.py [--trials 100] [--lean] [--sql]

`--sql` also lists the statements (their first words) and how SQLAlchemy's compiled cache served them.
"""

from __future__ import annotations

import argparse

from _harness import run_marked

CHILD = """import collections, contextlib, json, sys, threading, time
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, default
from evoforge import loop
from evoforge.memory.transactions import Transactions
where = threading.local()  # name: the hand-off running on this thread
counts = collections.Counter()  # (hand-off, what) -> n
cpu = collections.Counter()  # hand-off [part] -> thread CPU seconds
marks = []

@event.listens_for(Engine, "before_cursor_execute")
def statement(conn, cursor, sql, parameters, context, executemany):
    name = getattr(where, "name", None)
    if name is not None:
        counts[(name, "statements")] += 1
        counts[(name, "sql: " + " ".join(sql.split()[:4])[:60])] += 1
        counts[(name, f"cache: {getattr(context, 'cache_hit', None)}")] += 1

@event.listens_for(Engine, "commit")
def commit(conn):
    name = getattr(where, "name", None)
    if name is not None:
        counts[(name, "commits")] += 1

io = Transactions.io

async def counted_io(self, fn, /, *args, **kwargs):
    name = getattr(fn, "__name__", "?")

    def timed(*a, **k):
        where.name = name
        start = time.thread_time()
        try:
            return fn(*a, **k)
        finally:
            cpu[name] += time.thread_time() - start
            counts[(name, "calls")] += 1

    return await io(self, timed, *args, **kwargs)

Transactions.io = counted_io

def clocked(owner, attribute, label):  # thread CPU inside owner.attribute (outermost call), by hand-off
    original = getattr(owner, attribute)

    def wrapper(*a, **k):
        name = getattr(where, "name", None)
        if name is None or getattr(where, label, False):
            return original(*a, **k)
        setattr(where, label, True)
        start = time.thread_time()
        try:
            return original(*a, **k)
        finally:
            cpu[f"{name} [{label}]"] += time.thread_time() - start
            setattr(where, label, False)

    setattr(owner, attribute, wrapper)

clocked(Connection, "execute", "execute")
clocked(Connection, "exec_driver_sql", "execute")
clocked(default.DefaultDialect, "do_execute", "driver")
clocked(default.DefaultDialect, "do_executemany", "driver")
clocked(default.DefaultDialect, "do_commit", "commit")
batch = Transactions.batch

@contextlib.contextmanager
def timed_batch(self):  # `io`'s batch, with its commit, under the hand-off's name
    start = time.thread_time()
    try:
        with batch(self) as written:
            yield written
    finally:
        name = getattr(where, "name", None)
        if name is not None:
            cpu[name + " (with commit)"] += time.thread_time() - start
            where.name = None

Transactions.batch = timed_batch
finished = loop.Conductor._finished

def marked(self, trial):
    out = finished(self, trial)
    marks.append(({"|".join(k): v for k, v in counts.items()}, dict(cpu)))
    return out

loop.Conductor._finished = marked
from evoforge.__main__ import main
status = main(sys.argv[1:])
print("MARKS " + json.dumps(marks))
sys.exit(status)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--lean", action="store_true", help="embeddings and the review off")
    parser.add_argument("--sql", action="store_true", help="list the statements too")
    args = parser.parse_args()
    marks = run_marked(CHILD, "MARKS", args.trials + 1, lean=args.lean)
    (first, first_cpu), (last, last_cpu) = marks[len(marks) // 4], marks[-1]  # past the seed, the first trials
    n = len(marks) - 1 - len(marks) // 4
    per = {key: (last.get(key, 0) - first.get(key, 0)) / n for key in last}
    ms = {key: 1000 * (last_cpu.get(key, 0) - first_cpu.get(key, 0)) / n for key in last_cpu}
    for fn in sorted({key.split("|")[0] for key in per}):
        if per.get(fn + "|calls", 0) < 0.01:
            continue
        print(f"{fn}: {per.get(fn + '|calls', 0):.2f} calls, {per.get(fn + '|statements', 0):.2f} statements, "
              f"{per.get(fn + '|commits', 0):.2f} commits, {ms.get(fn, 0):.2f} ms CPU "
              f"({ms.get(fn + ' (with commit)', 0):.2f} with the commit) per trial; in execute "
              f"{ms.get(fn + ' [execute]', 0):.2f} (the driver {ms.get(fn + ' [driver]', 0):.2f}), "
              f"in the commit {ms.get(fn + ' [commit]', 0):.2f}")
        if args.sql:
            for key, value in sorted(per.items(), key=lambda kv: -kv[1]):
                if key.startswith((fn + "|sql: ", fn + "|cache: ")) and value:
                    print(f"    {value:5.2f}  {key.split('|', 1)[1]}")
    statements = sum(v for k, v in per.items() if k.endswith("|statements"))
    total = sum(v for k, v in ms.items() if k.endswith("(with commit)"))
    parts = {label: sum(v for k, v in ms.items() if k.endswith(f"[{label}]"))
             for label in ("execute", "driver", "commit")}
    print(f"all hand-offs, ms CPU per trial: in execute {parts['execute']:.2f} (the driver {parts['driver']:.2f}),"
          f" in the commit {parts['commit']:.2f}")
    print(f"RESULT record_statements_per_trial={statements:.2f} record_cpu_ms_per_trial={total:.2f} ({n} trials)")


if __name__ == "__main__":
    main()
