"""How the reading commands look in a terminal (rich): the run overview, the best trial and one trial in full."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from evoforge.models import Trial, TrialStatus


def render_status(console: Console, ov: dict[str, Any]) -> None:
    table = Table(title=f"run of {ov['task']} ({ov['direction']})", show_header=False)
    for status in TrialStatus:
        table.add_row(status.value, str(ov[status.value]))
    best = f"{ov['best_score']:.6g} (trial #{ov['best_trial']})" if ov["best_score"] is not None else "none"
    table.add_row("best score", best)
    table.add_row("stopping rule", ", ".join(f"{k}={v}" for k, v in ov["stopping"].items() if v is not None))
    if ov["stopped_because"]:
        table.add_row("last stop", ov["stopped_because"])
    lock = ov["lock"]
    if lock["state"] == "running":
        table.add_row("running now", f"by {lock['holder']}")
    elif lock["state"] == "stale":
        table.add_row("stale lock", f"run.lock names {lock['holder']}, which is gone (killed?); "
                      "`evoforge resume` takes over")
    table.add_row("evaluation time", f"{ov['evaluation_seconds']:.1f} s")
    table.add_row("time saved by gates", f"{ov['seconds_saved']:.1f} s")
    for gate, seconds in ov["saved_by_gate"].items():
        table.add_row(f"  saved by {gate}", f"{seconds:.1f} s ({ov['stopped_by_gate'].get(gate, 0)} trials)")
    if ov["suspect"]:
        table.add_row("suspect trials", ", ".join(f"#{i}" for i in ov["suspect"]))
    table.add_row("LLM calls", f"{ov['llm_calls']} ({ov['llm_tokens_in']} tokens in, {ov['llm_tokens_out']} out, "
                  f"${ov['llm_cost_usd']:.4f})")
    for model, s in ov["spend_by_model"].items():
        chosen = ov["models"].get(model, {"proposed": 0, "improved": 0})
        table.add_row(f"  model {model}", f"{s['calls']} calls, ${s['cost_usd']:.4f}, {s['errors']} failed, "
                      f"{s['retries']} retried attempts; "
                      f"chosen for {chosen['proposed']} trials, {chosen['improved']} improved on their parent")
    for role, s in ov["spend_by_role"].items():
        table.add_row(f"  role {role}", f"{s['calls']} calls, {s['tokens_in'] + s['tokens_out']} tokens, "
                      f"${s['cost_usd']:.4f}")
    for cls, n in sorted(ov["failure_classes"].items(), key=lambda kv: -kv[1]):
        table.add_row(f"failed: {cls}", str(n))
    console.print(table)


def render_best(console: Console, trial: Trial) -> None:
    console.print(f"best: trial #{trial.id} '{trial.name}' score {trial.score:.6g} ({trial.proposer})", highlight=False)
    console.print(trial.digest, markup=False, highlight=False)


def render_show(console: Console, data: dict[str, Any]) -> None:
    head = Table(show_header=False, box=None)
    for key in ("id", "status", "name", "motivation", "parent_ids", "inspiration_ids", "score",
                "error_class", "error_message", "seconds", "seconds_saved", "proposer", "model", "created_at"):
        head.add_row(key, str(data.get(key)))
    console.print(Panel(head, title=f"trial #{data['id']}", expand=False))
    if data.get("metrics"):
        console.print(Panel(str(data["metrics"]), title="metrics", expand=False), markup=False)
    if data.get("digest"):
        console.print(Panel(data["digest"], title="digest", expand=False), markup=False)
    for analysis in data.get("analyses", []):
        console.print(Panel(analysis["text"], title=f"analysis: {analysis['kind']}", expand=False), markup=False)
    for stage in data.get("stages", []):
        console.print(f"stage {stage['name']}: {stage['status']} score={stage['score']} ({stage['seconds']:.2f}s)"
                      + (f" {stage['error_class']}" if stage.get("error_class") else ""), markup=False, highlight=False)
    for decision in data.get("decisions", []):
        console.print(f"gate {decision['gate']} [{decision['action']}] at {decision['stage']}: {decision['reason']}",
                      markup=False, highlight=False)
    if data.get("telemetry"):
        console.print(f"telemetry: {data['telemetry']}", markup=False, highlight=False)
    if data.get("knowledge_shown"):
        shown = "; ".join(f"#{k['item_id']} [{k['kind']}] {k['title']}" for k in data["knowledge_shown"])
        console.print(Panel(shown, title="knowledge the researcher saw", expand=False), markup=False)
    if data.get("diff"):
        if console.is_terminal:
            console.print(Panel(Syntax(data["diff"], "diff"), title="diff vs parent", expand=False))
        else:  # piped: the diff as it is, every line whole, ready for `patch` or a pager
            console.print("diff vs parent:", highlight=False)
            console.print(data["diff"], markup=False, highlight=False, end="" if data["diff"].endswith("\n") else "\n")
    for call in data.get("llm_calls", []):
        console.print(f"LLM call: {call}", markup=False, highlight=False)
