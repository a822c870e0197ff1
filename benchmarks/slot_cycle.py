"""Where an evaluation slot's cycle goes at concurrency 1 (default settings, instant fake LLM, trivial evaluator):
the slot's semaphore, the record's `_start` and the engineer's `evaluate` are wrapped with time marks in the evoforge
process, and the cycle is split into acquire → `_start` begins (the hop to the record's thread), `_start`, back on
the loop (the jail's start handed to the warm worker meanwhile), `evaluate`, and release → the next acquire; plus
how often a trial was already waiting at a release (when none was, the proposals, not the slot, set the pace).
`--prefetch N` overrides the default (2 × concurrency).

    .venv/bin/python benchmarks/slot_cycle.py [--trials 300] [--prefetch N]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys

from _harness import run_marked

CHILD = r'''
import asyncio, json, sys, time
from evoforge import loop
from evoforge.experiment import engineer
marks = []

class Slots(asyncio.Semaphore):
    async def acquire(self):
        result = await super().acquire()
        marks.append(("acquired", time.perf_counter()))
        return result

    def release(self):
        waiting = sum(not w.done() for w in (self._waiters or ()))
        marks.append(("released", time.perf_counter(), waiting))
        super().release()

init = loop.Conductor.__init__
def conductor(self, *args, **kwargs):
    init(self, *args, **kwargs)
    self.eval_slots = Slots(self.settings.concurrency)
loop.Conductor.__init__ = conductor
start = loop.Conductor._start
def started(self, *args):
    marks.append(("start", time.perf_counter()))
    try:
        return start(self, *args)
    finally:
        marks.append(("started", time.perf_counter()))
loop.Conductor._start = started
evaluate = engineer.Engineer.evaluate
async def evaluated(self, *args, **kwargs):
    marks.append(("evaluate", time.perf_counter()))
    try:
        return await evaluate(self, *args, **kwargs)
    finally:
        marks.append(("evaluated", time.perf_counter()))
engineer.Engineer.evaluate = evaluated
from evoforge.__main__ import main
status = main(sys.argv[1:])
print("MARKS " + json.dumps(marks))
sys.exit(status)
'''
STEPS = (("acquired", "start", "acquire → _start begins"), ("start", "started", "_start"),
         ("started", "evaluate", "back on the loop"), ("evaluate", "evaluated", "evaluate"))


def cycles(marks: list[list]) -> tuple[list[dict[str, float]], collections.Counter[int]]:
    """One dict of times per slot cycle that ran `_start` and `evaluate` (a reused repeat does not), and how many
    trials were waiting at each release."""
    found: list[dict[str, float]] = []
    waiting: collections.Counter[int] = collections.Counter()
    current: dict[str, float] | None = None
    for mark in marks:
        if mark[0] == "acquired":
            current = {"acquired": mark[1]}
        elif current is not None:
            current.setdefault(mark[0], mark[1])
            if mark[0] == "released":
                waiting[mark[2]] += 1
                found.append(current)
                current = None
    for one, following in zip(found, found[1:], strict=False):
        one["next"] = following["acquired"]
    return [c for c in found if all(k in c for k in ("start", "started", "evaluate", "evaluated"))], waiting


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--prefetch", type=int, default=None)
    args = parser.parse_args()
    extra = [] if args.prefetch is None else ["--prefetch", str(args.prefetch)]
    whole, waiting = cycles(run_marked(CHILD, "MARKS", args.trials, extra=extra))
    steady = [c for c in whole[len(whole) // 6:] if "next" in c]  # past the start-up
    if len(steady) < 2:
        sys.exit("too few slot cycles to measure; run more trials")
    ms = {label: 1000 * statistics.mean(c[b] - c[a] for c in steady) for a, b, label in STEPS}
    ms["release → next acquire"] = 1000 * statistics.mean(c["next"] - c["released"] for c in steady)
    cycle = 1000 * statistics.mean(c["next"] - c["acquired"] for c in steady)
    fed = sum(n for k, n in waiting.items() if k > 0) / max(1, sum(waiting.values()))
    steps = ", ".join(f"{k} {v:.2f}" for k, v in ms.items())
    print(f"{len(steady)} slot cycles in the steady state, ms each: {steps}")
    print(f"a trial was waiting at {100 * fed:.0f}% of the releases")
    print(f"RESULT cycle_ms={cycle:.2f} evaluate_ms={ms['evaluate']:.2f} start_hop_ms="
          f"{ms['acquire → _start begins'] + ms['_start'] + ms['back on the loop']:.2f} fed_share={fed:.2f}")


if __name__ == "__main__":
    main()
