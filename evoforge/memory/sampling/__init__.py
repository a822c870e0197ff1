"""Parent selection over the record: one small base, one sampler per module, and `make_sampler` by name."""

from __future__ import annotations

from evoforge.memory.sampling._base import Sampler
from evoforge.memory.sampling.greedy import GreedySampler
from evoforge.memory.sampling.random import RandomSampler
from evoforge.memory.sampling.ucb1 import UCB1Sampler

SAMPLERS = ("greedy", "random", "ucb1")


def make_sampler(
    name: str, *, seed: int | None = None, exploration: float = 1.0, population: int | None = None
) -> Sampler:
    """The sampler called `name` ("greedy", "random" or "ucb1"); `exploration` is UCB1's constant c and
    `population` the number of elite trials that are its arms (None: all scored trials)."""
    key = name.strip().lower()
    if key == "greedy":
        return GreedySampler(seed)
    if key == "random":
        return RandomSampler(seed)
    if key == "ucb1":
        return UCB1Sampler(seed, exploration=exploration, population=population)
    raise ValueError(f"unknown sampler {name!r}: choose one of {', '.join(SAMPLERS)} (research.sampler)")


__all__ = ["SAMPLERS", "GreedySampler", "RandomSampler", "Sampler", "UCB1Sampler", "make_sampler"]
