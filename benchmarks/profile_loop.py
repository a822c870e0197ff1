"""Where the evoforge process spends its CPU in a default run (instant fake LLM, trivial evaluator, concurrency 1):
py-spy samples the process (not its sandbox children) and this prints the shares by part, the top functions by own
time and the top evoforge functions by time spent in them and below.

    .venv/bin/pip install py-spy        # once; not a dependency of evoforge
    .venv/bin/python benchmarks/profile_loop.py [--trials 1000] [--in-record 0] [--rate 100] [--threads]

`--threads` samples each thread apart and prints, per thread, its busy samples and the share of them spent in record
I/O (the record's modules, SQLAlchemy, sqlite3): for the event loop's thread (MainThread) that is how long the loop
waits on the database.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from _harness import Answers, FakeLLM, make_task, prefill

# (part, substrings of a frame); a sample goes to the part of the frame nearest its leaf that matches one
PARTS = [
    ("encoding (MiniLM)", ("cognition/embeddings.py", "cognition/_dense.py")),
    ("progress display", ("(rich/",)),
    ("SQLAlchemy/SQLite", ("(sqlalchemy/", "sqlite3")),
    ("LLM client", ("(openai/", "(httpx", "(httpcore", "(anyio/", "(h11/", "evoforge/llm/")),
    ("prompt building", ("(jinja2/", "research/prompts.py", "analysis/prompts.py", "evoforge/templating.py")),
    ("sandbox broker", ("evoforge/experiment/",)),
    ("event loop", ("(asyncio/", "selectors.py")),
    ("pydantic", ("(pydantic",)),
    ("start-up (imports)", ("<frozen importlib._bootstrap",)),
]


# leaves where a thread waits (py-spy does not always tell these from work): not counted
IDLE = ("concurrent/futures/thread.py:81", "_do_waitpid", "threading.py:32", "threading.py:331", "selectors.py:468",
        "queue.py:171", "queue.py:180")


def part_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for part, needles in PARTS:
            if any(n in frame for n in needles):
                return part
    return "other evoforge / stdlib"


def report(raw: Path, top: int = 15) -> None:
    parts: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if any(idle in frames[-1] for idle in IDLE):
            continue
        total += n
        parts[part_of(frames)] += n
        own[frames[-1]] += n
        for frame in set(frames):
            if "evoforge/" in frame:
                inclusive[frame] += n
    if not total:
        print("no samples")
        return
    print(f"{total} samples of the evoforge process (waits left out)")
    outside = total - parts["encoding (MiniLM)"]
    print("by part (share of all; of all but encoding):")
    for part, n in parts.most_common():
        rest = f"{100 * n / outside:5.1f}%" if part != "encoding (MiniLM)" and outside else "     "
        print(f"  {100 * n / total:5.1f}%  {rest}  {part}")
    print("top functions, own time:")
    for frame, n in own.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {frame}")
    print("top evoforge functions, with what they call:")
    for frame, n in inclusive.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {frame}")


RECORD_IO = ("evoforge/memory/record.py", "evoforge/memory/research_log.py", "evoforge/memory/evaluations.py",
             "(sqlalchemy/", "sqlite3")


def report_threads(raw: Path) -> None:
    """Per thread (by name, numbered pool threads together): busy samples, and the share of them in record I/O."""
    busy: Counter[str] = Counter()
    io: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack.startswith("thread (") or not count.isdigit():
            continue
        frames = stack.split(";")
        name = frames[0].partition(": ")[2].rstrip("0123456789").rstrip("_") or "?"
        if len(frames) < 2 or any(idle in frames[-1] for idle in IDLE):
            continue
        busy[name] += int(count)
        if any(needle in frame for frame in frames[1:] for needle in RECORD_IO):
            io[name] += int(count)
    print("by thread (busy samples; share of them in record I/O):")
    for name, n in busy.most_common():
        print(f"  {name:<24} {n:>7}  {100 * io[name] / n:5.1f}% record I/O")
    loop = busy.get("MainThread", 0)
    print(f"RESULT event_loop_record_io_share={io['MainThread'] / loop if loop else 0.0:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--in-record", type=int, default=0, help="pre-fill the record with this many trials first")
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL (Python's own "
                        "CPU; numpy's released-GIL work and blocked threads left out)")
    parser.add_argument("--raw", type=Path, default=None, help="keep py-spy's collapsed stacks here")
    parser.add_argument("--threads", action="store_true", help="per thread: busy samples and their share in record I/O")
    args = parser.parse_args()
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    with tempfile.TemporaryDirectory() as name, FakeLLM() as fake:
        tmp = Path(name)
        fake.set_handler(Answers(0.0))
        task = make_task(tmp / "task", 0.0, fake.base_url)
        run_dir = tmp / "run"
        evoforge = [sys.executable, "-m", "evoforge"]
        total = args.trials + 1
        if args.in_record:
            subprocess.run([*evoforge, "run", str(task), "--run-dir", str(run_dir), "--llm", "fake-model",
                            "--trials", "1", "--concurrency", "1"], check=True, capture_output=True)
            prefill(run_dir, args.in_record)
            command = [*evoforge, "resume", str(run_dir), "--trials", str(total + args.in_record)]
        else:
            command = [*evoforge, "run", str(task), "--run-dir", str(run_dir), "--llm", "fake-model", "--trials",
                       str(total), "--concurrency", "1"]
        raw = args.raw or tmp / "stacks.txt"
        subprocess.run([spy, "record", "--format", "raw", "--rate", str(args.rate), "--output", str(raw),
                        *(["--gil"] if args.gil else []), *(["--threads"] if args.threads else []), "--", *command],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        report_threads(raw) if args.threads else report(raw)


if __name__ == "__main__":
    main()
