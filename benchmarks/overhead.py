"""Harness overhead per trial vs record size, and how busy the evaluation slots are with 8 trials in flight.

The loop runs against the loopback fake LLM (tests/fake_llm.py) and a task whose evaluator returns at once (or
after 1 s). (a) overhead = wall time − evaluation seconds − LLM latency, per trial, with 100 / 1,000 / 10,000
trials already in the record, at the default settings (embeddings, the review, the sandbox: what a user gets) and
"lean" (embeddings and the review off, what this benchmark measured before); (b) busy share = evaluation seconds /
(8 slots × wall) with 1 s evaluations and a 1 s LLM latency, default settings. Prints a table and ends with one
`RESULT` line. The shared parts live in benchmarks/_harness.py; benchmarks/peers.py puts evoforge beside a peer.

    .venv/bin/python benchmarks/overhead.py [--quick] [--sampler islands|map_elites|...]

`--sampler` measures part (a) with another parent sampler (islands and MAP-Elites on 4 islands).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Answers, FakeLLM, make_task, measure_busy, prefill  # noqa: E402

import evoforge  # noqa: E402
from evoforge.config import RunSettings  # noqa: E402
from evoforge.memory.record import Record  # noqa: E402


def measure(tmp: Path, task: Path, in_record: int, trials: int, concurrency: int) -> dict[str, float]:
    """Run `trials` new trials on a record that already holds `in_record`; return the timings."""
    run_dir = tmp / f"run-{task.name}-{in_record}-{concurrency}"
    # prefetch 0: one trial at a time, so wall − evaluation − LLM time is the harness's own time
    settings = RunSettings(trials=1, concurrency=concurrency, prefetch=0, llm="fake-model", seed=0)
    evoforge.run(task, run_dir=run_dir, settings=settings)  # the seed only
    prefill(run_dir, in_record)
    evoforge.resume(run_dir, trials=1 + in_record + trials)
    record = Record.for_run_dir(run_dir)
    # steady state: from the first new trial's end to the last one's (start-up, e.g. loading the record, is
    # paid once per run and is not per-trial overhead); the analyzer's calls run beside the next proposal
    new = [tr for tr in record.trials() if tr.id > 1 + in_record][1:]
    first_end = record.trial(2 + in_record).finished_at
    wall = (max(tr.finished_at for tr in new) - first_end).total_seconds()
    eval_s = sum(tr.seconds for tr in new)
    ids = {tr.id for tr in new}
    llm_s = sum(c.latency_s for c in record.llm_calls() if c.trial_id in ids and c.role in ("researcher", "repair",
                                                                                               "novelty"))
    record.close()
    return {"wall": wall, "eval_s": eval_s, "llm_s": llm_s, "n": len(new)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer trials (a smoke run)")
    parser.add_argument("--sampler", default=None, help="parent sampler for part (a) (default: the task's, ucb1)")
    args = parser.parse_args()
    per_size = 10 if args.quick else 30
    with tempfile.TemporaryDirectory() as name, FakeLLM() as fake:
        tmp = Path(name)
        fake.set_handler(Answers(0.0))
        overhead: dict[tuple[str, int], float] = {}
        columns = ("settings", "trials in record", "new trials", "wall s", "eval s", "llm s", "overhead ms")
        print(" ".join(f"{c:>{w}}" for c, w in zip(columns, (9, 18, 10, 8, 8, 8, 12), strict=True)))
        for lean in (False, True):
            label = "lean" if lean else "defaults"
            task = make_task(tmp / f"task-fast-{label}", 0.0, fake.base_url, args.sampler, lean=lean)
            for size in (100, 1000, 10000):
                m = measure(tmp, task, size, per_size, concurrency=1)
                overhead[label, size] = 1000 * (m["wall"] - m["eval_s"] - m["llm_s"]) / m["n"]
                print(f"{label:>9} {size:>18} {m['n']:>10.0f} {m['wall']:>8.2f} {m['eval_s']:>8.2f} "
                      f"{m['llm_s']:>8.2f} {overhead[label, size]:>12.1f}")
        busy, line = measure_busy(tmp, fake, quick=args.quick)
        print(line)
        growth = overhead["defaults", 10000] / overhead["defaults", 100]
        lean_growth = overhead["lean", 10000] / overhead["lean", 100]
        print(f"RESULT busy={busy:.3f} overhead_growth_10k_100={growth:.2f} "
              f"overhead_ms={overhead['defaults', 100]:.1f} "
              f"lean_overhead_ms={overhead['lean', 100]:.1f} lean_growth_10k_100={lean_growth:.2f}")


if __name__ == "__main__":
    main()
