"""A runner's part in a run that several runners share (`evoforge run --join`): the heartbeat that keeps the leases
on its trials, the poll that feeds the trials other runners write to its population (so its samplers and bandit
see them: their state is rebuilt from the trials' facts), and the trials other runners left behind (killed, cut
off), taken over once their lease ran out. A run with one runner pays one small query a second for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

from evoforge.memory.population import Population
from evoforge.memory.record import Record
from evoforge.memory.tables import utcnow
from evoforge.models import Trial, TrialStatus

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often a runner reads what the others wrote
ID_WINDOW = 256  # ids below the newest known that are read again: another runner's insert may commit late


class SharedRun:
    """The shared-run tasks of one conductor; `start` once the run's own leftovers are requeued, `stop` at the end."""

    def __init__(self, record: Record, population: Population, *, on_finished: Callable[[Trial], None],
                 poll_s: float = POLL_S) -> None:
        self.record, self.population, self.on_finished, self.poll_s = record, population, on_finished, poll_s
        self.others_seen = False  # another runner wrote a trial of this run: poll before each pick too
        self._watch: set[int] = set()  # unfinished trials of other runners, followed until they finish
        self._orphans = False  # the last poll saw an unfinished trial whose runner's lease ran out
        self._tasks: list[asyncio.Task[None]] = []
        self._newest = max((tr.id for tr in population), default=0)  # the highest trial id seen in the run

    def start(self, mine: Iterable[int] = ()) -> None:
        """Begin the heartbeat and the poll; the population's unfinished trials not in `mine` are the others'."""
        held = set(mine)
        self._watch = {tr.id for tr in self.population if not tr.status.finished and tr.id not in held}
        self._orphans = bool(self._watch)
        if self.record.runner is None or self._tasks:
            return
        self._tasks = [asyncio.ensure_future(self._every(self.record.lease_s / 3, self._heartbeat)),
                       asyncio.ensure_future(self._every(self.poll_s, self.poll))]

    def stop(self) -> None:
        """Cancel the heartbeat and the poll (the event loop's end collects them)."""
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    @staticmethod
    async def _every(seconds: float, work: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await work()
            except Exception as exc:  # noqa: BLE001 - a database hiccup: the next beat tries again
                log.warning("shared run: %s failed (%s: %s); trying again", work.__name__, type(exc).__name__, exc)

    async def _heartbeat(self) -> None:
        await self.record.io(self.record.renew_leases)

    async def poll(self) -> None:
        """Read the trials other runners added or changed since the last poll and put them in the population."""
        if len(self.population):
            self._newest = max(self._newest, self.population[-1].id)
        rows = await self.record.io(self.record.others_states, max(0, self._newest - ID_WINDOW), sorted(self._watch))
        now, orphans, wanted = utcnow(), False, []
        for trial_id, status, lease_until in rows:
            self._newest = max(self._newest, trial_id)
            known = self.population.get(trial_id)
            open_ = not TrialStatus(status).finished
            orphans |= open_ and _expired(lease_until, now)
            if known is None or (not known.status.finished and known.status.value != status):
                wanted.append(trial_id)
        self._orphans = orphans
        if not wanted:
            return
        for trial in await self.record.io(self.record.trials_by_id, wanted):
            self.others_seen = True
            known = self.population.get(trial.id)
            if known is not None and known.status.finished:
                continue  # never replace a finished trial
            self.population.put(trial)
            if trial.status.finished:
                self._watch.discard(trial.id)
                self.on_finished(trial)
            else:
                self._watch.add(trial.id)

    async def adopt(self, *, look: bool = False) -> int | None:
        """A trial another runner left (its lease ran out), now held by this runner and proposed, to evaluate;
        None when the last poll saw none (with `look`: when the record holds none)."""
        if not (look or self._orphans):
            return None
        trial = await self.record.io(self.record.adopt)
        if trial is None:
            self._orphans = False
            return None
        self._watch.discard(trial.id)
        log.info("trial #%d: taken over from a runner whose lease ran out", trial.id)
        return trial.id

    async def settle(self, evaluate: Callable[[int], Awaitable[None]], done: Callable[[], bool] = lambda: False,
                     ) -> None:
        """Until `done()` or no trial of the run is held by another live runner: evaluate each trial the others
        leave (lease run out) and wait for theirs. A joining runner calls it until the seed has a score; every
        runner at the end, so no trial of the run is left unfinished."""
        while not done():
            adopted = await self.adopt(look=True)
            if adopted is not None:
                await evaluate(adopted)
                continue
            if not await self.record.io(self.record.held_elsewhere):
                return
            await asyncio.sleep(self.poll_s)
            await self.poll()


def _expired(lease_until: datetime | None, now: datetime) -> bool:
    return lease_until is None or lease_until < now
