"""The LLM researcher: prompts a model, applies its edits or takes its full program; one repair round."""

from __future__ import annotations

from dataclasses import dataclass

from evoforge.llm.client import LLMClient, LLMError
from evoforge.models import LLMCall, Proposal
from evoforge.research.base import Proposer
from evoforge.research.context import ResearchContext
from evoforge.research.edits import EditError, apply_edits
from evoforge.research.parse import Answer, derive_name, parse_answer
from evoforge.research.prompts import Prompts
from evoforge.task.loader import Task


@dataclass(frozen=True)
class Realized:
    """An answer turned into a candidate program, or the reason it could not be."""

    answer: Answer
    code: str = ""
    error: str | None = None


def realize(text: str, parent_code: str) -> Realized:
    """Parse `text` and build the candidate: edits applied to `parent_code`, else the full program given."""
    answer = parse_answer(text)
    if answer.edits:
        try:
            code = apply_edits(parent_code, answer.edits)
        except EditError as exc:
            return Realized(answer, error=str(exc))
    elif answer.code is not None:
        code = answer.code
    else:
        detail = "; ".join(answer.problems) or "no SEARCH/REPLACE edit block and no fenced code block found"
        return Realized(answer, error=f"the answer has neither edits nor a program: {detail}")
    if code.strip() == parent_code.strip():
        return Realized(answer, error="no change: the result is identical to the current program")
    if parent_code.endswith("\n") and not code.endswith("\n"):
        code += "\n"
    return Realized(answer, code=code)


class LLMProposer(Proposer):
    """Asks the model for one experiment; when the answer cannot be used, sends the exact error back once."""

    name = "llm"

    def __init__(self, task: Task, client: LLMClient) -> None:
        self.task = task
        self.client = client
        self.prompts = Prompts.for_task(task)

    async def propose(self, ctx: ResearchContext) -> Proposal:
        calls: list[LLMCall] = []
        messages = self.prompts.messages(self.task, ctx)
        try:
            text, call = await self.client.complete(messages, role="researcher")
        except LLMError as exc:
            return self._failed(Answer(name="llm call failed"), str(exc), calls + [exc.call])
        calls.append(call)
        first = realize(text, ctx.parent.code)
        if first.error is None:
            return self._proposal(first, None, calls)
        messages = messages + [
            {"role": "assistant", "content": text},
            {"role": "user", "content": self.prompts.repair(self.task, ctx, first.error)},
        ]
        try:
            text, call = await self.client.complete(messages, role="repair")
        except LLMError as exc:
            error = f"{first.error}; the repair call failed: {exc}"
            return self._failed(first.answer, error, calls + [exc.call])
        calls.append(call)
        second = realize(text, ctx.parent.code)
        if second.error is not None:
            error = f"answer unusable after one repair round: {second.error}"
            return self._failed(second.answer, error, calls)
        return self._proposal(second, first.answer, calls)

    def _proposal(self, result: Realized, earlier: Answer | None, calls: list[LLMCall]) -> Proposal:
        answer = result.answer
        motivation = answer.motivation or (earlier.motivation if earlier else "")
        name = answer.name or (earlier.name if earlier else "") or derive_name(motivation)
        return Proposal(
            name=name,
            motivation=motivation,
            code=result.code,
            proposer=self.name,
            model=self.client.model,
            llm_calls=tuple(calls),
        )

    def _failed(self, answer: Answer, error: str, calls: list[LLMCall]) -> Proposal:
        return Proposal(
            name=answer.name or derive_name(answer.motivation, "unusable answer"),
            motivation=answer.motivation,
            code="",
            proposer=self.name,
            model=self.client.model,
            error=error,
            llm_calls=tuple(calls),
        )

    async def aclose(self) -> None:
        await self.client.aclose()
