"""What the CLI shows: the run overview, trial views and the live progress bar (rich), read from the record."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.syntax import Syntax
from rich.table import Table

from evoforge.loop import Observer
from evoforge.memory.record import Record
from evoforge.models import Direction, Trial, TrialStatus
from evoforge.run_lock import lock_holder
from evoforge.settings import RunSettings


def trial_dict(trial: Trial, *, with_code: bool = False) -> dict[str, Any]:
    """A trial as plain JSON-able data (the shape of `export --format jsonl` and `show --json`)."""
    data: dict[str, Any] = {
        "id": trial.id,
        "parent_ids": list(trial.parent_ids),
        "inspiration_ids": list(trial.inspiration_ids),
        "status": trial.status.value,
        "score": trial.score,
        "metrics": trial.metrics,
        "name": trial.name,
        "motivation": trial.motivation,
        "error_class": trial.error_class,
        "error_message": trial.error_message,
        "seconds": trial.seconds,
        "seconds_saved": trial.seconds_saved,
        "proposer": trial.proposer,
        "model": trial.model,
        "digest": trial.digest,
        "suspect": trial.suspect,
        "reused_from": trial.reused_from,
        "created_at": trial.created_at.isoformat() if trial.created_at else None,
        "finished_at": trial.finished_at.isoformat() if trial.finished_at else None,
    }
    if with_code:
        data["code"] = trial.code
        data["diff"] = trial.diff
    return data


def evaluation_detail(record: Record, trial_id: int) -> dict[str, Any]:
    """A trial's stages, gate decisions, telemetry summary and the knowledge its researcher saw."""
    curves: dict[str, dict[str, Any]] = {}
    for point in record.telemetry(trial_id):
        entry = curves.setdefault(f"{point.stage}/{point.name}", {"points": 0, "first": point.value})
        entry.update(points=entry["points"] + 1, last=point.value, last_step=point.step)
    return {
        "stages": [
            {"name": s.name, "status": s.status.value, "score": s.score, "seconds": s.seconds,
             "error_class": s.error_class, "error_message": s.error_message}
            for s in record.stage_results(trial_id)
        ],
        "decisions": [
            {"gate": d.decision.gate, "stage": d.decision.stage, "action": d.decision.action,
             "reason": d.decision.reason, "evidence": d.decision.evidence}
            for d in record.decisions(trial_id)
        ],
        "telemetry": curves,
        "knowledge_shown": record.knowledge_shown(trial_id),
    }


def run_overview(run_dir: Path) -> dict[str, Any]:
    """Counts per status (each under its own name), best score and trial, time and LLM usage of a run."""
    record = Record.for_run_dir(run_dir, read_only=True)
    try:
        info = record.run_info()
        direction = Direction(info.config.get("task_config", {}).get("objective", {}).get("direction", "maximize"))
        counts = record.counts()
        best = record.best(direction)
        trials = record.trials()
        calls = record.llm_calls()
        savings = record.savings()
        stopped = (record.load_state("stopped") or {}).get("reason")
    finally:
        record.close()
    overview: dict[str, Any] = dict(counts)
    overview.update(
        total=sum(counts.values()),
        best_score=best.score if best else None,
        best_trial=best.id if best else None,
        task=info.task_name,
        direction=direction.value,
        stopping=info.stopping,
        stopped_because=stopped,
        evaluation_seconds=savings["evaluation_seconds"],
        seconds_saved=savings["seconds_saved"],
        saved_by_gate=savings["saved_by_gate"],
        stopped_by_gate=savings["stopped_by_gate"],
        suspect=[t.id for t in trials if t.suspect],
        llm_calls=len(calls),
        llm_tokens_in=sum(c.tokens_in for c in calls),
        llm_tokens_out=sum(c.tokens_out for c in calls),
        llm_cost_usd=round(sum(c.cost_usd for c in calls), 6),
        spend_by_model=_spend_by(calls, "model"),
        spend_by_role=_spend_by(calls, "role"),
        models=_model_choices(trials, direction),
        failure_classes=_failure_classes(trials),
        lock=lock_holder(run_dir),
    )
    return overview


def _spend_by(calls: list[Any], key: str) -> dict[str, dict[str, float]]:
    spend: dict[str, dict[str, float]] = {}
    for call in calls:
        entry = spend.setdefault(getattr(call, key), {"calls": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0,
                                                      "errors": 0, "retries": 0})
        entry["retries"] += call.retries
        entry["calls"] += 1
        entry["tokens_in"] += call.tokens_in
        entry["tokens_out"] += call.tokens_out
        entry["cost_usd"] = round(entry["cost_usd"] + call.cost_usd, 6)
        entry["errors"] += call.error is not None
    return spend


def _model_choices(trials: list[Trial], direction: Direction) -> dict[str, dict[str, int]]:
    """Per model: trials it proposed (the ensemble's choices) and how many beat their parent."""
    by_id = {t.id: t for t in trials}
    choices: dict[str, dict[str, int]] = {}
    for trial in trials:
        if not trial.model:
            continue
        entry = choices.setdefault(trial.model, {"proposed": 0, "improved": 0})
        entry["proposed"] += 1
        parent = by_id.get(trial.parent_ids[0]) if trial.parent_ids else None
        if trial.scored and parent is not None and parent.score is not None and trial.score is not None:
            entry["improved"] += direction.better(trial.score, parent.score)
    return choices


def _failure_classes(trials: list[Trial]) -> dict[str, int]:
    classes: dict[str, int] = {}
    for t in trials:
        if t.status is TrialStatus.FAILED:
            key = t.error_class or "unknown"
            classes[key] = classes.get(key, 0) + 1
    return classes


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


class ProgressObserver(Observer):
    """A rich progress bar: trials done of the limit, best score, failures."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task_id: Any = None

    def run_started(self, *, run_dir: Path, proposer: str, settings: RunSettings, done: int,
                    notes: Sequence[str] = ()) -> None:
        self.console.print(f"run directory: {run_dir}")
        self.console.print(f"proposer: {proposer}", highlight=False)
        for note in notes:
            self.console.print(note, highlight=False, markup=False)
        self.progress = Progress(
            TextColumn("trials"), BarColumn(), MofNCompleteColumn(),
            TextColumn("best {task.fields[best]}  failed {task.fields[failed]}"), TimeElapsedColumn(),
            console=self.console, transient=False,
        )
        self.progress.start()
        self.task_id = self.progress.add_task("trials", total=settings.trials, completed=done, best="-", failed=0)

    def trial_finished(self, trial: Trial, best: Trial | None, counts: dict[str, int]) -> None:
        if self.progress is None:
            return
        done = sum(n for status, n in counts.items() if TrialStatus(status).finished)
        best_text = f"{best.score:.6g}" if best is not None and best.score is not None else "-"
        self.progress.update(self.task_id, completed=done, best=best_text, failed=counts["failed"])

    def run_finished(self) -> None:
        if self.progress is not None:
            self.progress.stop()
