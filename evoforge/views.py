"""What the reading commands tell, as plain data read from the record: a trial, its evaluation detail and the run
overview (`status`). evoforge/render.py draws them; `--json` prints them as they are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evoforge.experiment.disk import run_folder_bytes
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


def seed_and_gain(seed: Trial | None, best: Trial | None, direction: Direction) -> dict[str, Any]:
    """The seed's score (trial 1, the task's own program) and how far the best trial is past it: `gain` is positive
    when the best is better, in the task's direction; `gain_pct` is relative to the seed's magnitude."""
    seed_score = seed.score if seed is not None and seed.scored and not seed.parent_ids else None
    gain = gain_pct = None
    if seed_score is not None and best is not None and best.score is not None:
        gain = best.score - seed_score if direction is Direction.MAXIMIZE else seed_score - best.score
        gain_pct = 100.0 * gain / abs(seed_score) if seed_score != 0 else None
    return {"seed_score": seed_score, "seed_trial": seed.id if seed_score is not None else None, "gain": gain,
            "gain_pct": gain_pct}


def best_view(run_dir: Path) -> tuple[Trial | None, dict[str, Any]]:
    """The run's champion (else, in a record made before champions were kept, its best-scoring trial), with the
    seed's score and the gain over it (see seed_and_gain) and, under "champion", its mean ± stderr, the number of
    evaluations behind it and why it holds the title; "best_single" is the best single score when another trial's."""
    record = Record.for_run_dir(run_dir, read_only=True)
    try:
        direction = run_direction(record)
        best = record.best(direction)
        champion = record.champion()
        chosen = record.trial(champion.trial_id) if champion is not None else best
        first = record.trials(limit=1)
    finally:
        record.close()
    extra = seed_and_gain(first[0] if first else None, chosen, direction)
    extra["champion"] = None if champion is None else {
        "trial": champion.trial_id, "mean": champion.mean, "stderr": champion.stderr,
        "evaluations": champion.evaluations, "reason": champion.reason}
    extra["best_single"] = ({"trial": best.id, "score": best.score}
                            if best is not None and chosen is not None and best.id != chosen.id else None)
    return chosen, extra


def show_view(run_dir: Path, trial_id: int) -> dict[str, Any]:
    """One trial in full, as `show --json` prints it: the trial, its evaluation detail, LLM calls and analyses
    (an analysis that failed carries its `error`)."""
    record = Record.for_run_dir(run_dir, read_only=True)
    try:
        data = trial_dict(record.trial(trial_id), with_code=True)
        data.update(evaluation_detail(record, trial_id))
        data["llm_calls"] = [
            {"role": c.role, "model": c.model, "tokens_in": c.tokens_in, "tokens_out": c.tokens_out,
             "latency_s": c.latency_s, "cost_usd": c.cost_usd, "retries": c.retries, "error": c.error}
            for c in record.llm_calls(trial_id)
        ]
        data["analyses"] = [{"kind": a.kind, "text": a.text, "error": a.data.get("error"),
                             "source": a.data.get("source")} for a in record.analyses(trial_id)]
    finally:
        record.close()
    return data


def run_direction(record: Record) -> Direction:
    cfg = record.run_info().config.get("task_config", {})
    return Direction(cfg.get("objective", {}).get("direction", "maximize"))


def run_overview(run_dir: Path) -> dict[str, Any]:
    """Counts per status (each under its own name), best score and trial, time and LLM usage of a run."""
    record = Record.for_run_dir(run_dir, read_only=True)
    try:
        info = record.run_info()
        direction = run_direction(record)
        counts = record.counts()
        best = record.best(direction)
        trials = record.trials()
        calls = record.llm_calls()
        savings = record.savings()
        stopped = (record.load_state("stopped") or {}).get("reason")
        champion = record.champion()
    finally:
        record.close()
    overview: dict[str, Any] = dict(counts)
    overview.update(
        total=sum(counts.values()),
        best_score=best.score if best else None,
        best_trial=best.id if best else None,
        best_stderr=best.metrics.get("score_stderr") if best else None,
        champion=None if champion is None else {"trial": champion.trial_id, "mean": champion.mean,
                                                "stderr": champion.stderr, "evaluations": champion.evaluations},
        **seed_and_gain(trials[0] if trials else None, best, direction),
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
        disk_bytes=run_folder_bytes(run_dir),
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
