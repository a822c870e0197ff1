"""A warm worker's child starts with its job's environment exactly, as a fresh interpreter would: os.environ, the C
library's environment and /proc/PID/environ agree and nothing of the zygote's own (its padding, its worker's token)
is left (each child takes only what differs from its zygote's environment); the run's environment is evoforge's as
it starts, so a variable set in evoforge's process mid-run neither reaches a trial nor starts another worker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from containment import BWRAP, IN_PROCESS, make_task, trial_dir

from evoforge.experiment import Engineer
from evoforge.experiment.child_jail import ROOM_VAR
from evoforge.models import Outcome, TrialStatus

pytestmark = BWRAP

LOOK_AT_ENVIRON = """
import ctypes, json, os

def result():
    shown = dict(e.split("=", 1) for e in open("/proc/self/environ", errors="surrogateescape").read().split("\\0") if e)
    shown.pop("EVOFORGE_CHANNEL_FD")  # the harness takes it out of os.environ, not out of the block
    table = ctypes.POINTER(ctypes.c_char_p).in_dll(ctypes.CDLL(None), "environ")
    entries = []
    while table[len(entries)] is not None and len(entries) < 10000:
        entries.append(table[len(entries)].decode(errors="surrogateescape"))
    in_c = dict(e.split("=", 1) for e in entries)
    return {"score": 1.0, "python": json.dumps(dict(os.environ), sort_keys=True),
            "c": json.dumps(in_c, sort_keys=True), "c_entries": float(len(entries)),
            "proc": json.dumps(shown, sort_keys=True)}
"""


def test_a_warm_child_has_its_jobs_environment_in_python_in_c_and_in_proc(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAIN_SETTING", "at the start")
    engineer = Engineer(make_task(tmp_path, IN_PROCESS))

    async def scenario() -> tuple[list[Outcome], set[int | None]]:
        first = await engineer.evaluate(LOOK_AT_ENVIRON, trial_dir(tmp_path, 1))
        pid1 = engineer.executor.warm.idle[0].jail.pid1
        # a library of evoforge's process sets or changes variables mid-run (threadpoolctl: KMP_DUPLICATE_LIB_OK)
        monkeypatch.setenv("PLAIN_SETTING", "mid-run")
        monkeypatch.setenv("SET_MID_RUN", "1")
        second = await engineer.evaluate(LOOK_AT_ENVIRON, trial_dir(tmp_path, 2))
        return [first, second], {pid1} | {worker.jail.pid1 for worker in engineer.executor.warm.idle}

    (first, second), pids = asyncio.run(scenario())
    # the run's environment is taken as it starts: the same for every trial, and the same warm worker serves them
    assert len(pids) == 1 and None not in pids, "the two evaluations did not run in the same warm worker"
    for n, outcome in enumerate((first, second), start=1):
        assert outcome.status is TrialStatus.SUCCEEDED, outcome
        python = json.loads(outcome.metrics["python"])
        assert json.loads(outcome.metrics["c"]) == python and outcome.metrics["c_entries"] == len(python)
        assert json.loads(outcome.metrics["proc"]) == python
        assert ROOM_VAR not in python and python["TMPDIR"] == "/tmp"
        assert python["EVOFORGE_TRIAL_DIR"] == str(trial_dir(tmp_path, n))  # what differs per job is the job's
        assert python["PLAIN_SETTING"] == "at the start" and "SET_MID_RUN" not in python
    tokens = {json.loads(o.metrics["python"])["EVOFORGE_TRIAL_TOKEN"] for o in (first, second)}
    assert len(tokens) == 2  # each job's own token, not its worker's


def test_the_environment_block_shows_whole_variables_the_trials_first_and_zeros_over_the_zygotes() -> None:
    import ctypes

    from evoforge.experiment.child_jail import show_environ

    block = ctypes.create_string_buffer(b"Z" * 40 + b"\0" * 24)  # the zygote's own (shown: 40 bytes), zeros after
    span = (ctypes.addressof(block), ctypes.addressof(block) + 64)
    env = {"A": "1", "LONG": "x" * 37, "EVOFORGE_TRIAL_TOKEN": "t0"}
    assert show_environ(env, span, 40) == len(b"EVOFORGE_TRIAL_TOKEN=t0\0A=1\0")  # LONG does not fit whole: cut
    assert block.raw[:64] == b"EVOFORGE_TRIAL_TOKEN=t0\0A=1\0".ljust(64, b"\0")
    assert show_environ({"B": "2"}, span, 40) == 4 and block.raw[:64] == b"B=2\0".ljust(64, b"\0")
