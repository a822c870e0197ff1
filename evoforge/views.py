"""What the reading commands tell, as plain data read from the record: a trial, its evaluation detail and the run
overview (`status`). evoforge/render.py draws them; `--json` prints them as they are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evoforge.memory.record import Record
from evoforge.models import Direction, Trial, TrialStatus
from evoforge.run_lock import lock_holder


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
