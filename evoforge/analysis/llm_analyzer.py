"""The LLM analyzer: shows the model the digest, the diff, condensed logs, curve summaries and the parent's
and best siblings' outcomes, and asks for a schema-checked JSON analysis; one repair round, then the digest."""

from __future__ import annotations

from typing import Any

from evoforge.analysis._base import Analysis, AnalysisInput, Analyzer
from evoforge.analysis.condense import condense_log, summarize_curves
from evoforge.analysis.lessons import Lesson
from evoforge.analysis.offline import finished_trial
from evoforge.analysis.prompts import AnalysisPrompts
from evoforge.analysis.schema import MAX_LESSONS, AnalysisModel, SchemaError, parse_analysis
from evoforge.config import AnalysisSettings
from evoforge.llm.client import LLMClient, LLMError
from evoforge.models import LLMCall, TrialStatus
from evoforge.programs import unified_diff
from evoforge.task.loader import Task

SYSTEM = (
    "You are the Analyzer of an automated research loop. You read what one experiment changed and what its "
    "evaluation measured, and you write a short causal analysis with reusable lessons. State numbers exactly "
    "as measured; mark causes as hypotheses. Answer with one JSON object and nothing else."
)
MAX_SIBLINGS = 3


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    return text[: limit - 1] + f"\n[… {len(text) - limit + 1} more characters cut …]"


def _effect_from_digest(inp: AnalysisInput) -> int:
    if inp.outcome.status is not TrialStatus.SUCCEEDED:
        return -1
    improved = inp.digest.data.get("improved_vs_parent")
    delta = inp.digest.data.get("delta_vs_parent")
    if improved is None or not delta:
        return 0
    return 1 if improved else -1


def to_lessons(model: AnalysisModel, default_sign: int) -> tuple[Lesson, ...]:
    """The model's lessons (at most MAX_LESSONS); its headline lesson when it listed none."""
    if model.lessons:
        return tuple(
            Lesson(m.title, m.content, m.trigger, m.effect, tuple(m.tags), m.kind) for m in model.lessons
        )[:MAX_LESSONS]
    if not model.lesson:
        return ()
    title = model.lesson.split(". ")[0].strip().rstrip(".")
    title = title if len(title) <= 120 else title[:119] + "…"
    return (Lesson(title, model.lesson, model.trigger or model.what_happened, default_sign),)


def render(model: AnalysisModel) -> str:
    """The analysis as Markdown, one labelled paragraph per part."""
    parts = [
        f"**What changed:** {model.what_changed}",
        f"**What happened:** {model.what_happened}",
        f"**Why (hypothesis):** {model.why}",
    ]
    if model.lesson:
        parts.append(f"**Lesson:** {model.lesson}" + (f"\n\n*Applies when:* {model.trigger}" if model.trigger else ""))
    if model.next_steps:
        parts.append("**Next steps:**\n" + "\n".join(f"- {step}" for step in model.next_steps))
    return "\n\n".join(parts)


class LLMAnalyzer(Analyzer):
    """Asks the model for a structured analysis; a malformed answer gets one repair round quoting the
    validation error, and when that fails too (or the call fails) the digest stands alone."""

    name = "llm"

    def __init__(self, task: Task, client: LLMClient, settings: AnalysisSettings | None = None) -> None:
        self.task = task
        self.client = client
        self.settings = settings or task.config.analysis
        self.prompts = AnalysisPrompts.for_task(task)

    def values(self, inp: AnalysisInput) -> dict[str, Any]:
        """Everything analysis.j2 may use (see the built-in template)."""
        trial = finished_trial(inp)
        diff = trial.diff or (unified_diff(inp.parent.code, trial.code, self.task.program_name) if inp.parent else "")
        log = inp.log_tail or "\n".join(x for x in (inp.outcome.stdout_tail, inp.outcome.stderr_tail) if x)
        return {
            "problem": _clip(inp.problem, self.settings.problem_chars),
            "metric": inp.metric,
            "direction": inp.direction.value,
            "trial": trial,
            "outcome": inp.outcome,
            "digest": inp.digest.text.strip(),
            "diff": _clip(diff, self.settings.diff_chars),
            "log": condense_log(log.strip(), self.settings.log_chars),
            "curves": summarize_curves(inp.curves, self.settings.curve_chars),
            "parent": inp.parent,
            "siblings": list(inp.siblings)[:MAX_SIBLINGS],
            "max_lessons": MAX_LESSONS,
        }

    async def analyze(self, inp: AnalysisInput) -> Analysis:
        values = self.values(inp)
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": self.prompts.render("analysis.j2", values)},
        ]
        calls: list[LLMCall] = []
        try:
            text, call = await self.client.complete(messages, role="analyzer")
            calls.append(call)
            try:
                return self._analysis(parse_analysis(text), inp, calls)
            except SchemaError as exc:
                first_error = str(exc)
            repair = self.prompts.render("analysis_repair.j2", {**values, "error": first_error})
            messages += [{"role": "assistant", "content": text}, {"role": "user", "content": repair}]
            text, call = await self.client.complete(messages, role="analyzer_repair")
            calls.append(call)
            try:
                return self._analysis(parse_analysis(text), inp, calls)
            except SchemaError as exc:
                return self._digest_only(inp, calls, f"unusable after one repair round: {exc}")
        except LLMError as exc:
            return self._digest_only(inp, calls + [exc.call], str(exc))

    def _analysis(self, model: AnalysisModel, inp: AnalysisInput, calls: list[LLMCall]) -> Analysis:
        data = model.model_dump(mode="json")
        return Analysis(
            text=render(model),
            data=data,
            lessons=to_lessons(model, _effect_from_digest(inp)),
            llm_calls=tuple(calls),
            source="llm",
        )

    @staticmethod
    def _digest_only(inp: AnalysisInput, calls: list[LLMCall], reason: str) -> Analysis:
        return Analysis(
            text=inp.digest.text, data={"error": reason}, lessons=(), llm_calls=tuple(calls), source="digest"
        )

    async def aclose(self) -> None:
        await self.client.aclose()
