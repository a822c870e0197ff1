"""The evoforge process's own CPU per trial with embeddings on (the default), how many texts it encodes per trial,
and what the live progress display costs, over one run against the loopback fake LLM with an instant evaluator.

CPU is `resource.getrusage(RUSAGE_SELF)` around the run (the evoforge process only; sandboxed evaluations are
children). Encodes are counted on a wrapper around the MiniLM encoder, by caller (novelty gate, retrieval,
lessons). The progress display's cost is the CPU time (`time.thread_time`) spent inside its redraws and updates,
on whichever thread runs them, as a share of the process's CPU. Ends with one `RESULT` line.

    .venv/bin/python benchmarks/encoding.py [--trials 300]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fake_llm import FakeLLM, Reply  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.live import Live  # noqa: E402
from rich.progress import Progress  # noqa: E402

import evoforge  # noqa: E402
from evoforge.config import RunSettings  # noqa: E402
from evoforge.memory.cognition import embeddings  # noqa: E402
from evoforge.progress import ProgressObserver  # noqa: E402

PROGRAM = "x = 1.0\n# knob\n"
EVALUATOR = """import runpy
def evaluate(program_path):
    x = runpy.run_path(program_path)["x"]
    return {"score": -(x - 3.0) ** 2}
"""
KNOWLEDGE = """# Step sizes
Trigger: the score stalls
Halve the step when the score stops improving; large steps overshoot the optimum.

# Overshoot
Trigger: the score drops after a large move
A move past the target loses as much as it gains: move back by half.
"""
CALLERS = {"_nearest": "novelty", "search": "retrieval", "add_lesson": "lessons", "sync": "sync"}


class Answers:
    """The fake model: edits for the researcher, one lesson in each analysis, NOVEL for the judge."""

    def __init__(self) -> None:
        self.rng = random.Random(0)

    def __call__(self, body: dict[str, Any]) -> Reply:
        text = " ".join(m["content"] for m in body["messages"])
        if "VERDICT" in text:
            return Reply.text("It differs.\nVERDICT: NOVEL")
        if re.search(r"JSON", text) and "SEARCH" not in text:
            k = self.rng.randint(0, 20)
            lesson = {"kind": "lesson", "title": f"step of size {k / 10}",
                      "content": f"moving x by {k / 10} changed the score", "trigger": "x is far from 3"}
            return Reply.text(json.dumps({"what_changed": "x moved", "what_happened": "score changed",
                                          "why": "hypothesis: closer to 3 is better", "lessons": [lesson]}))
        step = round(self.rng.uniform(-0.5, 0.5), 4)
        return Reply.text(f"NAME: step {step}\nMOTIVATION: try moving x by {step} (variant {self.rng.random():.6f})\n"
                          f"<<<<<<< SEARCH\n# knob\n=======\n# knob\nx = x + {step}\n>>>>>>> REPLACE\n")


def make_task(root: Path, base_url: str) -> Path:
    (root / "knowledge").mkdir(parents=True)
    (root / "knowledge" / "steps.md").write_text(KNOWLEDGE)
    (root / "problem.md").write_text("Move x toward 3.\n")
    (root / "program.py").write_text(PROGRAM)
    (root / "evaluator.py").write_text(EVALUATOR)
    (root / "task.yaml").write_text("name: encoding\nproblem: problem.md\nprogram: program.py\n"
                                    f"evaluator: evaluator.py\ntimeout_s: 60\nllm: {{base_url: '{base_url}', "
                                    "max_retries: 0}\n")
    return root


def count_encodes(counts: Counter[str], spent: list[float]) -> Callable[[], None]:
    """Count texts given to the MiniLM encoder by caller, and add its CPU time to spent[1]; returns the undo."""
    original = embeddings.MiniLMEncoder.encode

    def encode(self: Any, texts: Sequence[str]) -> np.ndarray:
        frame = sys._getframe(1)
        caller = "other"
        while frame is not None:
            if frame.f_code.co_name in CALLERS:
                caller = CALLERS[frame.f_code.co_name]
                break
            frame = frame.f_back
        counts[caller] += len(texts)
        counts["calls"] += 1
        start = time.thread_time()
        try:
            return original(self, texts)
        finally:
            spent[1] += time.thread_time() - start

    embeddings.MiniLMEncoder.encode = encode  # type: ignore[method-assign]
    return lambda: setattr(embeddings.MiniLMEncoder, "encode", original)


def time_progress(spent: list[float]) -> Callable[[], None]:
    """Add the CPU time of every progress redraw and update (on its own thread) to spent[0]; returns the undo."""
    originals = {(Live, "refresh"): Live.refresh, (Progress, "update"): Progress.update,
                 (ProgressObserver, "trial_finished"): ProgressObserver.trial_finished}
    local = threading.local()  # an update may redraw: count the outer call only, per thread

    def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            local.depth = getattr(local, "depth", 0) + 1
            try:
                return fn(self, *args, **kwargs)
            finally:
                local.depth -= 1
                if local.depth == 0:
                    spent[0] += time.thread_time() - start
        return wrapper

    for (cls, name), fn in originals.items():
        setattr(cls, name, timed(fn))
    return lambda: [setattr(cls, name, fn) for (cls, name), fn in originals.items()]  # type: ignore[func-returns-value]


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=300)
    args = parser.parse_args()
    assert embeddings.load_encoder() is not None, "the embeddings extra is needed (make dev)"
    counts: Counter[str] = Counter()
    spent = [0.0, 0.0]  # CPU seconds: the progress display, the encoder
    with tempfile.TemporaryDirectory() as name, FakeLLM() as fake, open("/dev/null", "w") as sink:
        tmp = Path(name)
        fake.set_handler(Answers())
        task = make_task(tmp / "task", fake.base_url)
        settings = RunSettings(trials=args.trials, concurrency=1, llm="fake-model", seed=0)
        console = Console(file=sink, force_terminal=True, width=120)
        undo = [count_encodes(counts, spent), time_progress(spent)]
        wall, cpu = time.perf_counter(), cpu_s()
        summary = evoforge.run(task, run_dir=tmp / "run", settings=settings, observer=ProgressObserver(console))
        wall, cpu = time.perf_counter() - wall, cpu_s() - cpu
        for fn in undo:
            fn()
    n = args.trials
    print(f"trials {n} ({summary.counts if hasattr(summary, 'counts') else summary}), wall {wall:.1f} s, "
          f"CPU of the evoforge process {cpu:.1f} s")
    callers = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(counts.items()) if k != "calls")
    print(f"texts encoded per trial: {sum(v for k, v in counts.items() if k != 'calls') / n:.2f} ({callers}); "
          f"encoder calls per trial {counts['calls'] / n:.2f}")
    print(f"encoder: {spent[1]:.2f} s CPU, {100 * spent[1] / cpu:.1f}% of the process")
    print(f"progress display: {spent[0]:.2f} s CPU, {100 * spent[0] / cpu:.2f}% of the process")
    texts = sum(v for k, v in counts.items() if k != "calls")
    print(f"RESULT cpu_ms_per_trial={1000 * cpu / n:.1f} wall_ms_per_trial={1000 * wall / n:.1f} "
          f"encodes_per_trial={texts / n:.2f} encoder_ms_per_trial={1000 * spent[1] / n:.1f} "
          f"progress_share={spent[0] / cpu:.4f}")


if __name__ == "__main__":
    main()
