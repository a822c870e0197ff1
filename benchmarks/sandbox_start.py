"""Start-to-result benchmark of one sandboxed evaluation: N evaluations of a trivial Python evaluator through the
Engineer (the code path of every trial: supervisor, jail, harness, evaluate(), result over the channel), with the
task's default limits (isolation auto), beside N bare `python -c pass` starts of the same interpreter.

The two are interleaved in one run, so a busy machine slows both alike; the ratio of the medians is the measure.
The evoforge package is byte-compiled first, as an install leaves it (the jail cannot write bytecode, and
PYTHONDONTWRITEBYTECODE may have kept an editable checkout from doing so).
Ends with `RESULT sandbox_start_ratio=<sandbox/bare> sandbox_ms=<median> bare_ms=<median>`.
Usage: python benchmarks/sandbox_start.py [--n 30]; `measure(n)` returns the same numbers as a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import evoforge
from evoforge.experiment.engineer import Engineer
from evoforge.experiment.isolation import resolve
from evoforge.models import TrialStatus
from evoforge.task.loader import Task, load_task

TASK_YAML = ("name: trivial\nproblem: Return a constant.\nprogram: program.py\nevaluator: evaluator.py\n"
             "objective: {metric: score, direction: maximize}\ntimeout_s: 30\n")
EVALUATOR = "def evaluate(program_path):\n    return {'score': 1.0}\n"
PROGRAM = "x = 1\n"


def trivial_task(root: Path) -> Task:
    """A task folder whose evaluator returns a constant (nothing but the sandbox's own cost is measured)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in (("task.yaml", TASK_YAML), ("evaluator.py", EVALUATOR), ("program.py", PROGRAM)):
        (root / name).write_text(text, encoding="utf-8")
    return load_task(root)


def _bare_ms() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return (time.perf_counter() - start) * 1000


async def _sandbox_ms(engineer: Engineer, trial_dir: Path) -> float:
    start = time.perf_counter()
    outcome = await engineer.evaluate(PROGRAM, trial_dir)
    elapsed = (time.perf_counter() - start) * 1000
    if outcome.status is not TrialStatus.SUCCEEDED:
        raise SystemExit(f"the trivial evaluation failed: {outcome.error_class}: {outcome.error_message}")
    return elapsed


def measure(n: int = 30) -> dict[str, float]:
    """Median milliseconds of `n` sandboxed evaluations and `n` bare interpreter starts (interleaved, after one
    warm-up of each), and their ratio: {"sandbox_ms", "bare_ms", "sandbox_start_ratio"} (and both p90s)."""
    compileall.compile_dir(Path(evoforge.__file__).parent, quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        engineer = Engineer(trivial_task(Path(tmp) / "task"))
        runs = Path(tmp) / "run" / "trials"

        async def both() -> tuple[list[float], list[float]]:
            await _sandbox_ms(engineer, runs / "warm-up")
            _bare_ms()
            sandbox, bare = [], []
            for i in range(n):
                sandbox.append(await _sandbox_ms(engineer, runs / f"{i:04d}"))
                bare.append(_bare_ms())
            return sandbox, bare

        sandbox, bare = asyncio.run(both())
    sandbox_ms, bare_ms = statistics.median(sandbox), statistics.median(bare)
    return {"sandbox_ms": sandbox_ms, "bare_ms": bare_ms, "sandbox_start_ratio": sandbox_ms / bare_ms,
            "sandbox_p90_ms": _p90(sandbox), "bare_p90_ms": _p90(bare)}


def _p90(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(0.9 * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="evaluations (and bare starts) to time")
    opts = parser.parse_args()
    mode = resolve("auto", network=False)
    result = measure(opts.n)
    print(f"isolation {mode}, {opts.n} of each, interleaved; {sys.executable}")
    print(f"{'':28s} {'median ms':>10s} {'p90 ms':>8s}")
    print(f"{'sandboxed evaluation':28s} {result['sandbox_ms']:10.1f} {result['sandbox_p90_ms']:8.1f}")
    print(f"{'bare python -c pass':28s} {result['bare_ms']:10.1f} {result['bare_p90_ms']:8.1f}")
    print(f"RESULT sandbox_start_ratio={result['sandbox_start_ratio']:.2f} sandbox_ms={result['sandbox_ms']:.1f} "
          f"bare_ms={result['bare_ms']:.1f}")


if __name__ == "__main__":
    main()
