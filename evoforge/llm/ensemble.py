"""The model ensemble: which (model, temperature) arm proposes next, chosen by a bandit rewarded with the child's
improvement over its parent; routes around benched models, and its state survives resume via `state_dict()`."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evoforge.config import BanditSettings, ModelSpec
from evoforge.errors import EvoforgeError
from evoforge.llm._base import ChatClient, LLMError
from evoforge.llm.bandit import ArmStats, choose_key
from evoforge.llm.bench import Bench
from evoforge.models import Direction, LLMCall

if TYPE_CHECKING:
    from evoforge.config import LLMSettings

STATE_VERSION = 1
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
        self.choices = 0
        self.max_reward = 0.0
        self.pending: dict[str, int] = {key: 0 for key in self.arms}
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
        rng = random.Random(f"{self.seed}:{self.choices}")
        key = choose_key(
            self.bandit.policy, free, {k: self.arms[k].weight for k in self.arms}, self.stats, self.pending,
            max_reward=self.max_reward, exploration=self.bandit.exploration, cost_aware=self.bandit.cost_aware,
            rng=rng,
        )
        self.choices += 1
        self.stats[key].chosen += 1
        self.pending[key] += 1
        return self.arms[key]

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
    def observe(self, arm_key: str, reward: float, cost_usd: float) -> None:
        """Record the reward (child's improvement over its parent) and cost of a proposal made by `arm_key`."""
        stats = self.stats.get(arm_key)
        if stats is None:
            return  # an arm no longer configured (e.g. the task's models changed before a resume)
        stats.observe(reward, cost_usd)
        self.max_reward = max(self.max_reward, reward)
        self.pending[arm_key] = max(self.pending[arm_key] - 1, 0)

    def key_for(self, model: str | None, temperature: float | None) -> str | None:
        """The arm key of a trial's (model, temperature): the model's arm nearest that temperature (its first
        arm when the temperature is unknown), or None when the model is not in the ensemble."""
        arms = [arm for arm in self.arms.values() if arm.model == model]
        if not arms:
            return None
        if temperature is None:
            return arms[0].key
        return min(arms, key=lambda arm: abs(arm.temperature - temperature)).key

    # ---- persistence and reporting --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-able state: the per-arm statistics, the number of choices made (for the RNG), the reward scale."""
        return {
            "version": STATE_VERSION, "policy": self.bandit.policy, "seed": self.seed, "choices": self.choices,
            "max_reward": self.max_reward, "arms": {key: s.to_dict() for key, s in self.stats.items()},
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue from `state_dict()` output; arms not configured any more are dropped, new ones start fresh."""
        if state.get("version") != STATE_VERSION:
            return
        self.choices = int(state.get("choices", 0))
        self.max_reward = float(state.get("max_reward", 0.0))
        for key, data in dict(state.get("arms", {})).items():
            if key in self.stats:
                self.stats[key] = ArmStats.from_dict(data)

    @classmethod
    def from_state(cls, state: Mapping[str, Any], arms: Sequence[Arm], **kwargs: Any) -> Ensemble:
        ensemble = cls(arms, **kwargs)
        ensemble.load_state(state)
        return ensemble

    def summary(self) -> list[dict[str, Any]]:
        """Per arm: choices, rewards observed, mean reward, rewards > 0, total cost, bench time left."""
        return [
            {**arm_row(arm.model, arm.temperature, stats), "benched_s": self.bench.seconds_left(arm.model)}
            for arm, stats in zip(self.arms.values(), self.stats.values(), strict=True)
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


def summary_from_state(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`Ensemble.summary()` rows (without bench times) from a stored `state_dict()`, needing no configuration:
    for `evoforge status`, which reads only the record."""
    rows = []
    for key, data in dict(state.get("arms", {})).items():
        model, _, temperature = str(key).rpartition("@")
        rows.append(arm_row(model, float(temperature), ArmStats.from_dict(data)))
    return rows
