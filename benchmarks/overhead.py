"""Harness overhead per trial vs record size, and how busy the evaluation slots are with 8 trials in flight.

The loop runs against the loopback fake LLM (tests/fake_llm.py) and a task whose evaluator returns at once (or
after 1 s). (a) overhead = wall time − evaluation seconds − LLM latency, per trial, with 100 / 1,000 / 10,000
trials already in the record; (b) busy share = evaluation seconds / (8 slots × wall) with 1 s evaluations and a
1 s LLM latency. Prints a table and ends with one `RESULT` line.

    .venv/bin/python benchmarks/overhead.py [--quick] [--sampler islands|map_elites|...]

`--sampler` measures part (a) with another parent sampler (islands and MAP-Elites on 4 islands).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fake_llm import FakeLLM, Reply  # noqa: E402
from sqlalchemy import insert  # noqa: E402

import evoforge  # noqa: E402
from evoforge.memory import tables as t  # noqa: E402
from evoforge.memory.record import Record  # noqa: E402
from evoforge.memory.tables import utcnow  # noqa: E402
from evoforge.settings import RunSettings  # noqa: E402

PROGRAM = "x = 1.0\n# knob\n"
EVALUATOR = """import runpy, time
def evaluate(program_path):
    time.sleep({sleep})
    x = runpy.run_path(program_path)["x"]
    return {{"score": -(x - 3.0) ** 2}}
"""
ANALYSIS = json.dumps({"what_changed": "x moved", "what_happened": "score changed by a small amount",
                       "why": "hypothesis: closer to 3 is better", "lesson": "", "trigger": "", "lessons": []})


class Answers:
    """The fake model: edits for the researcher, JSON for the analyzer, NOVEL for the judge, after `delay_s`."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s, self.rng = delay_s, random.Random(0)

    def __call__(self, body: dict[str, Any]) -> Reply:
        text = " ".join(m["content"] for m in body["messages"])
        if "VERDICT" in text:
            answer = "It differs.\nVERDICT: NOVEL"
        elif re.search(r"JSON", text) and "SEARCH" not in text:
            answer = ANALYSIS
        else:
            step = round(self.rng.uniform(-0.5, 0.5), 4)
            answer = (f"NAME: step {step}\nMOTIVATION: try moving x by {step} (variant {self.rng.random():.6f})\n"
                      f"<<<<<<< SEARCH\n# knob\n=======\n# knob\nx = x + {step}\n>>>>>>> REPLACE\n")
        return Reply.text(answer, delay_s=self.delay_s)


def make_task(root: Path, sleep: float, base_url: str, sampler: str | None = None) -> Path:
    root.mkdir(parents=True)
    research = ""
    if sampler:
        research = (f"research: {{sampler: {sampler}, islands: {{count: 4}}, "
                    "map_elites: {features: [{name: code_length, min: 10, max: 40, bins: 6}]}}\n")
    (root / "problem.md").write_text("Move x toward 3.\n")
    (root / "program.py").write_text(PROGRAM)
    (root / "evaluator.py").write_text(EVALUATOR.format(sleep=sleep))
    (root / "task.yaml").write_text(
        "name: overhead\nproblem: problem.md\nprogram: program.py\nevaluator: evaluator.py\ntimeout_s: 60\n"
        f"llm: {{base_url: '{base_url}', max_retries: 0}}\nanalysis: {{review_every: 0}}\n"
        "knowledge: {embeddings: false}\n" + research
    )
    return root


def prefill(run_dir: Path, n: int) -> None:
    """Add n finished trials to the record in bulk (children of the seed, varied scores and code)."""
    record = Record.for_run_dir(run_dir)
    run_id = record.run_info().id
    rng = random.Random(1)
    now = utcnow()
    rows = []
    for i in range(n):
        x = rng.uniform(0.0, 2.5)
        rows.append(dict(run_id=run_id, parent_ids=[1], inspiration_ids=[], status="succeeded", name=f"filler {i}",
                         motivation="filler", code=f"x = {x!r}\n# knob\n", diff="", score=-(x - 3.0) ** 2,
                         metrics={}, error_class=None, error_message=None, seconds=0.1, seconds_saved=0.0,
                         proposer="llm", model="fake", digest="", fingerprint=None, suspect=False,
                         reused_from=None, created_at=now, started_at=now, finished_at=now))
    with record._engine.begin() as conn:  # bulk load for the benchmark only
        for start in range(0, n, 2000):
            conn.execute(insert(t.trials), rows[start:start + 2000])
    record.close()


def measure(tmp: Path, fake: FakeLLM, in_record: int, trials: int, concurrency: int) -> dict[str, float]:
    """Run `trials` new trials on a record that already holds `in_record`; return the timings."""
    run_dir = tmp / f"run-{in_record}-{concurrency}"
    task = tmp / "task-fast"
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


def record_started(record: Record, trial_id: int) -> Any:
    """When the trial's evaluation started (it is marked running on taking an evaluation slot)."""
    from sqlalchemy import select

    with record._engine.connect() as conn:
        return conn.execute(select(t.trials.c.started_at).where(t.trials.c.id == trial_id)).scalar()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer trials (a smoke run)")
    parser.add_argument("--sampler", default=None, help="parent sampler for part (a) (default: the task's, ucb1)")
    args = parser.parse_args()
    per_size = 10 if args.quick else 30
    with tempfile.TemporaryDirectory() as name, FakeLLM() as fake:
        tmp = Path(name)
        make_task(tmp / "task-fast", 0.0, fake.base_url, args.sampler)
        fake.set_handler(Answers(0.0))
        overhead: dict[int, float] = {}
        columns = ("trials in record", "new trials", "wall s", "eval s", "llm s", "overhead ms")
        print(" ".join(f"{c:>{w}}" for c, w in zip(columns, (18, 10, 8, 8, 8, 12), strict=True)))
        for size in (100, 1000, 10000):
            m = measure(tmp, fake, size, per_size, concurrency=1)
            overhead[size] = 1000 * (m["wall"] - m["eval_s"] - m["llm_s"]) / m["n"]
            print(f"{size:>18} {m['n']:>10.0f} {m['wall']:>8.2f} {m['eval_s']:>8.2f} {m['llm_s']:>8.2f} "
                  f"{overhead[size]:>12.1f}")
        make_task(tmp / "task-slow", 1.0, fake.base_url)
        fake.set_handler(Answers(1.0))
        run_dir = tmp / "busy"
        n = 24 if args.quick else 48
        started = time.perf_counter()
        # 8 evaluation slots; 24 proposals prepared ahead: a proposal (1 s) plus its novelty check (1 s) and the
        # analysis of the trial before (1 s) take longer than one evaluation (1 s + sandbox start)
        settings = RunSettings(trials=n, concurrency=8, prefetch=24, llm="fake-model")
        evoforge.run(tmp / "task-slow", run_dir=run_dir, settings=settings)
        wall = time.perf_counter() - started
        record = Record.for_run_dir(run_dir)
        children = [tr for tr in record.trials() if tr.id > 1 and tr.seconds > 0]
        spans = [(record_started(record, tr.id), tr.finished_at) for tr in children]
        record.close()
        # steady state: from the first child's evaluation to the last child's start (after it, slots drain)
        begin, end = min(s for s, _ in spans), max(s for s, _ in spans)
        window = (end - begin).total_seconds()
        busy_s = sum(max(0.0, (min(f, end) - max(s, begin)).total_seconds()) for s, f in spans)
        busy = busy_s / (8 * window)
        print(f"busy share with 8 in flight (1 s evaluations, 1 s LLM latency): {busy:.3f} "
              f"({busy_s:.1f} slot-seconds busy of {8 * window:.1f} in the steady state, from the first child's "
              f"evaluation to the last one's start; whole run {wall:.1f} s incl. the seed and the first proposals)")
        growth = overhead[10000] / overhead[100]
        print(f"RESULT busy={busy:.3f} overhead_growth_10k_100={growth:.2f} overhead_ms={overhead[100]:.1f}")


if __name__ == "__main__":
    main()
