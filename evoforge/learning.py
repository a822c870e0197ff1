"""The loop's glue to long-term memory: retrieval for the researcher (LEARN), the analyzer and its lessons written
back into the cognition base (ANALYZE), the periodic research review, and the novelty gate (`NoveltyGate`) that
screens each proposal before evaluation.

It only moves plain data between the record, the cognition base and the analysis pillar; each owns its rules.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from evoforge.analysis import (
    Analysis,
    AnalysisInput,
    Analyzer,
    judge_novelty,
    proposal_similarity,
    text_similarities,
    write_agenda,
)
from evoforge.analysis.novelty import could_reach
from evoforge.hand_off import HandOff
from evoforge.llm.client import LLMClient
from evoforge.memory.cognition import CognitionBase, Hit, KnowledgeItem
from evoforge.memory.population import Population
from evoforge.memory.record import Record
from evoforge.models import Digest, LLMCall, NoveltyDecision, Outcome, Proposal, ProposalStatus, Trial, TrialStatus
from evoforge.research import Proposer
from evoforge.research.context import KnowledgeNote, ResearchContext
from evoforge.task import Task

log = logging.getLogger(__name__)
T = TypeVar("T")
QUERY_CHARS = 400  # of the problem statement: the same every round, so it must not drown the parent's specifics


def open_knowledge_base(task: Task, run_dir: Path, kb: str | None) -> CognitionBase:
    """The run's cognition base (`--kb`, else the task's `knowledge.kb`, else RUN_DIR/knowledge.db), seeded from
    the task's knowledge folder (items already there are not added twice)."""
    settings = task.config.knowledge
    location = kb or settings.kb or str(run_dir / "knowledge.db")
    base = CognitionBase.open(location, settings=settings)
    folder = task.root / settings.folder
    if folder.is_dir():
        base.import_paths([folder])
    if task.config.layout == "asi-evolve":  # its init_cognition.py knowledge list, read (never run)
        from evoforge.task.foreign import asi_knowledge

        base.add(asi_knowledge(task.root))
    return base


class Learning:
    """Retrieval, analysis, lessons, review and novelty for one run."""

    def __init__(self, *, task: Task, record: Record, kb: CognitionBase, analyzer: Analyzer,
                 client: LLMClient | None, run_label: str) -> None:
        self.task, self.record, self.kb, self.analyzer, self.client = task, record, kb, analyzer, client
        self.run_label = run_label
        agendas = record.agendas()
        self.agenda = agendas[-1]["text"] if agendas else ""
        self._finished_since_review = 0
        self._analysed_here: set[int] = set()  # trials this runner finished: it writes their analysis, if any
        self._kb_thread = HandOff("cognition")
        self.novelty = NoveltyGate(task, kb, client, self._off_loop)

    # ---- LEARN ------------------------------------------------------------------------------------------
    async def _off_loop(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a cognition-base call (embedding, search, merge) on the base's own thread: the event loop keeps
        timing evaluations and streaming telemetry meanwhile, and the base sees one caller at a time."""
        return await self._kb_thread.call(fn, *args, **kwargs)

    def analysed_here(self, trial_id: int) -> None:
        """`trial_id` was finished by this runner: its analysis (none for a reused duplicate) is written by this
        object, so until then the record has none to read."""
        self._analysed_here.add(trial_id)

    async def parent_analysis(self, parent: Trial) -> str:
        """The text of the parent's latest analysis ("" when it has none yet): a trial analysed in this session, or
        read once, needs no trip to the record's thread, nor does one whose analysis this session has yet to write."""
        known = self.record.known_analysis(parent.id)
        if known is not None:
            return known
        if parent.id in self._analysed_here:  # its analysis is on its way (or none comes): the record has none
            return ""
        return await self.record.io(self.record.latest_analysis, parent.id)

    async def retrieve(self, parent: Trial, failures: Sequence[Trial], analysis: str) -> list[Hit]:
        """Knowledge for the next proposal (`analysis`: the parent's, as `parent_analysis` gives it)."""
        return await self._off_loop(self._retrieve, parent, failures, analysis)

    def _retrieve(self, parent: Trial, failures: Sequence[Trial], analysis: str) -> list[Hit]:
        """Knowledge for the next proposal, queried with the failure symptoms, the parent's analysis and digest,
        and the start of the problem. The round's specifics come first: the dense encoder reads only the first 256
        tokens of the query, which a long problem statement would otherwise fill on its own."""
        k = self.task.config.knowledge.top_k
        if k == 0:
            return []
        symptoms = " ".join(f"{t.error_class or ''} {(t.error_message or '')[:200]}" for t in failures)
        query = f"{symptoms}\n{analysis[:600]}\n{parent.digest}\n{self.task.problem_text[:QUERY_CHARS]}"
        return self.kb.search(query.strip(), k)

    @staticmethod
    def notes(hits: Sequence[Hit]) -> tuple[KnowledgeNote, ...]:
        return tuple(
            KnowledgeNote(id=int(h.item.id or 0), kind=h.item.kind, title=h.item.title, content=h.item.content,
                          trigger=h.item.trigger, support=h.item.support)
            for h in hits
        )

    def record_shown(self, trial_id: int, hits: Sequence[Hit]) -> None:
        self.record.add_knowledge_shown(
            trial_id, [(int(h.item.id or 0), h.item.kind, h.item.title, h.score) for h in hits]
        )

    # ---- ANALYZE ----------------------------------------------------------------------------------------
    async def analyze(self, trial: Trial, outcome: Outcome, digest: Digest, parent: Trial | None,
                      siblings: Sequence[Trial]) -> Analysis:
        """Run the analyzer, record its analysis and calls, and write its lessons back into the cognition base."""
        cfg = self.task.config
        curves: dict[str, list[tuple[int, float]]] = {}
        for point in outcome.telemetry:
            if point.step is not None:
                curves.setdefault(f"{point.stage}/{point.name}", []).append((point.step, point.value))
        analysis = await self.analyzer.analyze(AnalysisInput(
            trial=trial, outcome=outcome, digest=digest, parent=parent, siblings=siblings, curves=curves,
            log_tail=f"{outcome.stdout_tail}\n{outcome.stderr_tail}", metric=cfg.objective.metric,
            direction=cfg.objective.direction, problem=self.task.problem_text,
        ))
        rows: list[tuple[str, str, dict[str, Any]]] = [
            ("analysis", analysis.text, {**analysis.data, "source": analysis.source})]
        items = [KnowledgeItem(
            kind=lesson.kind, title=lesson.title, content=lesson.content, trigger=lesson.trigger,
            source=f"{self.run_label} trial #{trial.id}", tags=lesson.tags, effect_sign=lesson.effect_sign,
            provenance={"run": self.run_label, "trial": trial.id, "task": cfg.name},
        ) for lesson in analysis.lessons]
        added = await self._off_loop(self._add_lessons, items) if items else []  # one trip for all the lessons
        for lesson, (item_id, verdict) in zip(analysis.lessons, added, strict=True):
            rows.append(("lesson", f"{lesson.title}: {lesson.content}",
                         {"item_id": item_id, "verdict": verdict, "trigger": lesson.trigger,
                          "effect_sign": lesson.effect_sign}))
        await self.record.io(self._write_analysis, trial.id, analysis.llm_calls, rows)  # one transaction
        self._finished_since_review += 1
        return analysis

    def _add_lessons(self, items: Sequence[KnowledgeItem]) -> list[tuple[int, str]]:
        """(On the base's thread.) Each lesson written or merged, in order: (item id, verdict) each."""
        return [self.kb.add_lesson(item, effect_sign=item.effect_sign) for item in items]

    def _write_analysis(self, trial_id: int, calls: Sequence[LLMCall], rows: list[tuple[str, str, dict[str, Any]]]
                        ) -> None:
        self.record.add_llm_calls(trial_id, calls)
        self.record.add_analyses(trial_id, rows)  # the analysis and its lessons: one statement

    async def maybe_review(self, trials: Population, last_trial_id: int) -> None:
        """Every `analysis.review_every` analysed trials, write a new research agenda and keep it in the record.
        The best trials and the failure classes come from the population's indexes: a review costs the same at 100
        or 100,000 trials."""
        every = self.task.config.analysis.review_every
        if every == 0 or self._finished_since_review < every:
            return
        self._finished_since_review = 0
        failures = {cls: n for cls, n in trials.failure_classes.items() if n > 0}
        learned = await self._off_loop(self.kb.top_supported, 10, ("lesson", "pitfall"))
        lessons = [(i.title, i.content, i.support) for i in learned]
        agenda = await write_agenda(client=self.client, problem=self.task.problem_text, best=trials.best(5),
                                    lessons=lessons, failure_classes=failures, previous=self.agenda or None)
        await self.record.io(self._write_agenda, last_trial_id, agenda.llm_calls, agenda.text, {  # one transaction
            "directions": agenda.directions, "dead_ends": agenda.dead_ends, "source": agenda.source})
        self.agenda = agenda.text

    def _write_agenda(self, last_trial_id: int, calls: Sequence[LLMCall], text: str, data: dict[str, Any]) -> None:
        self.record.add_llm_calls(None, calls)
        self.record.add_agenda(last_trial_id, text, data)

    async def aclose(self) -> None:
        await self.analyzer.aclose()
        if self.client is not None:
            await self.client.aclose()
        await self._off_loop(self.kb.close)
        self._kb_thread.shutdown(wait=True)


def describe(kb: CognitionBase) -> dict[str, Any]:
    return {"mode": kb.mode, "items": kb.count()}


class NoveltyGate:
    """The novelty gate, one object: is a proposal a near-duplicate of an evaluated trial? Similarity of
    motivation (embeddings of the cognition base's encoder, else shingles) and code (shingles) at or over
    `analysis.novelty_threshold`, confirmed by the judge when a model is configured. Runs its encoding on the
    cognition base's thread (`off_loop`)."""

    def __init__(self, task: Task, kb: CognitionBase, client: LLMClient | None,
                 off_loop: Callable[..., Awaitable[Any]]) -> None:
        self.task, self.kb, self.client, self._off_loop = task, kb, client, off_loop

    async def screen(self, proposer: Proposer, ctx: ResearchContext, evaluated: Sequence[Trial]) -> Proposal:
        """Ask `proposer` for a proposal built on `ctx`; a near-duplicate of an evaluated trial goes back once with
        that trial shown, and comes out NOT_NOVEL if it still is one. The judge's calls join the proposal's."""
        proposal = await proposer.propose(ctx)
        if proposal.status is not ProposalStatus.READY or proposer.tunes_constants:
            return proposal
        first = await self.decide(proposal, evaluated)
        if first.novel:
            return dataclasses.replace(proposal, llm_calls=proposal.llm_calls + first.llm_calls)
        proposer.discard(proposal)  # the second answer, not this one, becomes the trial
        second = await proposer.propose(dataclasses.replace(ctx, near_duplicate=first.near))
        calls = proposal.llm_calls + first.llm_calls + second.llm_calls
        if second.status is not ProposalStatus.READY:
            return dataclasses.replace(second, llm_calls=calls)
        again = await self.decide(second, evaluated)
        second = dataclasses.replace(second, llm_calls=calls + again.llm_calls)
        if again.near is None:
            return second
        return dataclasses.replace(second, status=ProposalStatus.NOT_NOVEL, error=(
            f"not novel: too close to trial #{again.near.id} ('{again.near.name}') even after being shown it"))

    async def decide(self, proposal: Proposal, evaluated: Sequence[Trial]) -> NoveltyDecision:
        """The evaluated trial this proposal repeats (similar hypothesis and code, confirmed by the judge when a
        model is configured), or a novel verdict."""
        near = await self._off_loop(self._nearest, proposal, evaluated)
        if near is None or self.client is None:
            return NoveltyDecision(near)
        novel, call = await judge_novelty(self.client, candidate_motivation=proposal.motivation,
                                          candidate_code=proposal.code, near_motivation=near.motivation,
                                          near_code=near.code)
        return NoveltyDecision(None if novel else near, (call,))

    def _nearest(self, proposal: Proposal, evaluated: Sequence[Trial]) -> Trial | None:
        """The most similar evaluated trial at or over the novelty threshold (runs on the base's thread); of equally
        similar ones, the first in `evaluated`.

        Code similarity first: a trial whose code is too far for even a perfect motivation match to reach the
        threshold is out, and only the motivations of the trials left are encoded (the encoder's cache answers
        for texts seen before), in one batch with the proposal's. The similarities are computed together, as
        arrays: the pool holds a few hundred trials, and a Python step per trial cost more than the encoding."""
        threshold = self.task.config.analysis.novelty_threshold
        pool = [t for t in evaluated  # a rejected trial was never evaluated, and a reuse repeats its original
                if t.code and t.reused_from is None and t.status is not TrialStatus.REJECTED]
        codes = np.array(text_similarities(proposal.code, [trial.code for trial in pool]), dtype=np.float64)
        near = np.flatnonzero(could_reach(codes, threshold)).tolist()
        if not near:
            return None
        trials = [pool[i] for i in near]
        similarities = self._similarities(proposal, trials, codes[near])
        over = similarities >= threshold
        if not over.any():
            return None
        return trials[int(np.where(over, similarities, -np.inf).argmax())]  # argmax: the first of equal ones

    def _similarities(self, proposal: Proposal, trials: list[Trial], codes: np.ndarray) -> np.ndarray:
        """Each trial's similarity to the proposal: motivation (cosine of embeddings) and code (`codes`, shingles)
        weighted 0.4 / 0.6; by shingles alone (`proposal_similarity`) where a motivation is empty, or for all of
        them without an encoder. The motivations are encoded in one call, each distinct text once."""
        out = np.empty(len(trials), dtype=np.float64)
        encoder = self.kb.encoder
        dense = [i for i, trial in enumerate(trials) if trial.motivation] if proposal.motivation else []
        if encoder is not None and dense:
            theirs = [trials[i].motivation for i in dense]
            distinct = list(dict.fromkeys((proposal.motivation, *theirs)))
            vectors = encoder.encode(distinct)
            row = {text: i for i, text in enumerate(distinct)}
            cosines = (vectors[[row[text] for text in theirs]] @ vectors[0]).astype(np.float64)
            out[dense] = 0.4 * cosines + 0.6 * codes[dense]
        else:
            dense = []
        if len(dense) < len(trials):
            for i in sorted(set(range(len(trials))).difference(dense)):
                trial = trials[i]
                out[i] = proposal_similarity(proposal.motivation, proposal.code, trial.motivation, trial.code)
        return out
