"""A small finished run written straight into a record (no loop, no evaluator): what the read-only commands
(`status`, `best`, `show`, `export`) are tested on."""

from __future__ import annotations

from pathlib import Path

from evoforge.memory.record import Record
from evoforge.models import Digest, LLMCall, Outcome, TrialStatus

LONG_LINE = "y = " + " + ".join(f"{i}.0" for i in range(60))  # a program line far wider than 80 columns
ANALYSIS_ERROR = "the answer contains no JSON object (expected one object starting with '{')"


def make_record(run_dir: Path, *, close: bool = True) -> Path:
    """Five trials: the seed (score 1.0, metrics), a better child #2 (score 2.5, the best) whose diff has a long line
    and whose LLM analysis failed, a failed child #3, a suspect #4 (9.0) and #5 reusing #2's outcome. `close=False`
    leaves the record open (a writer about to be killed).
    Returns the run directory."""
    record = Record.for_run_dir(run_dir, create=True)
    record.create_run(task_name="knob", config={"task_config": {"objective": {"direction": "maximize"}}}, seed=0,
                      task_snapshot={}, stopping={"trials": 3})
    seed = record.add_trial(parent_ids=[], inspiration_ids=[], name="seed", motivation="", code="x = 1.0\n",
                            diff="", proposer="seed", model=None).id
    record.finish_trial(seed, Outcome(status=TrialStatus.SUCCEEDED, score=1.0, metrics={"x": 1.0, "loss": 0.5},
                                      seconds=0.2), Digest("seed scored 1.0 (x=1.0)"))
    child = record.add_trial(parent_ids=[seed], inspiration_ids=[], name="raise x", motivation="larger x scores more",
                             code=f"x = 2.5\n{LONG_LINE}\n", diff=f"-x = 1.0\n+x = 2.5\n+{LONG_LINE}\n",
                             proposer="llm", model="fake-model").id
    digest = "scored 2.5 (+1.5 over parent #1); x=2.5"
    record.finish_trial(child, Outcome(status=TrialStatus.SUCCEEDED, score=2.5, metrics={"x": 2.5, "loss": 0.25},
                                       seconds=0.3), Digest(digest))
    record.add_analysis(child, "analysis", digest, {"error": ANALYSIS_ERROR, "source": "digest"})
    record.add_llm_calls(child, [
        LLMCall(role="researcher", model="fake-model", prompt="p", response="r", tokens_in=1200, tokens_out=340,
                latency_s=1.5, cost_usd=0.0021),
        LLMCall(role="analyzer", model="fake-model", prompt="p", response="oops", tokens_in=800, tokens_out=12,
                latency_s=0.7, error=ANALYSIS_ERROR),
    ])
    failed = record.add_trial(parent_ids=[child], inspiration_ids=[seed], name="break it", motivation="",
                              code="x = (\n", diff="", proposer="llm", model="fake-model").id
    record.fail_trial(failed, "crash:SyntaxError", "'(' was never closed")
    too_good = record.add_trial(parent_ids=[child], inspiration_ids=[], name="too good", motivation="",
                                code="x = 3.0\n", diff="", proposer="llm", model="fake-model").id
    record.finish_trial(too_good, Outcome(status=TrialStatus.SUCCEEDED, score=9.0, metrics={"x": 3.0},
                                          suspect=True))
    again = record.add_trial(parent_ids=[seed], inspiration_ids=[], name="raise x again", motivation="",
                             code=f"x = 2.5\n{LONG_LINE}\n", diff="", proposer="llm", model="fake-model").id
    record.finish_trial(again, Outcome(status=TrialStatus.SUCCEEDED, score=2.5, metrics={"x": 2.5, "loss": 0.25},
                                       reused_from=child))
    if close:
        record.close()
    return run_dir
