"""Run a Python module or script as `__main__` and write what its process cost to a JSON file: wall seconds, CPU of
the process itself (RUSAGE_SELF) and of its reaped children, and (time, process CPU) samples every 50 ms.

    python benchmarks/_probe.py OUT.json -m evoforge run TASK ...      # a module, like python -m
    python benchmarks/_probe.py OUT.json path/to/script.py ARGS ...     # a script

Standard library only: the benchmarks run it under evoforge's interpreter and under a peer's (its own venv).
"""

from __future__ import annotations

import json
import resource
import runpy
import sys
import threading
import time

SAMPLE_S = 0.05


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    out, target = sys.argv[1], sys.argv[2:]
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_S):
            samples.append((time.time(), time.process_time()))

    sampler = threading.Thread(target=sample, name="probe", daemon=True)
    started, status = time.perf_counter(), 0
    samples.append((time.time(), time.process_time()))
    sampler.start()
    try:
        if target[0] == "-m":
            sys.argv = [target[1], *target[2:]]
            runpy.run_module(target[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(target)
            runpy.run_path(target[0], run_name="__main__")
    except SystemExit as done:
        status = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        stop.set()
        sampler.join()
        samples.append((time.time(), time.process_time()))
        result = {"status": status, "wall_s": time.perf_counter() - started, "cpu_self_s": _cpu(resource.RUSAGE_SELF),
                  "cpu_children_s": _cpu(resource.RUSAGE_CHILDREN), "samples": samples}
        with open(out, "w") as f:
            json.dump(result, f)
    return status


if __name__ == "__main__":
    sys.exit(main())
