"""Parent selection over the record: one small base, one sampler per module, and `make_sampler` by name."""

from __future__ import annotations

from evoforge.config import IslandSettings, MapElitesSettings, WeightedSettings
from evoforge.memory.sampling._base import Sampler
from evoforge.memory.sampling.greedy import GreedySampler
from evoforge.memory.sampling.islands import Archipelago, IslandSampler, Migration
from evoforge.memory.sampling.map_elites import MapElitesSampler
from evoforge.memory.sampling.random import RandomSampler
from evoforge.memory.sampling.ucb1 import UCB1Sampler
from evoforge.memory.sampling.weighted import WeightedSampler

SAMPLERS = ("greedy", "random", "ucb1", "weighted", "islands", "map_elites")


def make_sampler(
    name: str,
    *,
    seed: int | None = None,
    exploration: float = 1.0,
    population: int | None = None,
    islands: IslandSettings | None = None,
    map_elites: MapElitesSettings | None = None,
    weighted: WeightedSettings | None = None,
) -> Sampler:
    """The sampler called `name` (one of SAMPLERS). `exploration` is UCB1's constant c and `population` the
    number of elite trials that are its arms (None: all scored trials); `islands`, `map_elites` and `weighted`
    are the research settings of those samplers (None: defaults). "islands" picks inside each island with
    `islands.policy`; "map_elites" keeps one grid per island when `islands.count` > 1."""
    key = name.strip().lower()
    islands = islands or IslandSettings()
    if key == "islands":
        inner = _simple(islands.policy, seed, exploration, population, weighted)
        return IslandSampler(seed, islands=_archipelago(islands), inner=inner)
    if key == "map_elites":
        features = (map_elites or MapElitesSettings()).features
        return MapElitesSampler(seed, features=features, islands=_archipelago(islands))
    return _simple(key, seed, exploration, population, weighted)


def _simple(
    key: str, seed: int | None, exploration: float, population: int | None, weighted: WeightedSettings | None
) -> Sampler:
    if key == "greedy":
        return GreedySampler(seed)
    if key == "random":
        return RandomSampler(seed)
    if key == "ucb1":
        return UCB1Sampler(seed, exploration=exploration, population=population)
    if key == "weighted":
        settings = weighted or WeightedSettings()
        return WeightedSampler(seed, sharpness=settings.sharpness, child_penalty=settings.child_penalty)
    raise ValueError(f"unknown sampler {key!r}: choose one of {', '.join(SAMPLERS)} (research.sampler)")


def _archipelago(settings: IslandSettings) -> Archipelago:
    return Archipelago(settings.count, settings.migration_interval, settings.migration_rate)


__all__ = [
    "SAMPLERS",
    "Archipelago",
    "GreedySampler",
    "IslandSampler",
    "MapElitesSampler",
    "Migration",
    "RandomSampler",
    "Sampler",
    "UCB1Sampler",
    "WeightedSampler",
    "make_sampler",
]
