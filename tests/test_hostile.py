"""Hostile candidates through `Engineer.evaluate`, under every isolation this machine offers: each is contained,
classified, leaves no process behind, and the next (honest) trial still runs."""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from containment import (
    CONNECT,
    HONEST,
    MODES,
    NAMESPACED,
    assert_honest_run_goes_on,
    evaluate,
    survivors,
    trial_dir,
)
from helpers import SLACK_S, evaluator_task

from evoforge.experiment.isolation import probe
from evoforge.models import TrialStatus
from evoforge.task.loader import Task


def make_task(tmp_path: Path, mode: str = "auto", **limits: Any) -> Task:
    timeout_s = limits.pop("timeout_s", 20)
    limits = {"isolation": mode, "network": mode == "none", **limits}  # none cannot cut the network
    return evaluator_task(tmp_path, program=HONEST, timeout_s=timeout_s, limits=limits)


def test_infinite_loop_times_out(tmp_path: Path) -> None:
    task = make_task(tmp_path, timeout_s=1)
    start = time.monotonic()
    out = evaluate(task, "def result():\n    while True:\n        pass\n", trial_dir(tmp_path))
    assert out.error_class == "timeout" and "timeout_s=1" in out.error_message
    assert out.seconds >= 1.0 and time.monotonic() - start < 1 + SLACK_S  # stopped at its timeout, not by a hang
    assert_honest_run_goes_on(task, tmp_path)


FORK_BOMB = """
import os, time

def result():
    stop = time.time() + 600  # a safety net for the test machine: the bomb gives up by itself after 600 s
    while time.time() < stop:
        try:
            os.fork()
        except OSError:
            time.sleep(0.01)
    os._exit(0)
"""


@pytest.mark.parametrize("mode", MODES)
def test_fork_bomb_is_bounded_by_the_process_limit_even_as_root(tmp_path: Path, mode: str) -> None:
    task = make_task(tmp_path, mode, max_processes=40)
    start = time.monotonic()
    out = evaluate(task, FORK_BOMB, trial_dir(tmp_path))
    assert time.monotonic() - start < 2 * SLACK_S, "the bomb ran until its own safety net"
    assert out.error_class == "killed_by_limit", out.error_message
    assert "max_processes=40" in out.error_message
    assert_honest_run_goes_on(task, tmp_path)


def test_memory_hog_is_killed_by_the_memory_limit(tmp_path: Path) -> None:
    task = make_task(tmp_path, memory_mb=256)
    out = evaluate(task, "def result():\n    block = bytearray(3 * 1024 ** 3)\n    return {'score': 1}\n",
                   trial_dir(tmp_path))
    assert out.status is TrialStatus.FAILED and out.score is None
    assert out.error_class == "killed_by_limit" and "memory_mb=256" in out.error_message


DOUBLE_FORK = """
import os, signal, time

def result():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            os.execvp("sleep", ["sleep", "{seconds}"])
        os._exit(0)
    time.sleep(0.3)
    {tail}
"""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("tail", "expected"), [("return {'score': 1.0}", None),
                                                ("signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
                                                 "timeout")], ids=["returns", "times-out-ignoring-sigterm"])
def test_double_forked_sleeper_is_killed_when_the_trial_ends(tmp_path: Path, mode: str, tail: str,
                                                             expected: str | None) -> None:
    seconds = f"300.{uuid.uuid4().int % 10**6}"  # a unique command line to find it by
    code = DOUBLE_FORK.replace("{seconds}", seconds).replace("{tail}", tail)
    out = evaluate(make_task(tmp_path, mode, timeout_s=1.5), code, trial_dir(tmp_path))
    assert out.error_class == expected, out.error_message
    assert survivors(seconds.encode()) == []



@pytest.mark.parametrize(("mode", "network"), [*[(p.values[0], False) for p in NAMESPACED], ("auto", True)])
def test_no_network_mode_blocks_a_connection_to_the_host(tmp_path: Path, mode: str, network: bool) -> None:
    if mode != "auto" and probe(mode) is not None:
        pytest.skip(f"{mode}: {probe(mode)}")
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        out = evaluate(make_task(tmp_path, mode, network=network), CONNECT.replace("{port}", str(port)),
                       trial_dir(tmp_path))
    assert out.status is TrialStatus.SUCCEEDED, out.error_message
    assert out.score == (1.0 if network else 0.0), out.metrics


WRITER = """
import os

def attempt(path, data=b"x"):
    try:
        with open(path, "ab") as fh:
            fh.write(data)
        return True
    except OSError:
        return False

def result():
    trial = os.environ["EVOFORGE_TRIAL_DIR"]
    return {"score": 1.0,
            "own": attempt(os.path.join(trial, "mine.txt")),
            "tmp": attempt("{scratch}"),
            "trials": attempt(os.path.join(trial, "..", "evil.txt")),
            "record": attempt(os.path.join(trial, "..", "..", "record.db")),
            "task": attempt(os.path.join(os.environ["EVOFORGE_TASK_DIR"], "evil.txt")),
            "elsewhere": attempt("{elsewhere}")}
"""


@pytest.mark.parametrize("mode", MODES)
def test_writes_outside_the_trial_folder(tmp_path: Path, mode: str) -> None:
    elsewhere = Path("/var/tmp") / f"evoforge-hostile-{uuid.uuid4().hex}"
    scratch = Path("/tmp") / f"evoforge-hostile-{uuid.uuid4().hex}"
    where = trial_dir(tmp_path)
    record = (tmp_path / "run" / "record.db").read_bytes()
    code = WRITER.replace("{elsewhere}", str(elsewhere)).replace("{scratch}", str(scratch))
    try:
        out = evaluate(make_task(tmp_path, mode), code, where)
        landed, scratched = elsewhere.exists(), scratch.exists()
    finally:
        elsewhere.unlink(missing_ok=True)
        scratch.unlink(missing_ok=True)
    assert out.status is TrialStatus.SUCCEEDED, out.error_message
    wrote = {k: v for k, v in out.metrics.items() if k != "score"}
    assert wrote["own"] and wrote["tmp"] and (where / "mine.txt").exists()
    protected = mode != "none"  # bwrap and unshare: the task, run and record folders are read-only
    assert wrote["trials"] == wrote["record"] == wrote["task"] == (not protected)
    assert ((tmp_path / "run" / "record.db").read_bytes() == record) == protected
    assert landed == wrote["elsewhere"] == (mode != "bwrap")  # only bwrap makes the whole host read-only
    assert scratched == (mode != "bwrap")  # bwrap's /tmp is private


EDITOR = """
import os

def result():
    path = os.path.join(os.environ["EVOFORGE_TASK_DIR"], "evaluator.py")
    forged = "def evaluate(program_path):\\n    return {'score': 1e9}\\n"
    done = []
    for how in ("append", "replace"):
        try:
            if how == "append":
                with open(path, "a") as fh:
                    fh.write("\\n" + forged)
            else:
                with open(path + ".new", "w") as fh:
                    fh.write(forged)
                os.replace(path + ".new", path)
            done.append(how)
        except OSError:
            pass
    return {"score": 0.0, "edited": ",".join(done)}
"""


@pytest.mark.parametrize("mode", MODES)
def test_a_candidate_that_edits_the_evaluator(tmp_path: Path, mode: str) -> None:
    task = make_task(tmp_path, mode)
    pristine = (task.root / "evaluator.py").read_bytes()
    out = evaluate(task, EDITOR, trial_dir(tmp_path))
    assert out.status is TrialStatus.SUCCEEDED, out.error_message
    if mode == "none":  # documented: no isolation, no protection; the next trial meets the forged evaluator
        assert out.metrics["edited"] == "append,replace"
        assert evaluate(task, HONEST, trial_dir(tmp_path, 2)).score == 1e9
        return
    assert out.metrics["edited"] == ""
    assert (task.root / "evaluator.py").read_bytes() == pristine
    assert_honest_run_goes_on(task, tmp_path)
