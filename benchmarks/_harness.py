"""What the loop benchmarks share: the trivial task, the fake model's answers, pre-filling a record, running
evoforge in a child process under the probe (its own CPU apart from the fake server's), and the busy-slots measure.
"""

from __future__ import annotations

import bisect
import json
import random
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fake_llm import FakeLLM, Reply  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402

import evoforge  # noqa: E402
from evoforge.config import RunSettings  # noqa: E402
from evoforge.memory import tables as t  # noqa: E402
from evoforge.memory.record import Record  # noqa: E402
from evoforge.memory.tables import utcnow  # noqa: E402

PROBE = Path(__file__).with_name("_probe.py")
PROGRAM = "x = 1.0\n# knob\n"
EVALUATOR = """import runpy, time
def evaluate(program_path):
    time.sleep({sleep})
    x = runpy.run_path(program_path)["x"]
    return {{"score": -(x - 3.0) ** 2}}
"""
ANALYSIS = json.dumps({"what_changed": "x moved", "what_happened": "score changed by a small amount",
                       "why": "hypothesis: closer to 3 is better", "lesson": "", "trigger": "", "lessons": []})
AGENDA = "## Directions\n- move x toward 3 in small steps\n\n## Dead ends\n- large steps overshoot\n"
LEAN = "analysis: {review_every: 0}\nknowledge: {embeddings: false}\n"  # what overhead.py measured before


class Answers:
    """The fake model: SEARCH/REPLACE edits for a researcher (evoforge's or a peer's), NOVEL for the novelty judge,
    an agenda for the review, JSON for the analyzer; each after `delay_s`."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s, self.rng = delay_s, random.Random(0)

    def __call__(self, body: dict[str, Any]) -> Reply:
        text = " ".join(str(m["content"]) for m in body["messages"])
        if "VERDICT" in text:
            answer = "It differs.\nVERDICT: NOVEL"
        elif "Write the new agenda" in text:
            answer = AGENDA
        elif re.search(r"JSON", text) and "SEARCH" not in text:
            answer = ANALYSIS
        else:
            step = round(self.rng.uniform(-0.5, 0.5), 4)
            answer = (f"NAME: step {step}\nMOTIVATION: try moving x by {step} (variant {self.rng.random():.6f})\n"
                      f"<<<<<<< SEARCH\n# knob\n=======\n# knob\nx = x + {step}\n>>>>>>> REPLACE\n")
        return Reply.text(answer, delay_s=self.delay_s)


def make_task(root: Path, sleep: float, base_url: str, sampler: str | None = None, *, lean: bool = False) -> Path:
    """The trivial task (move x toward 3); default settings unless `lean` (embeddings and the review off)."""
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
        f"llm: {{base_url: '{base_url}', max_retries: 0}}\n" + (LEAN if lean else "") + research
    )
    return root



def run_marked(child: str, label: str, trials: int, *, lean: bool = False, extra: Sequence[str] = ()) -> Any:
    """`evoforge run` at concurrency 1 on the instant fake LLM and a trivial task, inside `python -c child` (a script
    that patches evoforge, runs its CLI and prints one line `LABEL <json>`); returns that JSON, or exits with the
    run's error."""
    import tempfile

    with tempfile.TemporaryDirectory() as name, FakeLLM() as fake:
        tmp = Path(name)
        fake.set_handler(Answers(0.0))
        task = make_task(tmp / "task", 0.0, fake.base_url, lean=lean)
        done = subprocess.run([sys.executable, "-c", child, "run", str(task), "--run-dir", str(tmp / "run"), "--llm",
                               "fake-model", "--trials", str(trials), "--concurrency", "1", *extra],
                              capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(label + " ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"evoforge exited {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(lines[-1].removeprefix(label + " "))

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


# ---- a run in a child process, under the probe ------------------------------------------------------------------

@dataclass
class Probed:
    """What the probe wrote for one child process (see _probe.py)."""

    status: int
    wall_s: float
    cpu_self_s: float
    cpu_children_s: float
    samples: list[tuple[float, float]]

    def cpu_at(self, when: float) -> float:
        """The process's CPU seconds at time `when` (epoch seconds), interpolated between samples."""
        times = [s[0] for s in self.samples]
        i = bisect.bisect_left(times, when)
        if i == 0:
            return self.samples[0][1]
        if i >= len(times):
            return self.samples[-1][1]
        (t0, c0), (t1, c1) = self.samples[i - 1], self.samples[i]
        return c0 + (c1 - c0) * ((when - t0) / (t1 - t0) if t1 > t0 else 1.0)


def probe(python: str | Path, target: Sequence[str], out: Path, *, cwd: Path | None = None,
          log: Path | None = None) -> Probed:
    """Run `python _probe.py out target...` (output to `log`, or discarded) and read what the probe measured."""
    with open(log or "/dev/null", "w") as sink:
        subprocess.run([str(python), str(PROBE), str(out), *target], cwd=cwd, stdout=sink, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, check=False, timeout=7200)
    data = json.loads(out.read_text())
    return Probed(int(data["status"]), data["wall_s"], data["cpu_self_s"], data["cpu_children_s"],
                  [tuple(s) for s in data["samples"]])


def evoforge_cli(args: Sequence[str], out: Path, log: Path | None = None) -> Probed:
    """`evoforge ARGS` (the command line, progress display included) in a child process, under the probe."""
    probed = probe(sys.executable, ["-m", "evoforge", *args], out, log=log)
    if probed.status != 0:
        tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
        raise RuntimeError(f"evoforge {' '.join(args)} exited {probed.status}\n{tail}")
    return probed


def finish_times(run_dir: Path, after_id: int = 1) -> list[float]:
    """Epoch seconds at which the run's trials with id > `after_id` finished, in order."""
    record = Record.for_run_dir(run_dir, read_only=True)
    with record._engine.connect() as conn:
        rows = conn.execute(select(t.trials.c.finished_at).where(t.trials.c.id > after_id)
                            .order_by(t.trials.c.finished_at)).scalars().all()
    record.close()
    return [epoch(at) for at in rows if at is not None]


def epoch(at: datetime) -> float:
    """A record timestamp (naive UTC or aware) as epoch seconds."""
    from datetime import UTC

    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()


@dataclass
class Window:
    """Per-trial wall and CPU over a span of consecutive trials (from the first one's end to the last one's)."""

    trials: int
    wall_ms: float
    cpu_ms: float


def window(ends: Sequence[float], probed: Probed, first: int, last: int) -> Window:
    """Per-trial cost between the ends of trials `first` and `last` (indexes into `ends`)."""
    last = min(last, len(ends) - 1)
    n = max(1, last - first)
    wall = ends[last] - ends[first]
    cpu = probed.cpu_at(ends[last]) - probed.cpu_at(ends[first])
    return Window(n, 1000 * wall / n, 1000 * cpu / n)


# ---- how busy the evaluation slots are ------------------------------------------------------------------------

def measure_busy(tmp: Path, fake: FakeLLM, *, quick: bool, lean: bool = False) -> tuple[float, str]:
    """Busy share of 8 evaluation slots with 1 s evaluations and a 1 s LLM latency, in the steady state (from the
    first child's evaluation to the last one's start); returns it and a line that explains it."""
    task = make_task(tmp / f"task-slow-{'lean' if lean else 'defaults'}", 1.0, fake.base_url, lean=lean)
    fake.set_handler(Answers(1.0))
    run_dir = tmp / f"busy-{'lean' if lean else 'defaults'}"
    n = 24 if quick else 48
    started = time.perf_counter()
    # 8 evaluation slots; 24 proposals prepared ahead: a proposal (1 s) plus its novelty check (1 s) and the
    # analysis of the trial before (1 s) take longer than one evaluation (1 s + sandbox start)
    settings = RunSettings(trials=n, concurrency=8, prefetch=24, llm="fake-model")
    evoforge.run(task, run_dir=run_dir, settings=settings)
    wall = time.perf_counter() - started
    record = Record.for_run_dir(run_dir)
    children = [tr for tr in record.trials() if tr.id > 1 and tr.seconds > 0]
    with record._engine.connect() as conn:
        started_at = dict(conn.execute(select(t.trials.c.id, t.trials.c.started_at)).all())
    spans = [(started_at[tr.id], tr.finished_at) for tr in children]
    record.close()
    begin, end = min(s for s, _ in spans), max(s for s, _ in spans)
    span = (end - begin).total_seconds()
    busy_s = sum(max(0.0, (min(f, end) - max(s, begin)).total_seconds()) for s, f in spans)
    busy = busy_s / (8 * span)
    line = (f"busy share with 8 in flight (1 s evaluations, 1 s LLM latency, {'lean' if lean else 'default'} "
            f"settings): {busy:.3f} ({busy_s:.1f} slot-seconds busy of {8 * span:.1f} in the steady state, from the "
            f"first child's evaluation to the last one's start; whole run {wall:.1f} s)")
    return busy, line
