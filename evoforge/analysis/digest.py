"""The deterministic digest of one outcome: score and metric deltas vs parent and best, failure, runtime.

It needs no LLM; it is stored with the trial and shown to the researcher whenever that trial becomes a parent.
"""

from __future__ import annotations

import math
from typing import Any

from evoforge.models import Digest, Direction, Outcome, Trial, TrialStatus

_TRACE_LINES = 6


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def fmt_number(x: float) -> str:
    """A score or metric as digests and lessons print it: six significant digits."""
    return f"{x:.6g}"


def _delta_phrase(new: float, old: float, direction: Direction, against: str) -> tuple[str, float]:
    delta = new - old
    if delta == 0:
        return f"equal to {against} ({fmt_number(old)})", 0.0
    verdict = "better" if direction.better(new, old) else "worse"
    rel = f", {delta / abs(old) * 100:+.2f}%" if old != 0 else ""
    return f"{verdict} than {against} ({fmt_number(old)}) by {fmt_number(delta)}{rel}", delta


def _metric_deltas(metrics: dict[str, Any], parent: Trial | None, metric: str) -> dict[str, float]:
    if parent is None:
        return {}
    deltas: dict[str, float] = {}
    for name, value in sorted(metrics.items()):
        new, old = _number(value), _number(parent.metrics.get(name))
        if name != metric and new is not None and old is not None and new != old:
            deltas[name] = new - old
    return deltas


def _trace_tail(outcome: Outcome) -> str:
    text = (outcome.error_message or "").strip() or outcome.stderr_tail.strip()
    return "\n".join(text.splitlines()[-_TRACE_LINES:])


def digest_outcome(
    outcome: Outcome,
    *,
    parent: Trial | None,
    best: Trial | None,
    direction: Direction,
    metric: str,
) -> Digest:
    """Summarise `outcome` against its parent and the run's best trial so far, in a few plain lines."""
    lines: list[str] = []
    data: dict[str, Any] = {"status": outcome.status.value, "seconds": round(outcome.seconds, 3)}
    if outcome.reused_from is not None:
        lines.append(f"duplicate of trial #{outcome.reused_from}: its outcome is reused, not evaluated again")
        data["reused_from"] = outcome.reused_from
    if outcome.suspect:
        lines.append("SUSPECT: a monitor found a value beyond its plausible bound; re-evaluate before trusting it")
        data["suspect"] = True
    stopped = [d for d in outcome.decisions if d.action == "prune"]
    if stopped:
        data["pruned_by"] = {"gate": stopped[0].gate, "stage": stopped[0].stage, "reason": stopped[0].reason}
    if outcome.status is TrialStatus.SUCCEEDED and outcome.score is not None:
        lines.append(f"{metric} = {fmt_number(outcome.score)}")
        data["score"] = outcome.score
        for ref, label in ((parent, "parent"), (best, "best")):
            if ref is not None and ref.score is not None:
                phrase, delta = _delta_phrase(outcome.score, ref.score, direction, f"{label} #{ref.id}")
                lines.append(f"{metric} {phrase}")
                data[f"delta_vs_{label}"] = delta
                data[f"improved_vs_{label}"] = direction.better(outcome.score, ref.score)
        deltas = _metric_deltas(outcome.metrics, parent, metric)
        if deltas:
            shown = ", ".join(f"{k} {v:+.4g}" for k, v in list(deltas.items())[:8])
            lines.append(f"metric changes vs parent: {shown}")
            data["metric_deltas"] = deltas
    else:
        cls = outcome.error_class or outcome.status.value
        lines.append(f"{outcome.status.value}: {cls}")
        data["error_class"] = cls
        tail = _trace_tail(outcome)
        if tail:
            lines.append("last lines:\n" + tail)
            data["trace_tail"] = tail
    if parent is not None and parent.seconds > 0:
        ratio = outcome.seconds / parent.seconds
        lines.append(f"runtime {outcome.seconds:.2f}s ({ratio:.2f}x parent's {parent.seconds:.2f}s)")
        data["runtime_ratio_vs_parent"] = ratio
    else:
        lines.append(f"runtime {outcome.seconds:.2f}s")
    return Digest(text="\n".join(lines), data=data)
