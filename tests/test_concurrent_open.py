"""Several processes opening one fresh record (or cognition base) at the same moment all succeed.

This is what happens when `evoforge status` (or a test) polls a run that is creating its record, and when two runs
share a knowledge base: each checks that a table is missing and issues CREATE TABLE, and all but one lose.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from evoforge.memory.cognition import CognitionBase
from evoforge.memory.record import Record

OPENERS = 4
ROUNDS = 8


def _open_record(path: str, barrier: mp.synchronize.Barrier, errors: mp.Queue) -> None:
    barrier.wait(timeout=30)
    try:
        Record(f"sqlite:///{path}").close()
    except Exception as exc:  # reported to the parent, which fails the test with it
        errors.put(f"{type(exc).__name__}: {exc}"[:300])


def _open_kb(path: str, barrier: mp.synchronize.Barrier, errors: mp.Queue) -> None:
    barrier.wait(timeout=30)
    try:
        with CognitionBase.open(path, embeddings=False) as kb:
            if kb.backends["lexical"] != "fts5":  # a lost race must not quietly degrade retrieval either
                errors.put(f"lexical backend {kb.backends['lexical']} instead of fts5")
    except Exception as exc:
        errors.put(f"{type(exc).__name__}: {exc}"[:300])


@pytest.mark.parametrize("opener", [_open_record, _open_kb], ids=["record", "cognition_base"])
def test_concurrent_openers_of_a_fresh_database_all_succeed(tmp_path: Path, opener) -> None:
    ctx = mp.get_context("fork")
    errors: list[str] = []
    for round_ in range(ROUNDS):
        path = tmp_path / f"db{round_}.sqlite"
        barrier, queue = ctx.Barrier(OPENERS), ctx.Queue()
        procs = [ctx.Process(target=opener, args=(str(path), barrier, queue)) for _ in range(OPENERS)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():  # never leave a stuck opener behind
                p.kill()
                p.join(timeout=10)
            assert p.exitcode == 0, f"an opener did not finish cleanly (exit code {p.exitcode})"
        while not queue.empty():
            errors.append(queue.get(timeout=5))
    assert errors == []
