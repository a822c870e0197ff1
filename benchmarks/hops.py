"""Thread hops of the event loop per trial: calls handed to another thread (the record's, the cognition base's, the
default executor's) by the evoforge process, counted by thread and by the function handed over, in the steady state
of a default run (instant fake LLM, trivial evaluator, concurrency 1).

    .venv/bin/python benchmarks/hops.py [--trials 60] [--lean]
"""

from __future__ import annotations

import argparse

from _harness import run_marked

CHILD = """import collections, json, sys
from concurrent import futures
from evoforge import loop
hops = collections.Counter()
finished_at = []
submit = futures.ThreadPoolExecutor.submit

def name_of(fn, args):
    inner = getattr(fn, "func", fn)  # functools.partial
    name = getattr(inner, "__qualname__", repr(inner))
    if name.endswith("io.<locals>.work"):  # the record's `io`: the function it runs
        cell = inner.__closure__[inner.__code__.co_freevars.index("fn")]
        name = "record." + getattr(cell.cell_contents, "__name__", "?")
    return name

def counting(self, fn, /, *args, **kwargs):
    hops[f"{self._thread_name_prefix or 'executor'}: {name_of(fn, args)}"] += 1
    return submit(self, fn, *args, **kwargs)

futures.ThreadPoolExecutor.submit = counting
from evoforge.hand_off import HandOff
call = HandOff.call

async def counting_call(self, fn, /, *args, **kwargs):
    hops[f"{self.name}: {name_of(fn, args)}"] += 1
    return await call(self, fn, *args, **kwargs)

HandOff.call = counting_call
finished = loop.Conductor._finished

def marked(self, trial):
    out = finished(self, trial)
    finished_at.append(dict(hops))
    return out

loop.Conductor._finished = marked
from evoforge.__main__ import main
status = main(sys.argv[1:])
print("HOPS " + json.dumps(finished_at))
sys.exit(status)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--lean", action="store_true", help="embeddings and the review off")
    args = parser.parse_args()
    marks = run_marked(CHILD, "HOPS", args.trials + 1, lean=args.lean)
    first, last = marks[len(marks) // 4], marks[-1]  # past the seed and the first trials
    n = len(marks) - 1 - len(marks) // 4
    per = {key: (last.get(key, 0) - first.get(key, 0)) / n for key in last}
    for key, value in sorted(per.items(), key=lambda kv: -kv[1]):
        if value:
            print(f"{value:6.2f}  {key}")
    print(f"RESULT hops_per_trial={sum(per.values()):.2f} ({n} trials)")


if __name__ == "__main__":
    main()
