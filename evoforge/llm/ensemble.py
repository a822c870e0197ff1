"""The model ensemble: which (model, temperature) arm proposes next, chosen by a bandit rewarded with the child's
improvement over its parent; routes around benched models.

Each pick's facts (arm, model, temperature, the pick's turn) are written on the trial it proposed; the bandit's
statistics are a function of those trials (`observe` folds in each one the record writes, `rebuild` replays a run on
resume), so nothing else is saved. The bandit's RNG is derived from the seed and the pick's turn."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evoforge.config import BanditSettings, ModelSpec
from evoforge.errors import EvoforgeError
from evoforge.llm._base import ChatClient, LLMError
from evoforge.llm.bandit import ArmStats, choose_key
from evoforge.llm.bench import Bench
from evoforge.models import Direction, LLMCall, Trial

if TYPE_CHECKING:
    from evoforge.config import LLMSettings

UNREACHABLE_AFTER = 3  # calls in a row that could not reach any endpoint: the ensemble is taken to be down


class ModelsUnavailable(EvoforgeError):
    """Every model of the ensemble is benched (or has no client) and none comes back in time."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


def arm_key(model: str, temperature: float) -> str:
    return f"{model}@{temperature:g}"


@dataclass(frozen=True)
class Arm:
    """One bandit arm: a model at one temperature."""

    model: str
    temperature: float
    weight: float = 1.0

    @property
    def key(self) -> str:
        return arm_key(self.model, self.temperature)


def arms_from_specs(specs: Sequence[ModelSpec], default_temperature: float) -> list[Arm]:
    """One arm per (model, temperature) of the specs, in config order; weight-0 models are left out."""
    arms = [
        Arm(spec.name, t, spec.weight)
        for spec in specs if spec.weight > 0
        for t in (spec.temperatures or [default_temperature])
    ]
    if not arms:
        raise EvoforgeError("llm.models in task.yaml: give at least one model with weight > 0")
    return arms


def improvement(child_score: float | None, parent_score: float | None, direction: Direction) -> float:
    """The bandit's reward for a child: how much better than its parent (0 for a failed child or no parent)."""
    if child_score is None or parent_score is None:
        return 0.0
    return (child_score - parent_score) * direction.sign()


class Ensemble:
    """Chooses arms with a seeded bandit (`choose`/`pick`), calls their models (`complete`), learns (`observe`)."""

    def __init__(
        self,
        arms: Sequence[Arm],
        clients: Mapping[str, ChatClient] | None = None,
        *,
        bandit: BanditSettings | None = None,
        seed: int = 0,
        bench: Bench | None = None,
        wait_cap_s: float = 60.0,
    ) -> None:
        if not arms:
            raise EvoforgeError("an ensemble needs at least one model")
        self.arms = {arm.key: arm for arm in arms}
        self.clients: dict[str, ChatClient] = dict(clients or {})
        self.bandit = bandit or BanditSettings()
        self.seed = seed
        self.bench = bench or Bench(after_failures=3, bench_s=0.0)
        self.wait_cap_s = wait_cap_s
        self.stats = {key: ArmStats() for key in self.arms}
        self.max_reward = 0.0
        self.in_flight: dict[str, int] = {key: 0 for key in self.arms}  # picked, no trial recorded yet
        self.unreachable_streak: list[str] = []  # the calls in a row that reached no endpoint, as messages

    @classmethod
    def from_settings(
        cls, settings: LLMSettings, specs: Sequence[ModelSpec], *, seed: int = 0, clients: bool = True
    ) -> Ensemble:
        """The ensemble of `specs` with the task's bandit and bench settings (clients built unless told not to)."""
        from evoforge.llm.client import client_for_spec

        built = {spec.name: client_for_spec(spec, settings) for spec in specs if spec.weight > 0} if clients else {}
        return cls(
            arms_from_specs(specs, settings.temperature), built, bandit=settings.bandit, seed=seed,
            bench=Bench(settings.bench_after_failures, settings.bench_s), wait_cap_s=settings.deadline_s,
        )

    # ---- choosing -------------------------------------------------------------------------------------------
    def choose(self) -> Arm:
        """The arm for the next proposal among models not benched; `ModelsUnavailable` when none is free."""
        free = [key for key, arm in self.arms.items() if not self.bench.benched(arm.model)]
        if not free:
            wait = min(self.bench.seconds_left(arm.model) for arm in self.arms.values())
            names = sorted({arm.model for arm in self.arms.values()})
            raise ModelsUnavailable(f"every model is benched after repeated failures ({', '.join(names)}); "
                                    f"the first comes back in {wait:.1f} s", wait)
        if len(free) == 1:  # one model to ask (the common case): nothing to draw or weigh
            key = free[0]
        else:
            key = choose_key(
                self.bandit.policy, free, {k: self.arms[k].weight for k in self.arms}, self.stats, self.pending(),
                max_reward=self.max_reward, exploration=self.bandit.exploration, cost_aware=self.bandit.cost_aware,
                rng=random.Random(f"{self.seed}:{self.turn()}"),
            )
        self.in_flight[key] += 1
        return self.arms[key]

    def turn(self) -> int:
        """The number of the next pick: picks recorded on trials plus picks in flight."""
        return sum(s.chosen for s in self.stats.values()) + sum(self.in_flight.values())

    def pending(self) -> dict[str, int]:
        """Per arm, proposals picked whose reward is not known yet (in flight, or recorded and not finished)."""
        return {key: self.in_flight[key] + s.chosen - s.pulls for key, s in self.stats.items()}

    def facts(self, arm: Arm) -> dict[str, Any]:
        """What to write on the trial `arm` proposes (taken just after `choose`: the turn is its own)."""
        return {"arm": arm.key, "model": arm.model, "temperature": arm.temperature, "arm_turn": self.turn() - 1,
                "policy": self.bandit.policy}

    def release(self, arm: Arm) -> None:
        """A pick that proposed no trial (no model could be reached): as if it never happened."""
        self.in_flight[arm.key] = max(self.in_flight[arm.key] - 1, 0)

    def down(self) -> str | None:
        """Why the ensemble's endpoints are taken to be down (`UNREACHABLE_AFTER` calls in a row could not connect;
        an answer of any kind, an HTTP error included, resets the count), or None."""
        if len(self.unreachable_streak) < UNREACHABLE_AFTER:
            return None
        streak = self.unreachable_streak
        return f"{len(streak)} calls in a row could not connect; the last: {streak[-1]}"

    async def pick(self) -> Arm:
        """Like `choose`, but when every model is benched waits for the first to return, up to `wait_cap_s`;
        fails at once when the endpoints are down (`down()`): waiting for a benched model would be in vain."""
        give_up = time.monotonic() + self.wait_cap_s
        while True:
            down = self.down()
            if down is not None:
                raise ModelsUnavailable(down, 0.0)
            try:
                return self.choose()
            except ModelsUnavailable as exc:
                if time.monotonic() + exc.seconds > give_up:
                    raise ModelsUnavailable(f"{exc} (more than the {self.wait_cap_s:g} s this proposal may wait)",
                                            exc.seconds) from None
                await asyncio.sleep(exc.seconds + 0.01)

    # ---- calling --------------------------------------------------------------------------------------------
    async def complete(self, arm: Arm, messages: list[dict[str, str]], *, role: str) -> tuple[str, LLMCall]:
        """One call to `arm`'s model at `arm`'s temperature; failures count toward benching the model."""
        client = self.clients.get(arm.model)
        if client is None:
            raise EvoforgeError(f"model {arm.model!r} has no client (was its server started?)")
        try:
            text, call = await client.complete(messages, role=role, temperature=arm.temperature)
        except LLMError as exc:
            self.bench.failure(arm.model)
            if exc.unreachable:
                self.unreachable_streak.append(str(exc))
            else:
                self.unreachable_streak.clear()
            raise
        self.bench.success(arm.model)
        self.unreachable_streak.clear()
        return text, call

    # ---- learning -------------------------------------------------------------------------------------------
    def observe(self, trial: Trial, old: Trial | None, reward: float) -> None:
        """Fold in a trial the record wrote (`old`: as it stood before, None when new): a new trial proposed by an
        arm counts as that arm's pick; once finished, `reward` (its improvement over its parent) and its proposal's
        cost are that arm's. Trials of arms configured no more (the task's models changed before a resume) and of
        other proposers are ignored; a trial recorded before facts existed is mapped by its model."""
        key = trial.facts.get("arm")
        if key is None and trial.model is not None and "sampler" not in trial.facts:
            key = self.key_for(trial.model, None)
        stats = self.stats.get(key) if isinstance(key, str) else None
        if stats is None:
            return
        if old is None:
            stats.chosen += 1
            self.in_flight[key] = max(self.in_flight[key] - 1, 0)
        if trial.status.finished and (old is None or not old.status.finished):
            stats.observe(reward, float(trial.facts.get("cost_usd", 0.0)))
            self.max_reward = max(self.max_reward, reward)

    def rebuild(self, trials: Iterable[tuple[Trial, float]]) -> None:
        """Forget the statistics and replay a run's trials with their rewards, in id order."""
        self.stats = {key: ArmStats() for key in self.arms}
        self.max_reward = 0.0
        self.in_flight = {key: 0 for key in self.arms}
        for trial, reward in sorted(trials, key=lambda pair: pair[0].id):
            self.observe(trial, None, reward)

    def state(self) -> dict[str, Any]:
        """The statistics as plain data (a rebuilt ensemble equals the live one on it)."""
        return {"max_reward": self.max_reward, "arms": {key: s.to_dict() for key, s in self.stats.items()},
                "in_flight": dict(self.in_flight)}

    def key_for(self, model: str | None, temperature: float | None) -> str | None:
        """The arm key of a trial's (model, temperature): the model's arm nearest that temperature (its first
        arm when the temperature is unknown), or None when the model is not in the ensemble."""
        arms = [arm for arm in self.arms.values() if arm.model == model]
        if not arms:
            return None
        if temperature is None:
            return arms[0].key
        return min(arms, key=lambda arm: abs(arm.temperature - temperature)).key

    # ---- reporting ------------------------------------------------------------------------------------------
    def summary(self) -> list[dict[str, Any]]:
        """Per arm: choices (recorded and in flight), rewards observed, mean reward, rewards > 0, total cost, bench
        time left."""
        return [
            {**arm_row(arm.model, arm.temperature, stats), "chosen": stats.chosen + self.in_flight[key],
             "benched_s": self.bench.seconds_left(arm.model)}
            for (key, arm), stats in zip(self.arms.items(), self.stats.values(), strict=True)
        ]

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()


def arm_row(model: str, temperature: float, stats: ArmStats) -> dict[str, Any]:
    return {
        "arm": arm_key(model, temperature), "model": model, "temperature": temperature, "chosen": stats.chosen,
        "pulls": stats.pulls, "mean_reward": stats.mean_reward, "improved": stats.improved,
        "total_cost_usd": stats.cost_sum,
    }

