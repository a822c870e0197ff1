"""One trial in full for its page: the trial and its parent, the diff, the outcome with a log excerpt, telemetry
curves beside the parent's, gate decisions, digest and analyses, knowledge shown and lessons written, LLM calls."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from evoforge.dashboard.queries import trial_facts, trial_summaries
from evoforge.dashboard.sources import RunSource
from evoforge.errors import RunError
from evoforge.models import TelemetryPoint
from evoforge.views import evaluation_detail, trial_dict

LOG_TAIL_CHARS = 4000
TEXT_CHARS = 20000  # an LLM prompt or reply is cut past this (the page stays light)


def curves(points: Iterable[TelemetryPoint]) -> dict[str, list[list[float | None]]]:
    """Telemetry as one series per `stage/name`: [step (or index), value] pairs in the order reported."""
    series: dict[str, list[list[float | None]]] = {}
    for p in points:
        line = series.setdefault(f"{p.stage}/{p.name}", [])
        line.append([p.step if p.step is not None else len(line), p.value])
    return series


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


def _log_excerpt(source: RunSource, trial_id: int) -> dict[str, str]:
    logs = {}
    for name in ("stderr.log", "stdout.log"):
        path = source.trial_log(trial_id, name)
        if path is not None:
            with path.open("rb") as fh:
                size = path.stat().st_size
                fh.seek(max(0, size - LOG_TAIL_CHARS * 4))
                logs[name] = _tail(fh.read().decode("utf-8", "replace"), LOG_TAIL_CHARS)
    return logs


def trial_page(source: RunSource, trial_id: int) -> dict[str, Any] | None:
    """The trial page's data, or None when the run has no such trial."""
    with source.record() as record:
        try:
            trial = record.trial(trial_id)
        except RunError:
            return None
        data = trial_dict(trial, with_code=True)
        data.update(evaluation_detail(record, trial_id))
        data["curves"] = curves(record.telemetry(trial_id))
        parent_id = trial.parent_ids[0] if trial.parent_ids else None
        data["parent"] = None
        if parent_id is not None:
            try:
                parent = record.trial(parent_id)
            except RunError:
                parent = None
            if parent is not None:
                data["parent"] = {"id": parent.id, "name": parent.name, "status": parent.status.value,
                                  "score": parent.score, "code": parent.code,
                                  "curves": curves(record.telemetry(parent.id))}
        data["children"] = [c["id"] for c in trial_summaries(record) if c["parents"][:1] == [trial_id]]
        data["llm_calls"] = [
            {"role": c.role, "model": c.model, "tokens_in": c.tokens_in, "tokens_out": c.tokens_out,
             "latency_s": c.latency_s, "cost_usd": c.cost_usd, "retries": c.retries, "error": c.error,
             "temperature": c.temperature, "prompt": _tail(c.prompt, TEXT_CHARS),
             "response": _tail(c.response, TEXT_CHARS)}
            for c in record.llm_calls(trial_id)
        ]
        analyses = record.analyses(trial_id)
        data["facts"] = trial_facts(record, trial_id).get(trial_id, {})
    data["analyses"] = [{"kind": a.kind, "text": a.text, "data": a.data} for a in analyses if a.kind != "lesson"]
    data["lessons"] = [{"text": a.text, "data": a.data} for a in analyses if a.kind == "lesson"]
    data["logs"] = _log_excerpt(source, trial_id)
    return data
