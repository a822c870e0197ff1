"""OpenEvolve on the benchmark's trivial task, run under the peer's own interpreter (benchmarks/.peers-venv):
its default settings, but its LLM pointed at the loopback fake, one evaluation at a time, `N` iterations.

    .peers-venv/bin/python _openevolve_run.py TASK_DIR BASE_URL N OUT_DIR

The task folder holds program.py and evaluator.py (which logs the time each evaluation ends, for the benchmark).
"""

from __future__ import annotations

import sys
from pathlib import Path

CONFIG = """max_iterations: {n}
random_seed: 0
llm:
  api_base: "{base_url}"
  api_key: sk-fake
  models:
    - name: fake-model
      weight: 1.0
evaluator:
  parallel_evaluations: 1
"""


def main() -> None:
    task, base_url, n, out = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    config = task / "openevolve.yaml"
    config.write_text(CONFIG.format(n=n, base_url=base_url))
    from openevolve.api import run_evolution

    result = run_evolution(str(task / "program.py"), str(task / "evaluator.py"), config=str(config), iterations=n,
                           output_dir=str(out), cleanup=False)
    print(f"openevolve best score {result.best_score}")


if __name__ == "__main__":
    main()
