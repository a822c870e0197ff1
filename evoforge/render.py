"""How the reading commands look in a terminal (rich): the run overview, the best trial and one trial in full."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from evoforge.models import Trial, TrialStatus


def render_status(console: Console, ov: dict[str, Any]) -> None:
    table = Table(title=f"run of {ov['task']} ({ov['direction']})", show_header=False)
    for status in TrialStatus:
        table.add_row(status.value, str(ov[status.value]))
    stderr = f" ± {ov['best_stderr']:.3g}" if ov.get("best_stderr") is not None else ""
    best = f"{ov['best_score']:.6g}{stderr} (trial #{ov['best_trial']})" if ov["best_score"] is not None else "none"
    table.add_row("best score", best)
    champion = ov.get("champion")
    if champion is not None:
        table.add_row("champion", f"trial #{champion['trial']}: {champion['mean']:.6g} ± {champion['stderr'] or 0:.3g} "
                      f"(mean ± standard error, {champion['evaluations']} evaluations)")
    table.add_row("seed score", _seed_text(ov))
    table.add_row("stopping rule", ", ".join(f"{k}={v}" for k, v in ov["stopping"].items() if v is not None))
    if ov["stopped_because"]:
        table.add_row("last stop", ov["stopped_because"])
    lock = ov["lock"]
    if lock["state"] == "running":
        table.add_row("running now", f"by {lock['holder']}")
    elif lock["state"] == "stale":
        table.add_row("stale lock", f"run.lock names {lock['holder']}, which is gone (killed?); "
                      "`evoforge resume` takes over")
    table.add_row("run folder", f"{ov['disk_bytes'] / 2**20:.1f} MiB on disk (record, knowledge base, trial folders)")
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


def _seed_text(seed: dict[str, Any]) -> str:
    if seed["seed_score"] is None:
        return "none (the seed has no valid score)"
    text = f"{seed['seed_score']:.6g} (trial #{seed['seed_trial']})"
    if seed["gain"] is not None:
        pct = f", {seed['gain_pct']:+.1f}%" if seed["gain_pct"] is not None else ""
        text += f"; the best is {seed['gain']:+.6g} better{pct}" if seed["gain"] else "; no gain over it yet"
    return text


def _stderr_text(metrics: dict[str, Any]) -> str:
    """' ± stderr (k repeats)' for a score that is the mean of repeated evaluations, else ''."""
    stderr, repeats = metrics.get("score_stderr"), metrics.get("score_repeats")
    if not isinstance(stderr, int | float) or not isinstance(repeats, list):
        return ""
    return f" ± {stderr:.3g} (mean ± standard error of {len(repeats)} repeats)"


def render_best(console: Console, trial: Trial, seed: dict[str, Any]) -> None:
    champion = seed.get("champion")
    if champion is not None:
        console.print(f"champion: trial #{trial.id} '{trial.name}' score {champion['mean']:.6g} ± "
                      f"{champion['stderr'] or 0.0:.3g} (mean ± standard error of {champion['evaluations']} "
                      f"evaluation{'s' if champion['evaluations'] != 1 else ''}; {trial.proposer})",
                      markup=False, highlight=False)
    else:
        console.print(f"best: trial #{trial.id} '{trial.name}' score {trial.score:.6g}{_stderr_text(trial.metrics)} "
                      f"({trial.proposer})", markup=False, highlight=False)
    single = seed.get("best_single")
    if single is not None:
        console.print(f"best single evaluation: trial #{single['trial']} scored {single['score']:.6g} once, within "
                      "the noise of the champion (see the record's champion_decisions)", markup=False,
                      highlight=False)
    console.print(f"seed: {_seed_text(seed)}", markup=False, highlight=False)
    console.print(trial.digest, markup=False, highlight=False)


def _plain(value: Any) -> Text:
    return Text("-" if value is None or value == "" else str(value))


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(*columns, title=title, title_justify="left")
    for row in rows:
        table.add_row(*(_plain(v) for v in row))
    return table


def _number(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def render_show(console: Console, data: dict[str, Any]) -> None:
    """One trial, each thing once: its facts, metrics, digest, analysis (or why it failed), lessons, stages, gates,
    telemetry, the knowledge shown, the diff and the LLM calls (tables where the data is tabular)."""
    head = Table(show_header=False, box=None)
    ids = {"parents": data.get("parent_ids"), "inspirations": data.get("inspiration_ids")}
    error = f"{data['error_class']}: {data['error_message']}" if data.get("error_class") else None
    facts = [("status", data.get("status")), ("name", data.get("name")), ("motivation", data.get("motivation")),
             *((k, ", ".join(f"#{i}" for i in v)) for k, v in ids.items() if v),
             ("score", _number(data.get("score"))), ("error", error),
             ("seconds", f"{data.get('seconds', 0):.2f} spent, {data.get('seconds_saved', 0):.2f} saved by gates"),
             ("proposer", " / ".join(str(p) for p in (data.get("proposer"), data.get("model")) if p)),
             ("suspect", "yes: too good to trust until re-evaluated" if data.get("suspect") else None),
             ("reused from", f"#{data['reused_from']}" if data.get("reused_from") else None),
             ("created", data.get("created_at"))]
    for key, value in facts:
        if value not in (None, ""):
            head.add_row(key, Text(str(value)))
    console.print(Panel(head, title=f"trial #{data['id']}", expand=False))
    if data.get("metrics"):
        console.print(_table("metrics", ["metric", "value"],
                             [[k, _number(v)] for k, v in sorted(data["metrics"].items())]))
    digest = data.get("digest") or ""
    if digest:
        console.print(Panel(Text(digest), title="digest", expand=False))
    for analysis in data.get("analyses", []):
        if analysis["kind"] == "digest":
            continue  # the digest's own record: shown above
        if analysis.get("error"):
            console.print(Text(f"analysis failed: {analysis['error']} (the digest stands in)"))
        elif analysis["text"].strip() != digest.strip():
            title = "analysis" if analysis["kind"] == "analysis" else f"analysis: {analysis['kind']}"
            console.print(Panel(Text(analysis["text"]), title=title, expand=False))
    for stage in data.get("stages", []):  # one sentence each, in the order they ran
        line = f"stage {stage['name']}: {stage['status']} score={_number(stage['score'])} ({stage['seconds']:.2f}s)"
        console.print(Text(line + (f" {stage['error_class']}" if stage.get("error_class") else "")))
    for decision in data.get("decisions", []):
        console.print(Text(f"gate {decision['gate']} [{decision['action']}] at {decision['stage']}: "
                           f"{decision['reason']}"))
    if data.get("telemetry"):
        console.print(_table("telemetry", ["stage/metric", "points", "first", "last", "last step"], [
            [name, c["points"], _number(c["first"]), _number(c.get("last")), c.get("last_step")]
            for name, c in data["telemetry"].items()]))
    if data.get("knowledge_shown"):
        console.print(_table("knowledge the researcher saw", ["item", "kind", "title"], [
            [f"#{k['item_id']}", k["kind"], k["title"]] for k in data["knowledge_shown"]]))
    if data.get("diff"):
        if console.is_terminal:
            console.print(Panel(Syntax(data["diff"], "diff"), title="diff vs parent", expand=False))
        else:  # piped: the diff as it is, every line whole, ready for `patch` or a pager
            console.print("diff vs parent:", highlight=False)
            console.print(Text(data["diff"].rstrip("\n")))
    if data.get("llm_calls"):
        console.print(_table("LLM calls", ["role", "model", "tokens in", "tokens out", "seconds", "cost $",
                                           "retries", "error"], [
            [c["role"], c["model"], c["tokens_in"], c["tokens_out"], f"{c['latency_s']:.2f}",
             f"{c.get('cost_usd', 0.0):.4f}", c.get("retries", 0), c["error"]] for c in data["llm_calls"]]))
