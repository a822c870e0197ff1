"""The LLM researcher: the ensemble picks a model and temperature, the model is prompted, its edits applied or its
full program taken; one repair round with the same model. Rewards reported back through `observe` teach the ensemble."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evoforge.config import ModelSpec
from evoforge.errors import EvoforgeError
from evoforge.llm.client import ChatClient, LLMError
from evoforge.llm.ensemble import Arm, Ensemble
from evoforge.models import LLMCall, Proposal, ProposalStatus, Trial
from evoforge.research.base import Proposer
from evoforge.research.context import ResearchContext
from evoforge.research.edits import EditError, apply_edits, check_blocks, choose_patch_type
from evoforge.research.parse import Answer, derive_name, parse_answer
from evoforge.research.prompts import Prompts
from evoforge.task.loader import Task

if TYPE_CHECKING:
    from evoforge.llm.local import LocalModelServer


@dataclass(frozen=True)
class Realized:
    """An answer turned into a candidate program, or the reason it could not be."""

    answer: Answer
    code: str = ""
    error: str | None = None
    closest: str = ""  # the region nearest a SEARCH block that matched nowhere, for the repair round


def realize(text: str, parent_code: str, filename: str | None = None) -> Realized:
    """Parse `text` and build the candidate: edits applied to `parent_code`, else the full program given; either
    way, nothing outside the program's EVOLVE-BLOCK regions (when it marks some) may change."""
    answer = parse_answer(text)
    if answer.edits:
        try:
            code = apply_edits(parent_code, answer.edits, filename=filename)
        except EditError as exc:
            return Realized(answer, error=str(exc), closest=exc.closest)
    elif answer.code is not None:
        code = answer.code
        try:
            check_blocks(parent_code, code, filename=filename)
        except EditError as exc:
            return Realized(answer, error=str(exc))
    else:
        detail = "; ".join(answer.problems) or "no SEARCH/REPLACE edit block and no fenced code block found"
        return Realized(answer, error=f"the answer has neither edits nor a program: {detail}")
    if code.strip() == parent_code.strip():
        return Realized(answer, error="no change: the result is identical to the current program")
    if parent_code.endswith("\n") and not code.endswith("\n"):
        code += "\n"
    return Realized(answer, code=code)


class LLMProposer(Proposer):
    """Asks a model of the ensemble for one experiment; when the answer cannot be used, sends the exact error back
    once to the same model. Give either one `client` (a one-model ensemble) or an `ensemble`; a `server` (the local
    model) is started before the first proposal and its client added to the ensemble as `server_spec`."""

    name = "llm"

    def __init__(
        self,
        task: Task,
        client: ChatClient | None = None,
        *,
        ensemble: Ensemble | None = None,
        server: LocalModelServer | None = None,
        server_spec: ModelSpec | None = None,
        seed: int | None = None,
    ) -> None:
        if ensemble is None:
            if client is None:
                raise ValueError("LLMProposer needs a client or an ensemble")
            ensemble = Ensemble([Arm(client.model, task.config.llm.temperature)], {client.model: client})
        self.task = task
        self.rng = random.Random(seed)
        self.ensemble = ensemble
        self.prompts = Prompts.for_task(task)
        self._server, self._server_spec = server, server_spec
        self._server_lock: asyncio.Lock | None = None

    @property
    def client(self) -> ChatClient:
        """The client of the ensemble's first model (the only one, for a single-model run)."""
        first = next(iter(self.ensemble.arms.values()))
        return self.ensemble.clients[first.model]

    def unreachable(self) -> str | None:
        return self.ensemble.down()

    async def _ensure_server(self) -> None:
        """Start the local model server once (concurrent proposals wait for it) and give the ensemble its client."""
        if self._server is None or self._server_spec is None or self._server_spec.name in self.ensemble.clients:
            return
        if self._server_lock is None:
            self._server_lock = asyncio.Lock()
        async with self._server_lock:
            if self._server_spec.name in self.ensemble.clients:
                return
            await self._server.start()
            from evoforge.llm.client import client_for_spec

            client = client_for_spec(self._server_spec, self.task.config.llm, base_url=self._server.base_url)
            self.ensemble.clients[self._server_spec.name] = client

    def _patch_type(self, ctx: ResearchContext) -> str:
        """diff, full or crossover: sampled from research.patch_types when set, else research.edit_format."""
        research = self.task.config.research
        if research.patch_types is None:
            return research.edit_format
        return choose_patch_type(research.patch_types, self.rng, can_crossover=bool(ctx.inspirations))

    async def propose(self, ctx: ResearchContext) -> Proposal:
        calls: list[LLMCall] = []
        patch = self._patch_type(ctx)
        messages = self.prompts.messages(self.task, ctx, patch_type=patch)
        await self._ensure_server()
        try:
            arm = await self.ensemble.pick()
        except EvoforgeError as exc:
            failed = self._failed(Answer(name="no model available"), str(exc), calls, None)
            return _unreachable(failed, self.ensemble.down() is not None)
        picked = self.ensemble.facts(arm)  # at once: its turn is the latest
        proposal = await self._ask(ctx, arm, patch, messages, calls)
        if proposal.status is ProposalStatus.UNREACHABLE:
            self.ensemble.release(arm)  # no trial will carry this pick
        cost = sum(call.cost_usd for call in proposal.llm_calls)
        return dataclasses.replace(proposal, facts={**picked, "patch_type": patch, "cost_usd": cost})

    async def _ask(self, ctx: ResearchContext, arm: Arm, patch: str, messages: list[dict[str, str]],
                   calls: list[LLMCall]) -> Proposal:
        """The researcher call, and one repair round when its answer cannot be used."""
        filename = self.task.program_name
        try:
            text, call = await self.ensemble.complete(arm, messages, role="researcher")
        except LLMError as exc:
            failed = self._failed(Answer(name="llm call failed"), str(exc), calls + [exc.call], arm)
            return _unreachable(failed, exc.unreachable)
        calls.append(call)
        partners = (ctx.inspirations[0].id,) if patch == "crossover" and ctx.inspirations else ()
        first = realize(text, ctx.parent.code, filename)
        if first.error is None:
            return self._proposal(first, None, calls, arm.model, partners)
        repair = self.prompts.repair(self.task, ctx, first.error, patch_type=patch, closest=first.closest)
        messages = messages + [{"role": "assistant", "content": text}, {"role": "user", "content": repair}]
        try:
            text, call = await self.ensemble.complete(arm, messages, role="repair")
        except LLMError as exc:
            error = f"{first.error}; the repair call failed: {exc}"
            return _unreachable(self._failed(first.answer, error, calls + [exc.call], arm), exc.unreachable)
        calls.append(call)
        second = realize(text, ctx.parent.code, filename)
        if second.error is not None:
            error = f"answer unusable after one repair round: {second.error}"
            return self._failed(second.answer, error, calls, arm)
        return self._proposal(second, first.answer, calls, arm.model, partners)

    def _proposal(self, result: Realized, earlier: Answer | None, calls: list[LLMCall], model: str,
                  partners: tuple[int, ...] = ()) -> Proposal:
        answer = result.answer
        motivation = answer.motivation or (earlier.motivation if earlier else "")
        name = answer.name or (earlier.name if earlier else "") or derive_name(motivation)
        return Proposal(
            name=name,
            motivation=motivation,
            code=result.code,
            proposer=self.name,
            model=model,
            llm_calls=tuple(calls),
            extra_parent_ids=partners,
        )

    def _failed(self, answer: Answer, error: str, calls: list[LLMCall], arm: Arm | None) -> Proposal:
        """A proposal with no candidate: its trial fails unevaluated, and the arm learns reward 0 from it."""
        model = arm.model if arm is not None else None
        return Proposal(
            name=answer.name or derive_name(answer.motivation, "unusable answer"),
            motivation=answer.motivation,
            code="",
            proposer=self.name,
            model=model,
            error=error,
            llm_calls=tuple(calls),
        )

    # ---- the ensemble's learning, for the loop -------------------------------------------------------------------
    def observe(self, trial: Trial, old: Trial | None, reward: float) -> None:
        """The ensemble learns from each trial the record writes: the arm in its facts, its reward once finished."""
        self.ensemble.observe(trial, old, reward)

    def discard(self, proposal: Proposal) -> None:
        arm = self.ensemble.arms.get(str(proposal.facts.get("arm")))
        if arm is not None:
            self.ensemble.release(arm)

    def rebuild(self, trials: Iterable[tuple[Trial, float]]) -> None:
        self.ensemble.rebuild(trials)

    def summary(self) -> list[dict[str, Any]]:
        return self.ensemble.summary()

    async def aclose(self) -> None:
        try:
            await self.ensemble.aclose()
        finally:
            if self._server is not None:
                await self._server.stop()


def _unreachable(proposal: Proposal, unreachable: bool) -> Proposal:
    """`proposal` (failed) marked UNREACHABLE when no model could be reached."""
    return dataclasses.replace(proposal, status=ProposalStatus.UNREACHABLE) if unreachable else proposal
