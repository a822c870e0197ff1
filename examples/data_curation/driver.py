"""Runs the candidate's curate() inside the candidate's own jail: `python driver.py PROGRAM CORPUS BUDGET` reads the
documents (a JSON list in the trial folder), calls curate(docs, budget) and prints its selections as one JSON line.

Whatever this process prints is only a proposal: the evaluator checks every selection and the budget itself.
"""

from __future__ import annotations

import importlib.util
import json
import sys


def main() -> None:
    program, corpus_path, budget = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(corpus_path, encoding="utf-8") as fh:
        docs = json.load(fh)
    spec = importlib.util.spec_from_file_location("candidate", program)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["candidate"] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, "curate", None)):
        raise SystemExit("the program defines no function curate(docs, budget)")
    selections = module.curate(docs, budget)
    try:
        selections = [s if isinstance(s, int) else list(s) for s in selections]
    except TypeError as exc:
        raise SystemExit(f"curate() must return a list of selections, got {type(selections).__name__}") from exc
    sys.stdout.flush()
    print("\n" + json.dumps({"selections": selections}), flush=True)


if __name__ == "__main__":
    main()
